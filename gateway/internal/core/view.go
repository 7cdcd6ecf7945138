package core

import (
	"fmt"

	"scenepay/gateway/internal/scene/transit"
)

// AccountView is a copy of one account's state, for audits, operator
// screens and tests.
type AccountView struct {
	Key   string
	Kind  string // terminals.InstCounty, InstBank or InstECNY
	Class uint8  // e-CNY wallet class 1..4; 0 for other kinds
	// Profile is the card's concession profile (county cards; adult for
	// every other kind and for a card that never had one set).
	Profile   transit.Profile
	Blocked   bool
	Balance   int64 // fen
	Held      int64 // fen reserved by live holds
	Floor     int64 // lowest allowed balance (negative: overdraft)
	Available int64 // Balance - Held - Floor
	// Day is the business day (days since 1970-01-01, Asia/Shanghai date)
	// that DayTotal counts debits for; Year likewise for YearTotal. A
	// counter of a past day or year is stale and counts as zero.
	Day       int32
	DayTotal  int64
	Year      int32
	YearTotal int64
	// Debt is the transit debt the card owes (fen; 0 for a card without
	// debt and for other kinds): offline taps its balance could not
	// cover, paid first by the next top-up.
	Debt int64
}

func (a *account) view() AccountView {
	return AccountView{
		Key: a.key, Kind: kindNames[a.kind], Class: a.class, Profile: cardProfile(a), Blocked: a.blocked,
		Balance: a.balance, Held: a.held, Floor: a.floor, Available: a.available(),
		Day: a.day, DayTotal: a.dayTotal, Year: a.year, YearTotal: a.yearTotal,
		Debt: cardDebt(a),
	}
}

// Account returns the view of the account with key.
func (s *Shard) Account(key string) (AccountView, bool) {
	_, a := s.lookup(key)
	if a == nil {
		return AccountView{}, false
	}
	return a.view(), true
}

// Accounts calls fn for every account (in opening order) until fn returns
// false.
func (s *Shard) Accounts(fn func(AccountView) bool) {
	for i := range s.accounts {
		if !fn(s.accounts[i].view()) {
			return
		}
	}
}

// HoldView is one live hold.
type HoldView struct {
	TID       string
	Txn       uint64
	Account   string
	Amount    int64 // as placed
	Remaining int64 // not yet captured
}

// Holds calls fn for every live hold until fn returns false.
func (s *Shard) Holds(fn func(HoldView) bool) {
	s.holds.each(func(k txnKey, e *holdEntry) bool {
		return fn(HoldView{TID: k.tid, Txn: k.txn, Account: s.accounts[e.acct].key, Amount: e.amount, Remaining: e.remaining})
	})
}

// CheckInvariants scans the whole shard: every account invariant, and
// each account's held total equal to the sum of its live holds. It is
// O(accounts + holds); Restore runs it, tests run it after every step.
func (s *Shard) CheckInvariants() error {
	if len(s.byKey) != len(s.accounts) {
		return fmt.Errorf("core: %d accounts but %d keys indexed", len(s.accounts), len(s.byKey))
	}
	held := make([]int64, len(s.accounts))
	var err error
	s.holds.each(func(k txnKey, e *holdEntry) bool {
		if e.acct < 0 || int(e.acct) >= len(s.accounts) || e.remaining <= 0 || e.remaining > e.amount {
			err = fmt.Errorf("core: hold %s/%d: account %d, amount %d, remaining %d", k.tid, k.txn, e.acct, e.amount, e.remaining)
			return false
		}
		var ok bool
		if held[e.acct], ok = add64(held[e.acct], e.remaining); !ok {
			err = fmt.Errorf("core: holds of account %q overflow", s.accounts[e.acct].key)
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	for i := range s.accounts {
		a := &s.accounts[i]
		var ok bool
		if held[i], ok = add64(held[i], journeyHeld(a.card)); !ok {
			return fmt.Errorf("core: holds of account %q overflow", a.key)
		}
		if j, ok := s.byKey[a.key]; !ok || j != int32(i) {
			return fmt.Errorf("core: account %q is not indexed at %d", a.key, i)
		}
		if err := checkAccount(a); err != nil {
			return fmt.Errorf("core: %w", err)
		}
		if a.held != held[i] {
			return fmt.Errorf("core: account %q: held %d, live holds and journey sum to %d", a.key, a.held, held[i])
		}
	}
	return nil
}
