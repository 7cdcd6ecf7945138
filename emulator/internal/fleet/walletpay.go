package fleet

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	"scenepay/emulator/internal/opclient"
	"scenepay/terminals"
)

// The bank's wallet backend and the stalls' merchant-presented codes
// (docs/protocol.md section 18, docs/operations.md "Stall codes"). In the
// scenarios that have them (Scenario.StallCodes) every stall registers a
// static code at the start (business or personal); a share of its
// customers then pay through the wallet app instead of at the terminal:
// the wallet backend reports the payment over HTTP with the payer's
// account under an idempotency id of its own, through the static code (the
// customer types the amount) or through a dynamic code the stall shows for
// that sale (registered with its amount). An unanswered call is retried
// under the same id, and now and then a call answered is sent again (its
// answer lost on the way): the stored bytes must come back. A paid dynamic
// code scanned again is refused. Some wallet payments are refunded, in
// part or whole, through the refunds route under their own ids. The stall
// terminal is told of each approval by a signed "paid" notice on its reply
// topic; at the end each stall's notices must name only payments the
// wallet was told were approved, and (in a run without faults that cut
// terminals off) every one of them.

// Wallet tunables.
const (
	// walletPercent is the share of stall work that is a wallet payment
	// or a wallet refund, when the stall shows codes.
	walletPercent = 30
	// walletTriesMax bounds the calls of one wallet report under one id;
	// walletRetryGap is the pause between them (a gateway restart lasts
	// a few seconds).
	walletTriesMax = 60
	walletRetryGap = 250 * time.Millisecond
	// dynamicTTL is the lifetime of a dynamic code a stall shows.
	dynamicTTL = 120
	// noticeWait bounds the wait for the stalls' last paid notices.
	noticeWait = 5 * time.Second
)

// WalletCounts are what the wallet backend did in a run.
type WalletCounts struct {
	Codes      int // static codes registered
	Dynamic    int // dynamic codes registered
	Payments   int // payments reported (each id once)
	Approved   int
	Declined   int // stored declines (funds, limits)
	Refused    int // refused before the ledger (a failed check)
	Unanswered int // no answer after every retry: pending in the audit
	Retries    int // calls sent again after no answer
	Replays    int // answers that came back as the stored bytes
	Refunds    int
	Refunded   int // refunds approved
	Notices    int // distinct paid notices the stalls received
}

// walletPaid is an approved wallet payment a stall may refund.
type walletPaid struct {
	code, id, acct string
	amt, refunded  int64
	refunds        int
}

// stallWallet is a stall's codes and the wallet payments through them;
// only the slot's worker touches it (the end-of-run check after it ends).
type stallWallet struct {
	static  *opclient.StallCode
	paid    []*walletPaid
	told    map[uint64]terminals.Paid // approvals the wallet was told, by gateway txn
	notices map[uint64]terminals.Paid // notices of devices a reboot replaced
	refunds int                       // refunds the stall has made
}

func (w *stallWallet) keepNotices(ps []terminals.Paid) {
	if len(ps) == 0 {
		return
	}
	if w.notices == nil {
		w.notices = map[uint64]terminals.Paid{}
	}
	for _, p := range ps {
		w.notices[p.Txn] = p
	}
}

func (r *runner) countWallet(f func(*WalletCounts)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.rep.Wallet)
}

// api is the operator API client; a gateway the rig restarted may have
// moved.
func (r *runner) api() *opclient.Client {
	if r.o.Rig != nil {
		return opclient.New(r.o.Rig.API(), r.o.Token, nil)
	}
	return r.op
}

// wallet is the wallet backend's client for the stall code payment and
// refund routes: the wallet token, or the operator token when the run
// has none.
func (r *runner) wallet() *opclient.Client {
	tok := r.o.WalletToken
	if tok == "" {
		tok = r.o.Token
	}
	base := r.o.API
	if r.o.Rig != nil {
		base = r.o.Rig.API() // a restart may have moved it
	}
	return opclient.New(base, tok, nil)
}

// walletCall makes call until it gets an answer (or walletTriesMax calls).
func (r *runner) walletCall(ctx context.Context, call func(*opclient.Client) (opclient.StallDecision, error)) (opclient.StallDecision, error) {
	for i := 0; ; i++ {
		d, err := call(r.wallet())
		if !opclient.IsTransport(err) || i+1 >= walletTriesMax || ctx.Err() != nil {
			return d, err
		}
		r.countWallet(func(c *WalletCounts) { c.Retries++ })
		if !sleepFor(ctx, walletRetryGap) {
			return d, err
		}
	}
}

// registerStallCodes registers one static code per stall, alternately a
// business and a personal one.
func (r *runner) registerStallCodes(ctx context.Context) {
	for _, s := range r.slots {
		if s.spec.Kind != KindStall {
			continue
		}
		business := s.i%2 == 0
		var c opclient.StallCode
		var err error
		for i := 0; i < walletTriesMax && ctx.Err() == nil; i++ {
			if c, err = r.api().RegisterStallCode(ctx, opclient.StallCodeSpec{TID: s.spec.TID, Business: business}); !opclient.IsTransport(err) {
				break
			}
			sleepFor(ctx, walletRetryGap)
		}
		ok := err == nil && c.TID == s.spec.TID && c.Merchant == s.spec.Merchant && !c.Dynamic && c.Business == business && c.State == "live"
		r.check("static stall code registered", ok, fmt.Sprintf("%s: %+v err %v", s.spec.TID, c, err))
		if ok {
			s.wal.static = &c
			s.wal.told = map[uint64]terminals.Paid{}
			r.countWallet(func(w *WalletCounts) { w.Codes++ })
		}
	}
}

// walletWork is a customer paying the stall through the wallet app, or
// the stall's merchant refunding an earlier wallet payment.
func (r *runner) walletWork(ctx context.Context, s *slot) {
	// A stall's first refund comes as soon as it has a payment to refund,
	// so that even a short run rehearses one; later ones now and then.
	if len(s.wal.paid) > 0 && (s.wal.refunds == 0 || s.rng.IntN(5) == 0) {
		s.wal.refunds++
		r.walletRefund(ctx, s)
		return
	}
	r.walletPay(ctx, s)
}

func (r *runner) walletPay(ctx context.Context, s *slot) {
	w := &s.wal
	inst, amt := r.pop.Pick(s.rng, KindStall)
	acct, tid := inst.Key(), s.spec.TID
	code, payAmt := w.static.Code, amt
	dynamic := s.rng.IntN(3) == 0
	if dynamic {
		// The stall shows a code for this sale, with its amount.
		var c opclient.StallCode
		var err error
		for i := 0; i < walletTriesMax && ctx.Err() == nil; i++ {
			c, err = r.api().RegisterStallCode(ctx, opclient.StallCodeSpec{TID: tid, Dynamic: true, Business: w.static.Business,
				Amount: amt, TTLSeconds: dynamicTTL})
			if !opclient.IsTransport(err) {
				break
			}
			sleepFor(ctx, walletRetryGap)
		}
		if err != nil || !c.Dynamic || c.Amount != amt {
			r.check("dynamic stall code registered", false, fmt.Sprintf("%s: %+v err %v", tid, c, err))
			return
		}
		r.countWallet(func(w *WalletCounts) { w.Dynamic++ })
		code, payAmt = c.Code, 0 // the wallet pays the code's own amount
	}
	id := fmt.Sprintf("w%x-%s-%d", r.o.RunID, tid, r.walletN.Add(1))
	p := opclient.StallPayment{Account: acct, Amount: payAmt, ID: id, Verified: []string{"A", "B", "C"}[s.rng.IntN(3)]}
	pay := func(c *opclient.Client) (opclient.StallDecision, error) { return c.PayStallCode(ctx, code, p) }
	d, err := r.walletCall(ctx, pay)
	r.countWallet(func(w *WalletCounts) { w.Payments++ })
	switch {
	case opclient.IsTransport(err):
		r.ledger.WalletPending(id, acct, tid, amt, 0)
		r.countWallet(func(w *WalletCounts) { w.Unanswered++ })
		return
	case err != nil:
		r.countWallet(func(w *WalletCounts) { w.Refused++ })
		r.check("wallet payment through a live stall code decided", false, fmt.Sprintf("%s code %s id %s: %v", tid, code, id, err))
		return
	case d.Code.Approved():
		ok := d.TID == tid && d.Merchant == s.spec.Merchant && d.Account == acct && d.Amount == amt && d.StallCode == code && d.Txn >= 1<<62
		if !ok {
			r.check("wallet payment answer names the stall, payer and amount", false, fmt.Sprintf("%s %d fen on %s: %s", tid, amt, acct, d.Raw))
		}
		r.ledger.WalletPaid(acct, d.TID, d.Txn, d.Amount)
		w.told[d.Txn] = terminals.Paid{V: 1, Type: terminals.NoticePaid, TID: d.TID, Txn: d.Txn, Code: terminals.CodeApproved, Auth: d.Auth, Amt: d.Amount, SC: code}
		if len(w.paid) >= stallPaidMax {
			w.paid = w.paid[1:]
		}
		w.paid = append(w.paid, &walletPaid{code: code, id: id, acct: acct, amt: d.Amount})
		r.countWallet(func(w *WalletCounts) { w.Approved++ })
	default:
		r.countWallet(func(w *WalletCounts) { w.Declined++ })
	}
	if d.Replay {
		r.countWallet(func(w *WalletCounts) { w.Replays++ })
	}
	if s.rng.IntN(4) == 0 {
		// The answer was lost on its way to the wallet app: the backend
		// reports the same payment again and must get the stored bytes.
		again, err := r.walletCall(ctx, pay)
		r.check("wallet retry under the same id gets the stored answer", err == nil && again.Replay && bytes.Equal(again.Raw, d.Raw),
			fmt.Sprintf("%s id %s: replay=%v identical=%v err %v", tid, id, again.Replay, bytes.Equal(again.Raw, d.Raw), err))
		if again.Replay {
			r.countWallet(func(w *WalletCounts) { w.Replays++ })
		}
	}
	if dynamic && d.Code.Approved() && s.rng.IntN(3) == 0 {
		// The next customer scans the paid code: refused, nothing stored.
		_, err := r.wallet().PayStallCode(ctx, code, opclient.StallPayment{Account: acct, ID: id + "-again", Verified: "B"})
		if !opclient.IsTransport(err) {
			r.check("a paid dynamic stall code pays once", opclient.IsCode(err, terminals.CodePayCodeReused),
				fmt.Sprintf("%s code %s: %v", tid, code, err))
		}
	}
}

// walletRefund refunds part or all of what is left of a recent wallet
// payment through the refunds route.
func (r *runner) walletRefund(ctx context.Context, s *slot) {
	w := &s.wal
	i := s.rng.IntN(len(w.paid))
	p := w.paid[i]
	left := p.amt - p.refunded
	amt := left
	if left > 1 && s.rng.IntN(2) == 0 {
		amt = 1 + s.rng.Int64N(left-1)
	}
	p.refunds++
	id := fmt.Sprintf("%s-r%d", p.id, p.refunds)
	d, err := r.walletCall(ctx, func(c *opclient.Client) (opclient.StallDecision, error) {
		return c.RefundStallPayment(ctx, p.code, p.id, amt, id)
	})
	r.countWallet(func(w *WalletCounts) { w.Refunds++ })
	switch {
	case opclient.IsTransport(err):
		// Unknown whether it was applied: never refund this payment again.
		r.ledger.WalletPending(id, p.acct, s.spec.TID, 0, amt)
		r.countWallet(func(w *WalletCounts) { w.Unanswered++ })
		w.paid = append(w.paid[:i], w.paid[i+1:]...)
		return
	case err == nil && d.Code.Approved():
		if d.Account != p.acct || d.Amount != amt || d.TID != s.spec.TID {
			r.check("wallet refund answer names the payer and amount", false, fmt.Sprintf("%s: %s", s.spec.TID, d.Raw))
		}
		r.ledger.WalletRefunded(p.acct, d.TID, d.Txn, d.Amount)
		p.refunded += amt
		r.countWallet(func(w *WalletCounts) { w.Refunded++ })
	default:
		r.check("wallet refund within what was paid approved", false,
			fmt.Sprintf("%s refund %s of %s (%d of %d left): %s %s err %v", s.spec.TID, id, p.id, amt, left, d.Code, d.Code.Name(), err))
	}
	if p.refunded >= p.amt || err != nil {
		w.paid = append(w.paid[:i], w.paid[i+1:]...)
	}
}

// paidCheck compares each stall's paid notices with the wallet approvals
// at it: every notice names one (txn, amount, code), and without faults
// that cut terminals off every approval got its notice.
func (r *runner) paidCheck(ctx context.Context) {
	f := r.o.Faults
	lossy := f.Disconnect || f.Reboot || f.Offline || f.GatewayKills > 0 || f.BrokerRestarts > 0
	total := 0
	deadline := time.Now().Add(noticeWait) // one wait for the whole fleet
	for _, s := range r.slots {
		w := &s.wal
		if len(w.told) == 0 {
			continue
		}
		got := map[uint64]terminals.Paid{}
		collect := func() {
			for k, v := range w.notices {
				got[k] = v
			}
			for _, p := range s.dev.Paid() {
				got[p.Txn] = p
			}
		}
		collect()
		for len(got) < len(w.told) && time.Now().Before(deadline) && sleepFor(ctx, 50*time.Millisecond) {
			collect()
		}
		var bad, missing []string
		for txn, p := range got {
			t, ok := w.told[txn]
			if !ok || t.Amt != p.Amt || t.SC != p.SC || t.TID != p.TID || p.Code != terminals.CodeApproved {
				bad = append(bad, fmt.Sprintf("txn %d %d fen %s", txn, p.Amt, p.SC))
			}
		}
		for txn, t := range w.told {
			if _, ok := got[txn]; !ok {
				missing = append(missing, fmt.Sprintf("txn %d %d fen", txn, t.Amt))
			}
		}
		sort.Strings(bad)
		sort.Strings(missing)
		total += len(got)
		detail := fmt.Sprintf("%s: %d approvals, %d notices, not approved %v, without a notice %v", s.spec.TID, len(w.told), len(got), bad, missing)
		r.check("the stall's paid notices name its wallet approvals", len(bad) == 0 && (lossy || len(missing) == 0), detail)
	}
	r.countWallet(func(w *WalletCounts) { w.Notices = total })
}
