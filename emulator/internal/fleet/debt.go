package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"scenepay/emulator/internal/opclient"
)

// Transit debt repayment. A card whose offline taps its balance could not
// cover owes them as debt and is on the deny list (denyCheck). After the
// scenario the card's holder tops it up at the bank: the gateway pays the
// debt first (to the transit debt payee merchant, a debt_recovery row in
// settlement), credits the rest, and, the debt cleared, takes the card off
// the deny list, which the readers follow and report in their heartbeats.
//
// The account view shows the card's debt and the top-up's answer the
// debt it paid (debt_paid; a retried ref answers the same). Before the
// top-up the debt must be more than nothing and at most what the debt
// taps can have cost; the top-up must pay exactly min(debt, top-up), leave
// the rest of the debt (none when the top-up covers it, as it does here)
// and credit the rest of the top-up to the balance. The ledger books the
// debt paid (the balance audit then expects opening + top-ups - debt paid
// - ...), and the settlement audit requires exactly that much in
// debt_recovery rows for the payee: a gateway that credited the whole
// top-up, or paid the debt twice, or lost the row, fails one of them.

// DefaultDebtPayee is the gateway's default transit debt payee merchant
// (transit config debt_payee_merchant).
const DefaultDebtPayee = "transit-operator"

// Debt repayment tunables. Money in fen.
const (
	// debtTopUp is the top-up a card in debt gets: above any debt the
	// town's floor limits allow a card in one run (OfflineTapsMax taps of
	// OfflineFareMax) would be too much for a low card's holder; it
	// covers what the fleet's readers can leave (the bound is checked).
	debtTopUp = 5_000
	// debtRepayMax bounds the cards repaid in one run.
	debtRepayMax = 16
)

// DebtRepay is what the debt repayment came to.
type DebtRepay struct {
	Cards    int   // cards in debt topped up
	Paid     int64 // debt the top-ups paid, in fen
	Undenied bool  // every reader dropped every repaid card from its list
	// Version is the lowest deny-list version the readers held after.
	Version uint64
}

func (r *runner) debtPayee() string {
	if r.o.DebtPayee != "" {
		return r.o.DebtPayee
	}
	return DefaultDebtPayee
}

// accountCall retries an operator call that got no answer.
func (r *runner) accountCall(ctx context.Context, call func(*opclient.Client) (opclient.Account, error)) (opclient.Account, error) {
	for i := 0; ; i++ {
		a, err := call(r.api())
		if !opclient.IsTransport(err) || i+1 >= walletTriesMax || ctx.Err() != nil {
			return a, err
		}
		if !sleepFor(ctx, walletRetryGap) {
			return a, err
		}
	}
}

// repayDebt tops up every card in debt, checks the debt was paid first,
// and that the readers take the cards off their lists.
func (r *runner) repayDebt(ctx context.Context) {
	debtors := r.ledger.Debtors()
	if len(debtors) == 0 {
		return
	}
	if len(debtors) > debtRepayMax {
		debtors = debtors[:debtRepayMax]
	}
	var rep DebtRepay
	var repaid []string
	for i, d := range debtors {
		before, err := r.accountCall(ctx, func(c *opclient.Client) (opclient.Account, error) { return c.Account(ctx, d.Account) })
		if err != nil {
			r.check("card in debt read", false, fmt.Sprintf("%s: %v", d.Account, err))
			continue
		}
		// hex: no digit run that could look like a card number
		ref := fmt.Sprintf("emu-%x-%x-debt-%d", r.o.Seed, r.o.RunID, i)
		after, err := r.accountCall(ctx, func(c *opclient.Client) (opclient.Account, error) {
			return c.TopUp(ctx, d.Account, debtTopUp, ref)
		})
		if err != nil {
			r.check("top-up of a card in debt accepted", false, fmt.Sprintf("%s: %v", d.Account, err))
			continue
		}
		r.check("the card's transit debt shows in its account view", before.Debt > 0 && before.Debt <= d.Bound,
			fmt.Sprintf("%s: debt %d, want 1..%d", d.Account, before.Debt, d.Bound))
		paid := after.DebtPaid
		why := debtPaidWrong(before, after, debtTopUp)
		r.check("the top-up pays exactly the card's transit debt first", why == "", d.Account+": "+why)
		if paid < 0 || paid > debtTopUp {
			continue // not bookable; the check above failed
		}
		if before.Debt <= debtTopUp {
			// The top-up covers the debt: none left, as the view says too.
			v, err := r.accountCall(ctx, func(c *opclient.Client) (opclient.Account, error) { return c.Account(ctx, d.Account) })
			r.check("a covered debt is gone from the account view", err == nil && v.Debt == 0,
				fmt.Sprintf("%s: debt %d after paying %d (err %v)", d.Account, v.Debt, paid, err))
		}
		if err := r.ledger.DebtRepaid(d.Account, debtTopUp, paid, r.debtPayee()); err != nil {
			r.check("debt repayment booked", false, err.Error())
			continue
		}
		r.mu.Lock()
		fmt.Fprintf(r.out, "%s operator topup %d fen %s -> %d fen paid transit debt, balance %d\n", r.o.Now().Format("15:04:05"), debtTopUp, d.Account, paid, after.Balance)
		r.mu.Unlock()
		if paid > 0 && paid < debtTopUp {
			rep.Cards++
			rep.Paid += paid
			repaid = append(repaid, d.Account)
		}
	}
	if len(repaid) > 0 {
		rep.Undenied, rep.Version = r.undenyCheck(ctx, repaid)
	}
	r.mu.Lock()
	r.rep.Debt = rep
	r.mu.Unlock()
}

// debtPaidWrong says what is wrong with a top-up of amt on a card read
// as before just ahead of it, answered with after; "" when the top-up
// paid exactly min(debt, amt) of the debt, left the rest owing and
// credited the rest of amt to the balance.
func debtPaidWrong(before, after opclient.Account, amt int64) string {
	want := min(max(before.Debt, 0), amt)
	if after.DebtPaid == want && after.Debt == before.Debt-want && after.Balance-before.Balance == amt-want {
		return ""
	}
	return fmt.Sprintf("debt %d -> %d, balance %d -> %d on a top-up of %d: debt_paid %d, want %d (debt after %d, balance after %d)",
		before.Debt, after.Debt, before.Balance, after.Balance, amt, after.DebtPaid, want, before.Debt-want, before.Balance+amt-want)
}

// undenyCheck waits for every bus reader to drop the repaid cards from its
// deny list, has each report its version in a heartbeat, and checks the
// gateway lists none of them as lagging.
func (r *runner) undenyCheck(ctx context.Context, cards []string) (bool, uint64) {
	var readers []*slot
	for _, s := range r.slots {
		if s.spec.Kind == KindBus && s.dev.Deny() != nil {
			readers = append(readers, s)
		}
	}
	if len(readers) == 0 {
		return false, 0
	}
	state := func() (uint64, []string) {
		v := uint64(1 << 63)
		var still []string
		for _, s := range readers {
			dl := s.dev.Deny()
			v = min(v, dl.Version())
			for _, c := range cards {
				if dl.Denied(c) {
					still = append(still, s.spec.TID+":"+c)
				}
			}
		}
		return v, still
	}
	v, still := state()
	for deadline := time.Now().Add(denyWait); len(still) > 0 && time.Now().Before(deadline) && sleepFor(ctx, 50*time.Millisecond); {
		v, still = state()
	}
	r.mu.Lock()
	restarted := r.rep.Faults["broker-restart"] > 0
	r.mu.Unlock()
	if restarted && len(still) > 0 {
		// As in denyCheck: a list retained before the broker restart is
		// gone; a reader holding none cannot apply a delta to it.
		r.mu.Lock()
		fmt.Fprintf(r.out, "         note: after the broker restart %d readers still list repaid cards (version %d)\n", len(still), v)
		r.mu.Unlock()
		return false, v
	}
	r.check("readers take repaid cards off their deny lists", len(still) == 0,
		fmt.Sprintf("lowest version %d, still listed %s", v, strings.Join(still, ", ")))
	for _, s := range readers {
		r.heartbeat(ctx, s) // report the version applied
	}
	lag, err := r.api().DenyLagging(ctx)
	behind := laggingReaders(lag, readers)
	r.check("the gateway lists none of the readers as lagging after the repayment", err == nil && len(behind) == 0 && lag.Version <= v,
		fmt.Sprintf("gateway version %d, readers' lowest %d, lagging %v, err %v", lag.Version, v, behind, err))
	return len(still) == 0, v
}
