package fleet

import (
	"fmt"
	"sort"
)

// The ledger of what the wallet backend was told (stall-code payments and
// their refunds through the operator API, docs/protocol.md section 18) and
// of transit debt that top-ups paid. As the gateway's handoff turns them
// into settlement rows:
//
//	wallet payment   debit amount of the payer        row +amount, the stall's merchant
//	                                                  (terminal the stall, txn the gateway's)
//	wallet refund    credit amount to the payer       row -amount, the same merchant
//	top-up paying    credit top-up - debt paid        debt_recovery row +debt paid for
//	transit debt     to the balance                   the transit debt payee merchant
//
// A payment is one effect per gateway txn however often the wallet's call
// was answered (a retry under the same id gets the stored answer and the
// same txn). A call never answered is pending, as the terminals' scene
// messages are: it widens the audit's range by its amount.

// WalletPaid records an approved wallet payment of amt fen by acct through
// a code of stall terminal tid, under the gateway's txn.
func (l *Ledger) WalletPaid(acct, tid string, txn uint64, amt int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wallet[idKey{tid, txn}] {
		return // the stored answer told again
	}
	l.wallet[idKey{tid, txn}] = true
	l.debit(acct, tid, txn, amt)
}

// WalletRefunded records an approved refund of amt fen to acct of a wallet
// payment at stall terminal tid, under the refund's gateway txn.
func (l *Ledger) WalletRefunded(acct, tid string, txn uint64, amt int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wallet[idKey{tid, txn}] {
		return
	}
	l.wallet[idKey{tid, txn}] = true
	l.refund(acct, tid, txn, amt)
}

// WalletPending records a wallet call (by its id) that got no answer: it
// may or may not have debited (or, a refund, credited) acct at stall tid.
func (l *Ledger) WalletPending(id, acct, tid string, debit, credit int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending[idKey{tid: "wallet/" + id}] = pend{acct: acct, tid: tid, debit: debit, credit: credit}
}

// Debtor is an account an offline upload put in debt, with the most that
// debt can be (each debt tap's route's largest fare).
type Debtor struct {
	Account string
	Bound   int64
}

// Debtors returns the accounts offline uploads put in debt, sorted.
func (l *Ledger) Debtors() []Debtor {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Debtor, 0, len(l.debtors))
	for a, b := range l.debtors {
		out = append(out, Debtor{a, b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// DebtRepaid records an acknowledged top-up of acct of amt fen of which
// debt fen paid transit debt, owed to the debt payee merchant.
func (l *Ledger) DebtRepaid(acct string, amt, debt int64, payee string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if debt < 0 || debt > amt {
		return fmt.Errorf("%w: %s: debt paid %d outside 0..%d", ErrLedger, acct, debt, amt)
	}
	p := l.position(acct)
	t, ok1 := add(p.TopUps, amt)
	d, ok2 := add(p.DebtPaid, debt)
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: %s: top-ups overflow", ErrLedger, acct)
	}
	p.TopUps, p.DebtPaid = t, d
	if debt == 0 {
		return nil
	}
	m := l.merch[payee]
	if m == nil {
		m = &MerchantPosition{Merchant: payee}
		l.merch[payee] = m
	}
	v, ok := add(m.Net, debt)
	if !ok {
		return fmt.Errorf("%w: %s: debt recovered overflows", ErrLedger, payee)
	}
	m.Net = v
	return nil
}
