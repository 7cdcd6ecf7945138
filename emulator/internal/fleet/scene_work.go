package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"time"

	"scenepay/emulator/internal/device"
	"scenepay/emulator/internal/opclient"
	"scenepay/emulator/internal/wallet"
	"scenepay/terminals"
)

// The scene work of stalls, kiosks and bus readers beyond plain purchases
// and online taps: what the town's hardware sends (docs/protocol.md
// sections 14 to 17).
//
//   - A stall scans the customer's dynamic payment code (qr_pay; the code
//     comes from the population's wallets, issued under the issuer key the
//     gateway derives from the same master key), refunds part or all of an
//     earlier qr_pay of its own (never more than is left; some refunds are
//     repeated under the same id and must get the stored reply), uploads
//     e-CNY double-offline payments, and still takes some card purchases.
//   - A kiosk registers patients (plain purchases), bills insured items
//     (purchase with item and ins; only the self-pay is charged), and runs
//     inpatient deposits: open (hold), top-up (hold with orig), a capture
//     per service order, discharge (release with the last charges).
//   - A bus reader on a flat route goes offline for a stretch of work: it
//     approves taps locally within its floor limits against the deny list
//     it holds, keeps them, and once back sends a heartbeat reporting the
//     backlog (obk), one offline_upload per card of at most
//     terminals.MaxUploadTaps taps, and a heartbeat reporting it empty.
//     Every reader follows the retained deny list and reports the version
//     it applied (cfg "deny") in its heartbeats.
//
// None of these messages is reversible: an unanswered one is repeated
// under its own txn id with the same content (sendRepeat) until it gets a
// final answer or the run's drain ends.

// Scene bounds and tunables. Money in fen.
const (
	// repeatMax bounds the repeats of one unanswered message.
	repeatMax = 20
	// stallPaidMax bounds the recent qr_pays a stall keeps for refunds.
	stallPaidMax = 16
	// kioskDepositsMax bounds the open deposits one kiosk runs.
	kioskDepositsMax = 4
	// OfflineTapsMax and OfflineFareMax are the readers' floor limits, as
	// the gateway's default transit config (offline.taps_max,
	// offline.amount_max_fen): taps per card in one stretch, largest fare.
	OfflineTapsMax = 10
	OfflineFareMax = 500
	// heartbeatEvery is how many pieces of work a bus reader does between
	// heartbeats.
	heartbeatEvery = 8
	// ECNYOfflineMax is the gateway's default cap on one offline payment.
	ECNYOfflineMax = 50_000
	// offlinePercent is the chance, per piece of work of an online reader
	// on a flat route, that its link goes and a stretch offline begins.
	offlinePercent = 6
)

// configKey is the config-signing key Kcfg (version 1) the operator
// provisions into every terminal with its own key: it verifies the retained
// group messages (configuration, the bus deny list).
func configKey(master []byte) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("scenepay/config-key/v1|1"))
	return m.Sum(nil)
}

// countScene counts a scene event for the summary.
func (r *runner) countScene(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Scene[name]++
}

// Hospital item codes of the gateway's default hospital config.
const (
	ItemLab = "LAB"
	ItemMed = "MED"
)

// paid is a qr_pay a stall may refund.
type paid struct {
	txn      uint64
	inst     terminals.Instrument
	amt      int64
	refunded int64
}

// deposit is an inpatient deposit a kiosk opened.
type deposit struct {
	open   uint64
	inst   terminals.Instrument
	remain int64
}

// offlineState is a bus reader's offline stretch and its backlog; only
// the slot's worker touches it.
type offlineState struct {
	left      int                              // pieces of work still offline
	taps      map[string][]terminals.UploadTap // by card key, in seq order
	insts     map[string]terminals.Instrument  // card key -> instrument
	riders    map[string]int                   // card key -> rider index held
	seq       uint64                           // last reader tap seq used
	works     int                              // pieces of work since the last heartbeat
	stretches int                              // offline stretches begun (a reader's first comes early in a run)
	pending   map[string][]device.Sealed       // uploads sent without a final answer
}

func (st *offlineState) backlog() terminals.Backlog {
	b := terminals.Backlog{Set: true}
	for _, ts := range st.taps {
		for _, t := range ts {
			b.N++
			if b.Oldest == 0 || t.TS < b.Oldest {
				b.Oldest = t.TS
			}
		}
	}
	return b
}

// repeatable reports whether an unanswered req is repeated rather than
// reversed or given up.
func repeatable(req terminals.Request) bool {
	switch req.Type {
	case terminals.TypeTapIn, terminals.TypeTapOut, terminals.TypeHeartbeat, terminals.TypeBalance:
		return false
	}
	return !device.Reversible(req)
}

// final reports whether a reply settles its txn id (not a refusal or fault).
func final(c terminals.Code) bool {
	cl := c.Class()
	return cl == terminals.ClassApproved || cl == terminals.ClassDecline
}

// sendRepeat is send, then, for a message that is not reversible and got
// no answer, repeats of the same txn id and content until one is answered.
func (r *runner) sendRepeat(ctx context.Context, s *slot, fault string, req terminals.Request) (device.Sealed, terminals.Reply, []byte, error) {
	sl, rep, raw, err := r.sendSealed(ctx, s, fault, req)
	for i := 0; err != nil && sl.Req.Txn != 0 && repeatable(req) && i < repeatMax && ctx.Err() == nil; i++ {
		if !errors.Is(err, device.ErrTimeout) && !errors.Is(err, device.ErrNotConnected) {
			break
		}
		sleepFor(ctx, r.o.ReplyTimeout/2)
		sl, rep, raw, err = s.dev.Resend(ctx, sl)
	}
	return sl, rep, raw, err
}

// issueCode is the customer's wallet app showing a fresh code for acct.
func (r *runner) issueCode(s *slot, acct string, at time.Time) (string, error) {
	class := wallet.ClassB
	if s.rng.IntN(5) == 0 {
		class = wallet.ClassC
	}
	return wallet.Issue(r.issuer, 1, acct, class, at, r.nonce.Add(1))
}

// stallWork is one customer at a stall.
func (r *runner) stallWork(ctx context.Context, s *slot, fault string) {
	if s.wal.static != nil && s.rng.IntN(100) < walletPercent {
		r.walletWork(ctx, s)
		return
	}
	x := s.rng.IntN(100)
	switch {
	case x < 12 && len(s.paid) > 0:
		r.stallRefund(ctx, s, fault)
	case x < 20:
		w := r.pop.Accounts[r.pop.ECNY[s.rng.IntN(len(r.pop.ECNY))]]
		amt := 300 + 10*s.rng.Int64N(471) // 3..50 CNY
		amt = min(amt, ECNYOfflineMax, ECNYSingleLimit[w.Class])
		r.sendRepeat(ctx, s, fault, device.ECNYOffline(w.Inst, amt))
	case x < 27:
		inst, amt := r.pop.Pick(s.rng, KindStall)
		r.send(ctx, s, fault, device.Purchase(inst, amt))
	default:
		inst, amt := r.pop.Pick(s.rng, KindStall)
		at, want := time.Now(), terminals.Code("")
		switch y := s.rng.IntN(100); {
		case y < 3:
			// A screenshot of a code shown two minutes ago.
			at, want = at.Add(-2*time.Minute), terminals.CodePayCodeExpired
		case y < 5 && s.lastCode != nil:
			// The stall scans the last customer's code again.
			want = terminals.CodePayCodeReused
		}
		code, err := r.issueCode(s, inst.Key(), at)
		if err != nil {
			r.check("issue payment code", false, err.Error())
			return
		}
		if want == terminals.CodePayCodeReused {
			code, inst = s.lastCode.code, s.lastCode.inst
		}
		sl, rep, _, err := r.sendRepeat(ctx, s, fault, device.QRPay(code, amt))
		switch {
		case err != nil:
		case want != "":
			r.expect("payment code "+want.Name(), rep, nil, want)
		case rep.Code.Approved():
			if len(s.paid) >= stallPaidMax {
				s.paid = s.paid[1:]
			}
			s.paid = append(s.paid, &paid{txn: sl.Req.Txn, inst: inst, amt: amt})
			s.lastCode = &shownCode{code: code, inst: inst}
		}
	}
}

// shownCode is a payment code a stall scanned and was paid by.
type shownCode struct {
	code string
	inst terminals.Instrument
}

// stallRefund refunds part or all of what is left of a recent qr_pay,
// sometimes repeating the refund under the same id.
func (r *runner) stallRefund(ctx context.Context, s *slot, fault string) {
	i := s.rng.IntN(len(s.paid))
	p := s.paid[i]
	left := p.amt - p.refunded
	amt := left
	if left > 1 && s.rng.IntN(2) == 0 {
		amt = 1 + s.rng.Int64N(left-1)
	}
	sl, rep, raw, err := r.sendRepeat(ctx, s, fault, device.Refund(p.inst, p.txn, amt))
	switch {
	case err != nil:
		// Unknown whether it was applied: never refund this payment again.
		s.paid = append(s.paid[:i], s.paid[i+1:]...)
		return
	case rep.Code.Approved():
		p.refunded += amt
	default:
		r.check("refund within what was paid approved", false,
			fmt.Sprintf("%s refund txn %d of qr_pay %d (%d of %d left): %s %s", s.spec.TID, sl.Req.Txn, p.txn, amt, left, rep.Code, rep.Code.Name()))
	}
	if p.refunded >= p.amt {
		s.paid = append(s.paid[:i], s.paid[i+1:]...)
	}
	if s.rng.IntN(3) == 0 {
		// The clerk presses "refund" again: the same id and content, a new
		// ts. The stored reply comes back byte for byte, never a second credit.
		_, again, raw2, err := s.dev.Resend(ctx, sl)
		r.check("repeated refund gets the stored reply", err == nil && again.Code == rep.Code && bytes.Equal(raw, raw2),
			fmt.Sprintf("%s txn %d: %s then %s, identical=%v, err %v", s.spec.TID, sl.Req.Txn, rep.Code, again.Code, bytes.Equal(raw, raw2), err))
	}
}

// kioskWork is one patient at a kiosk.
func (r *runner) kioskWork(ctx context.Context, s *slot, fault string, town Town) {
	pt := town.Patients[s.rng.IntN(len(town.Patients))]
	acct := r.pop.Accounts[pt.Acc]
	x := s.rng.IntN(100)
	switch {
	case x < 30:
		fee := []int64{500, 1_000, 2_000, 5_000}[s.rng.IntN(4)] // registration, fen
		r.send(ctx, s, fault, device.Purchase(acct.Inst, fee))
	case x < 45:
		total := 1_000 + 100*s.rng.Int64N(291) // 10..300 CNY
		pool := total * int64(40+s.rng.IntN(31)) / 100
		personal := (total - pool) * int64(s.rng.IntN(50)) / 100
		item := ItemLab
		if s.rng.IntN(2) == 0 {
			item = ItemMed
		}
		r.sendRepeat(ctx, s, fault, device.InsuredPurchase(acct.Inst, item,
			terminals.Insurance{Pool: pool, Personal: personal, Self: total - pool - personal}))
	case len(s.deps) == 0 || (x < 58 && len(s.deps) < kioskDepositsMax):
		// Admission: 100 CNY up to a third of what the patient holds, at most 3,000 CNY.
		hi := min(acct.Opening/3, 300_000)
		if hi < 10_000 {
			hi = 10_000
		}
		amt := 10_000 + 100*s.rng.Int64N((hi-10_000)/100+1)
		sl, rep, _, err := r.sendRepeat(ctx, s, fault, device.DepositOpen(acct.Inst, amt))
		if err == nil && rep.Code.Approved() && rep.Amt != nil {
			s.deps = append(s.deps, &deposit{open: sl.Req.Txn, inst: acct.Inst, remain: *rep.Amt})
		}
	default:
		i := s.rng.IntN(len(s.deps))
		d := s.deps[i]
		var req terminals.Request
		discharge := false
		switch y := s.rng.IntN(100); {
		case y < 65: // a service order
			req = device.DepositCapture(d.inst, d.open, 2_000+100*s.rng.Int64N(281))
		case y < 80: // the family tops the deposit up
			req = device.DepositTopUp(d.inst, d.open, 10_000+100*s.rng.Int64N(901))
		default: // discharge, with or without last charges
			discharge = true
			var last int64
			if s.rng.IntN(2) == 0 && d.remain > 0 {
				last = min(d.remain, 500+100*s.rng.Int64N(46))
			}
			req = device.DepositRelease(d.inst, d.open, last)
		}
		_, rep, _, err := r.sendRepeat(ctx, s, fault, req)
		switch {
		case err != nil:
			// Unknown state: stop using this deposit (its holds move no balance).
			s.deps = append(s.deps[:i], s.deps[i+1:]...)
		case rep.Code == terminals.CodeDepositClosed || rep.Code == terminals.CodeOriginalNotFound || (discharge && rep.Code.Approved()):
			s.deps = append(s.deps[:i], s.deps[i+1:]...)
		case rep.Code.Approved() && rep.Amt != nil:
			d.remain = *rep.Amt
		}
	}
}

// heartbeat reports the deny-list version and, for readers, the backlog.
func (r *runner) heartbeat(ctx context.Context, s *slot) {
	var cfg terminals.CfgVersions
	if dl := s.dev.Deny(); dl != nil {
		if v := dl.Version(); v > 0 {
			_ = cfg.Add(device.DenyCfgName, v)
		}
	}
	var obk terminals.Backlog
	if s.spec.Kind == KindBus {
		obk = s.off.backlog()
	}
	rep, _, err := s.dev.Do(ctx, device.HeartbeatReport(cfg, obk))
	if err == nil && rep.Code != terminals.CodeApproved {
		r.check("heartbeat approved", false, fmt.Sprintf("%s: %s %s", s.spec.TID, rep.Code, rep.Code.Name()))
	}
}

// offlineJourney is a rider's journey a reader approves on its own (tap_in
// and tap_out kept for upload), or refuses when the card is on its deny
// list or past the floor limits. The rider stays held (off the buses)
// until its taps are uploaded.
func (r *runner) offlineJourney(ctx context.Context, s *slot, rs *riders) {
	st := &s.off
	ri, ok := rs.takeLow()
	if !ok {
		if ri, ok = rs.take(s.rng); !ok {
			return
		}
	}
	inst := rs.all[ri]
	key := inst.Key()
	// Floor limits: a journey is two taps, and the route's largest fare
	// must be one the reader may approve offline (a distance route's hold
	// of 6 CNY is above the default 5 CNY, so those readers stay online).
	if s.dev.Deny().Denied(key) || len(st.taps[key])+2 > OfflineTapsMax || s.route.MaxFare > OfflineFareMax {
		r.mu.Lock()
		r.rep.OfflineRefused++
		r.mu.Unlock()
		rs.release(ri, false)
		return
	}
	for _, out := range []bool{false, true} {
		st.seq++
		st.taps[key] = append(st.taps[key], terminals.UploadTap{Seq: st.seq, Out: out, Route: s.route.ID, TS: time.Now().UnixMilli()})
		if !out {
			sleepFor(ctx, time.Duration(5+s.rng.IntN(20))*time.Millisecond)
		}
	}
	st.insts[key] = inst
	st.riders[key] = ri
	r.mu.Lock()
	r.rep.OfflineTaps += 2
	r.mu.Unlock()
}

// flushOffline ends a stretch: heartbeat with the backlog, one upload per
// card of at most terminals.MaxUploadTaps taps (repeated until answered),
// a heartbeat with what is left. Cards whose uploads were answered go back
// to the buses.
func (r *runner) flushOffline(ctx context.Context, s *slot, rs *riders) {
	st := &s.off
	if len(st.taps) == 0 {
		return
	}
	r.heartbeat(ctx, s)
	keys := make([]string, 0, len(st.taps))
	for k := range st.taps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		taps := st.taps[k]
		done := true
		for len(taps) > 0 && ctx.Err() == nil {
			n := min(len(taps), terminals.MaxUploadTaps)
			req, err := device.OfflineUpload(st.insts[k], taps[:n])
			if err != nil {
				r.check("offline upload", false, err.Error())
				return
			}
			_, rep, _, err := r.sendRepeat(ctx, s, "", req)
			if err != nil {
				done = false
				break
			}
			if rep.Code.Approved() && len(rep.Out) != n {
				r.check("upload reply has one outcome per tap", false, fmt.Sprintf("%s: %d taps, out %q", s.spec.TID, n, rep.Out))
			}
			taps = taps[n:]
		}
		if !done || len(taps) > 0 {
			st.taps[k] = taps
			continue // held: the gateway may still owe the answer
		}
		delete(st.taps, k)
		delete(st.insts, k)
		rs.release(st.riders[k], false)
		delete(st.riders, k)
	}
	r.heartbeat(ctx, s)
}

// denyWait bounds the wait for readers to apply a deny-list change.
const denyWait = 5 * time.Second

// denyCheck runs after the scenario: when offline uploads left debt, the
// gateway listed those cards and published the change, so every reader
// must come to hold a list (version >= 1, a card on it) and report its
// version in a heartbeat. Report.DenyVersion is the lowest version held.
func (r *runner) denyCheck(ctx context.Context) {
	var readers []*slot
	for _, s := range r.slots {
		if s.spec.Kind == KindBus && s.dev.Deny() != nil {
			readers = append(readers, s)
		}
	}
	if len(readers) == 0 {
		return
	}
	debt := r.ledger.Uploads().Taps['d'] > 0
	deadline := time.Now().Add(denyWait)
	var applied, refused uint64
	lowest := func() (uint64, int) {
		v, cards := uint64(1<<63), 1<<30
		applied, refused = 0, 0
		for _, s := range readers {
			v, cards = min(v, s.dev.Deny().Version()), min(cards, len(s.dev.Deny().Cards()))
			a, f := s.dev.Deny().Counts()
			applied, refused = applied+a, refused+f
		}
		return v, cards
	}
	v, cards := lowest()
	for debt && (v == 0 || cards == 0) && time.Now().Before(deadline) && sleepFor(ctx, 50*time.Millisecond) {
		v, cards = lowest()
	}
	r.mu.Lock()
	restarted := r.rep.Faults["broker-restart"] > 0
	r.mu.Unlock()
	switch {
	case debt && restarted && (v == 0 || cards == 0):
		// The rig's private broker keeps no state across a restart, and the
		// gateway publishes its retained deny list again only when it
		// starts, not when it reconnects: a change made before the restart
		// is not retained any more. Not a reader's fault; shown, not checked.
		r.mu.Lock()
		fmt.Fprintf(r.out, "         note: after the broker restart the readers hold deny list version %d (the gateway republishes retained messages only at its own start)\n", v)
		r.mu.Unlock()
	case debt:
		r.check("readers hold the deny list after offline debt", v > 0 && cards > 0,
			fmt.Sprintf("lowest version %d, fewest cards %d, over %d readers; messages applied %d, refused %d", v, cards, len(readers), applied, refused))
	}
	for _, s := range readers {
		r.heartbeat(ctx, s) // report the version applied
	}
	r.mu.Lock()
	r.rep.DenyVersion = v
	r.mu.Unlock()
	if !debt || v == 0 {
		return
	}
	// The gateway heard every reader's report: none of this run's readers
	// is on its lagging list (readers of other fleets may be).
	op := r.op
	if r.o.Rig != nil {
		op = opclient.New(r.o.Rig.API(), r.o.Token, nil) // a restart moved it
	}
	lag, err := op.DenyLagging(ctx)
	behind := laggingReaders(lag, readers)
	r.check("the gateway lists none of the readers as lagging", err == nil && len(behind) == 0,
		fmt.Sprintf("gateway version %d, lagging %v, err %v", lag.Version, behind, err))
}

// demoMarket is the demo's market stall: a QR payment by the customer's
// dynamic code, a partial refund, the same refund pressed again (the
// stored reply, byte for byte), and a refund of more than is left.
func (r *runner) demoMarket(work context.Context, stall *device.Device, a AccountSpec) {
	code, err := wallet.Issue(r.issuer, 1, a.Inst.Key(), wallet.ClassB, time.Now(), r.nonce.Add(1))
	if err != nil {
		r.check("QR payment approved", false, err.Error())
		return
	}
	pay, err := stall.Prepare(device.QRPay(code, 1_550))
	if err != nil {
		r.check("QR payment approved", false, err.Error())
		return
	}
	rep, _, err := stall.Send(work, pay)
	if !r.expect("QR payment by a dynamic code approved", rep, err, terminals.CodeApproved) {
		return
	}
	ref, err := stall.Prepare(device.Refund(a.Inst, pay.Req.Txn, 500))
	if err != nil {
		r.check("refund approved", false, err.Error())
		return
	}
	rep, raw, err := stall.Send(work, ref)
	if !r.expect("partial refund approved", rep, err, terminals.CodeApproved) {
		return
	}
	_, again, raw2, err := stall.Resend(work, ref)
	r.check("refund pressed again gets the stored reply", err == nil && again.Code == rep.Code && bytes.Equal(raw, raw2),
		fmt.Sprintf("identical=%v err %v", bytes.Equal(raw, raw2), err))
	rep, _, err = stall.Do(work, device.Refund(a.Inst, pay.Req.Txn, 1_100))
	r.expect("refund of more than is left declined", rep, err, terminals.CodeRefundExceeds)
	w := r.acct(r.pop.ECNY[0])
	rep, _, err = stall.Do(work, device.ECNYOffline(w.Inst, min(900, ECNYSingleLimit[w.Class])))
	r.expect("e-CNY double-offline payment uploaded", rep, err, terminals.CodeApproved)
}

// demoHospital is the demo's kiosk: an inpatient deposit opened, a service
// order captured, the discharge with last charges, and an insured bill.
func (r *runner) demoHospital(work context.Context, kiosk *device.Device, a AccountSpec) {
	open, err := kiosk.Prepare(device.DepositOpen(a.Inst, 20_000))
	if err != nil {
		r.check("deposit opened", false, err.Error())
		return
	}
	rep, _, err := kiosk.Send(work, open)
	if !r.expect("inpatient deposit opened", rep, err, terminals.CodeApproved) {
		return
	}
	rep, _, err = kiosk.Do(work, device.DepositCapture(a.Inst, open.Req.Txn, 2_500))
	r.expect("service order captured from the deposit", rep, err, terminals.CodeApproved)
	rep, _, err = kiosk.Do(work, device.DepositRelease(a.Inst, open.Req.Txn, 700))
	r.expect("discharge with last charges", rep, err, terminals.CodeApproved)
	rep, _, err = kiosk.Do(work, device.InsuredPurchase(a.Inst, ItemLab, terminals.Insurance{Pool: 6_000, Personal: 1_000, Self: 3_000}))
	if r.expect("insured bill approved", rep, err, terminals.CodeApproved) {
		r.check("insured bill charges the self-pay only", rep.Amt != nil && *rep.Amt == 3_000, fmt.Sprintf("amt %s", fenString(rep.Amt)))
	}
}

// fenString renders an optional amount.
func fenString(v *int64) string {
	if v == nil {
		return "absent"
	}
	return fmt.Sprintf("%d fen", *v)
}

// laggingReaders names this run's readers (as tid@reported version) that
// the gateway lists as lagging behind its deny list; readers of other
// fleets may be listed too and are not named.
func laggingReaders(lag opclient.DenyLagging, readers []*slot) []string {
	ours := map[string]bool{}
	for _, s := range readers {
		ours[s.spec.TID] = true
	}
	var behind []string
	for _, l := range lag.Lagging {
		if ours[l.TID] {
			behind = append(behind, fmt.Sprintf("%s@%d", l.TID, l.Reported))
		}
	}
	return behind
}
