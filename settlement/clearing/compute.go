package clearing

// Clearing one window: from the store's takings per merchant and scene to
// one Settlement per merchant. Pure: no I/O, so that the rounding and
// division rules are tested on their own.

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"

	"scenepay/settlement/store"
)

// Rates resolves the merchant discount rate of a merchant in a scene: the
// merchant's own rate, else the scene default (merchant "*"), else
// Default.
type Rates struct {
	byKey   map[[2]string]decimal.Decimal
	Default decimal.Decimal
}

// NewRates indexes rates; a malformed rate is an error, not a zero.
func NewRates(rs []store.FeeRate, def decimal.Decimal) (Rates, error) {
	r := Rates{byKey: make(map[[2]string]decimal.Decimal, len(rs)), Default: def}
	for _, x := range rs {
		d, err := store.ParseRate(x.Rate)
		if err != nil {
			return Rates{}, fmt.Errorf("clearing: fee rate %s/%s: %w", x.Merchant, x.Scene, err)
		}
		r.byKey[[2]string{x.Merchant, x.Scene}] = d
	}
	return r, nil
}

// For returns the rate of merchant in scene.
func (r Rates) For(merchant, scene string) decimal.Decimal {
	if d, ok := r.byKey[[2]string{merchant, scene}]; ok {
		return d
	}
	if d, ok := r.byKey[[2]string{"*", scene}]; ok {
		return d
	}
	return r.Default
}

// addTotals adds b into a, overflow-checked.
func addTotals(a *store.Totals, b store.Totals) error {
	var err error
	sum := func(x *int64, y int64) {
		if err == nil {
			*x, err = add(*x, y)
		}
	}
	sum(&a.Count, b.Count)
	sum(&a.Gross, b.Gross)
	sum(&a.Payments, b.Payments)
	sum(&a.Reversals, b.Reversals)
	sum(&a.ReversalCount, b.ReversalCount)
	sum(&a.Refunds, b.Refunds)
	sum(&a.RefundCount, b.RefundCount)
	sum(&a.Net, b.Net)
	return err
}

// Compute clears window w. scenes are the store's takings per merchant and
// scene in the window; merchants carries the rate-based market management
// fee rule (a merchant missing from it has none); legs are the per-payment
// division legs of the window's rows per merchant (store.Clearing.Legs).
//
//	net     = gross + reversals + refunds            (store.Totals.Net)
//	fee     = see Fee: once per merchant, half-even
//	market  = the merchant's market_fee legs, per payee: payments' legs
//	          minus refunds' legs (may be negative: refunds of earlier
//	          windows gave the operator's part back); or, only for a
//	          merchant with NO market_fee leg in the window and a configured
//	          rate, round_half_even(max(net, 0) × market_fee_rate) to its
//	          configured operator. Never both.
//	payable = net - fee - market                      (may be negative: the merchant owes)
//
// Insurance legs (pooled fund, personal account) are receivables of the
// merchant from the insurance payers: reported as divisions beside the
// payable, not deducted from it and not added to it.
func Compute(w store.Window, scenes []store.SceneTotals, rates Rates, merchants map[string]store.Merchant,
	legs map[string][]store.Division) ([]store.Settlement, error) {
	type acc struct {
		t       store.Totals
		feeBase decimal.Decimal
	}
	by := map[string]*acc{}
	for _, s := range scenes {
		a := by[s.Merchant]
		if a == nil {
			a = &acc{}
			by[s.Merchant] = a
		}
		if err := addTotals(&a.t, s.Totals); err != nil {
			return nil, fmt.Errorf("clearing: window %s merchant %s: %w", w.ID, s.Merchant, err)
		}
		if s.Net > 0 {
			a.feeBase = a.feeBase.Add(decimal.NewFromInt(s.Net).Mul(rates.For(s.Merchant, s.Scene)))
		}
	}
	for m := range legs {
		if by[m] == nil {
			by[m] = &acc{}
		}
	}
	ids := make([]string, 0, len(by))
	for m := range by {
		ids = append(ids, m)
	}
	sort.Strings(ids)
	if len(ids) > store.SettlementsPerWindowMax {
		return nil, fmt.Errorf("clearing: window %s has %d merchants, more than %d", w.ID, len(ids), store.SettlementsPerWindowMax)
	}
	out := make([]store.Settlement, 0, len(ids))
	for _, m := range ids {
		a := by[m]
		s := store.Settlement{Window: w.ID, Merchant: m, Totals: a.t}
		var err error
		if s.Fee, err = roundFen(a.feeBase); err != nil {
			return nil, fmt.Errorf("clearing: window %s merchant %s fee: %w", w.ID, m, err)
		}
		if s.Payable, err = sub(s.Net, s.Fee); err != nil {
			return nil, fmt.Errorf("clearing: window %s merchant %s: %w", w.ID, m, err)
		}
		fromLegs := false
		for _, l := range legs[m] {
			switch l.Kind {
			case store.DivisionMarketFee:
				fromLegs = true
				if l.Amount == 0 {
					continue // payments and refunds cancelled out: nothing moves
				}
				s.Divisions = append(s.Divisions, l)
				if s.Payable, err = sub(s.Payable, l.Amount); err != nil {
					return nil, fmt.Errorf("clearing: window %s merchant %s: %w", w.ID, m, err)
				}
			case store.DivisionInsurancePooled, store.DivisionInsurancePersonal:
				if l.Amount < 0 {
					return nil, fmt.Errorf("clearing: merchant %s: negative %s leg", m, l.Kind)
				}
				s.Divisions = append(s.Divisions, l)
			default:
				return nil, fmt.Errorf("clearing: merchant %s: unknown leg kind %q", m, l.Kind)
			}
		}
		if mr, ok := merchants[m]; ok && !fromLegs && mr.MarketOperator != "" && mr.MarketFeeRate != "" {
			rate, err := store.ParseRate(mr.MarketFeeRate)
			if err != nil {
				return nil, fmt.Errorf("clearing: merchant %s market fee rate: %w", m, err)
			}
			fee, err := Fee(s.Net, rate)
			if err != nil {
				return nil, fmt.Errorf("clearing: window %s merchant %s market fee: %w", w.ID, m, err)
			}
			if fee > 0 {
				s.Divisions = append(s.Divisions, store.Division{Kind: store.DivisionMarketFee, Payee: mr.MarketOperator, Amount: fee})
				if s.Payable, err = sub(s.Payable, fee); err != nil {
					return nil, fmt.Errorf("clearing: window %s merchant %s: %w", w.ID, m, err)
				}
			}
		}
		if len(s.Divisions) > store.DivisionsPerSettlementMax {
			return nil, fmt.Errorf("clearing: merchant %s: more than %d division legs", m, store.DivisionsPerSettlementMax)
		}
		sort.Slice(s.Divisions, func(i, j int) bool {
			a, b := s.Divisions[i], s.Divisions[j]
			return a.Kind < b.Kind || a.Kind == b.Kind && a.Payee < b.Payee
		})
		out = append(out, s)
	}
	return out, nil
}

// Deducted is the sum of the legs taken from the merchant's payable (the
// market management fee, negative when refunds gave it back); insurance
// legs are not.
func Deducted(s *store.Settlement) int64 {
	var n int64
	for _, d := range s.Divisions {
		if d.Kind == store.DivisionMarketFee {
			n += d.Amount // each leg is at most net, and their sum was checked in Compute
		}
	}
	return n
}

// HoldUnsynced applies window w's e-CNY double-offline receipts (the
// store's Unsynced answer for w) to the settlements Compute returned, and
// returns them with Held and Released set; a merchant with only released
// receipts gets a settlement of its own. Pure, like Compute.
//
//	held     = the window's receipts whose wallet had not synced when the
//	           window was settled (SyncedAt zero, or paid by a later window)
//	released = earlier windows' receipts whose wallet has synced since and
//	           that no other window paid (ReleasedWindow "" or w)
//	payable  = Compute's payable - held + released
//
// A receipt of the window that synced before the window is settled is
// never held: it is paid with the window's takings. The merchant discount
// fee stays where Compute put it (on the window of the takings), so a held
// receipt's fee is not charged twice when it is released.
func HoldUnsynced(w store.Window, ss []store.Settlement, receipts []store.UnsyncedReceipt) ([]store.Settlement, error) {
	if len(receipts) == 0 {
		return ss, nil
	}
	type sums struct{ held, released int64 }
	by := map[string]*sums{}
	for i := range receipts {
		r := &receipts[i]
		if r.Amount <= 0 {
			return nil, fmt.Errorf("clearing: window %s: unsynced receipt %s/%d of %d fen", w.ID, r.Source, r.LSN, r.Amount)
		}
		var held, released bool
		switch {
		case !r.At.Before(w.CutOff):
			return nil, fmt.Errorf("clearing: window %s: unsynced receipt %s/%d after the cut-off", w.ID, r.Source, r.LSN)
		case !r.At.Before(w.Start):
			held = r.SyncedAt.IsZero() || r.ReleasedWindow != "" && r.ReleasedWindow != w.ID
		default:
			released = !r.SyncedAt.IsZero() && (r.ReleasedWindow == "" || r.ReleasedWindow == w.ID)
		}
		if !held && !released {
			continue
		}
		x := by[r.Merchant]
		if x == nil {
			x = &sums{}
			by[r.Merchant] = x
		}
		var err error
		if held {
			x.held, err = add(x.held, r.Amount)
		} else {
			x.released, err = add(x.released, r.Amount)
		}
		if err != nil {
			return nil, fmt.Errorf("clearing: window %s merchant %s: %w", w.ID, r.Merchant, err)
		}
	}
	out := ss
	for i := range out {
		if x := by[out[i].Merchant]; x != nil {
			if err := applyUnsynced(&out[i], x.held, x.released); err != nil {
				return nil, err
			}
			delete(by, out[i].Merchant)
		}
	}
	if len(by) == 0 {
		return out, nil
	}
	for m, x := range by {
		s := store.Settlement{Window: w.ID, Merchant: m}
		if err := applyUnsynced(&s, x.held, x.released); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Merchant < out[j].Merchant })
	if len(out) > store.SettlementsPerWindowMax {
		return nil, fmt.Errorf("clearing: window %s has %d merchants, more than %d", w.ID, len(out), store.SettlementsPerWindowMax)
	}
	return out, nil
}

func applyUnsynced(s *store.Settlement, held, released int64) error {
	s.Held, s.Released = held, released
	p, err := sub(s.Payable, held)
	if err == nil {
		p, err = add(p, released)
	}
	if err != nil {
		return fmt.Errorf("clearing: window %s merchant %s: %w", s.Window, s.Merchant, err)
	}
	s.Payable = p
	return nil
}
