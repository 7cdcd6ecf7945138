package core

// e-CNY "double offline" payments. A hardware wallet pays a stall or bus
// terminal with neither side online; the terminal uploads the payment later
// as OpECNYOffline. DOMAIN.md: such payments are capped per payment and by
// count before the wallet must sync online, and the payee's received value
// is not spendable until the wallet has synced. The caps are configuration
// (Config.Offline, defaults 500 CNY and 10 payments); the count is state of
// the wallet's account (in snapshots since version 4), checked and counted
// in the same step as the debit (DESIGN promise 3).
//
// Settlement: the record of an approved offline payment carries the flag
// Unsynced (record flags bit 1). Settlement books it as a purchase of the
// payee like any other, and holds the payee's value back from payout until
// the wallet's next online operation (any approved online debit or top-up
// of the wallet, which resets its offline count), releasing it in the first
// window settled after that (settlement/clearing HoldUnsynced) — the flag
// tells it which rows to hold.

import (
	"fmt"

	"scenepay/terminals"
)

// OfflineCaps are the "double offline" caps of e-CNY wallets.
type OfflineCaps struct {
	PaymentMax int64 // fen per offline payment (default 50_000: 500 CNY)
	CountMax   int   // offline payments since the wallet's last online sync (default 10)
}

// Default offline caps (DOMAIN.md).
const (
	DefaultOfflinePaymentMax = 500 * fenPerCNY
	DefaultOfflineCountMax   = 10
	offlineCountLimit        = 1<<16 - 1 // the counter's own bound (u16 in snapshots)
)

func (c OfflineCaps) normalized() OfflineCaps {
	if c.PaymentMax <= 0 {
		c.PaymentMax = DefaultOfflinePaymentMax
	}
	if c.CountMax <= 0 || c.CountMax > offlineCountLimit {
		c.CountMax = DefaultOfflineCountMax
	}
	return c
}

// syncsOffline reports whether an approved record of op is an online
// operation of the account, which resets its offline count.
func syncsOffline(op Op) bool {
	switch op {
	case OpTopUp, OpPurchase, OpHold, OpQRPay, OpTapIn, OpTapOut:
		return true
	}
	return false
}

// decideECNYOffline decides an uploaded offline payment. Precedence: a
// reused (TID, Txn) (refusal), then amount, unknown account, not a wallet
// (refusal: only e-CNY wallets pay double offline), blocked, the offline
// per-payment cap (CodeLimitSingle), the offline count
// (CodeOfflineCountExceeded), the class limits, funds.
func (s *Shard) decideECNYOffline(in *Input, r *Record) (terminals.Code, bool) {
	h := s.hashTxn(in.TID, in.Txn)
	if s.rev.get(txnKey{in.TID, in.Txn}, h) != nil || s.holds.find(txnKey{in.TID, in.Txn}, h) >= 0 {
		return terminals.CodeIDConflict, false
	}
	if in.Amount <= 0 {
		return terminals.CodeInvalidAmount, true
	}
	_, a := s.lookup(in.Account)
	if a == nil {
		return terminals.CodeUnknownInstrument, true
	}
	if a.kind != kindECNY {
		return terminals.CodeMalformed, false
	}
	caps := s.cfg.Offline.normalized()
	switch {
	case a.blocked:
		return terminals.CodeInstrumentBlocked, true
	case in.Amount > caps.PaymentMax:
		return terminals.CodeLimitSingle, true
	case int(a.offN) >= caps.CountMax:
		return terminals.CodeOfflineCountExceeded, true
	}
	if c := s.limitCheck(a, in.Amount, r.Time, true); c != terminals.CodeApproved {
		return c, true
	}
	if in.Amount > a.available() {
		return terminals.CodeInsufficientFunds, true
	}
	r.Unsynced = true
	r.Orig = uint64(a.offN) + 1 // the wallet's offline count after this payment
	return terminals.CodeApproved, true
}

// effectECNYOffline debits an approved offline payment and counts it.
func (s *Shard) effectECNYOffline(r *Record, a *account) error {
	if a.kind != kindECNY {
		return fmt.Errorf("offline payment from a %s account", kindNames[a.kind])
	}
	if r.Amount <= 0 || r.Amount > a.available() {
		return fmt.Errorf("offline payment of %d fen with %d available", r.Amount, a.available())
	}
	if !r.Unsynced || r.Orig != uint64(a.offN)+1 || a.offN == offlineCountLimit {
		return fmt.Errorf("offline payment %d of the wallet, record says %d (unsynced %t)", a.offN+1, r.Orig, r.Unsynced)
	}
	c, ok := s.spend(a, r.Time, r.Amount)
	if !ok {
		return fmt.Errorf("offline payment of %d fen overflows the day or year counter", r.Amount)
	}
	a.balance -= r.Amount
	a.count(c)
	a.offN++
	return nil
}

// OfflineCount returns the wallet's offline payments since its last online
// sync (0 for an unknown account).
func (s *Shard) OfflineCount(key string) int {
	_, a := s.lookup(key)
	if a == nil {
		return 0
	}
	return int(a.offN)
}

// appendOffline writes the version 4 section: count u32, then by account
// (in key order) account u32, offline count u16; only non-zero counts.
func (s *Shard) appendOffline(sw *snapWriter, order []int32, pos []uint32) {
	var n uint32
	for i := range s.accounts {
		if s.accounts[i].offN != 0 {
			n++
		}
	}
	sw.u32(n)
	for _, i := range order {
		if c := s.accounts[i].offN; c != 0 {
			sw.u32(pos[i])
			sw.u16(c)
		}
	}
}

func (s *Shard) restoreOffline(sr *snapReader, nAcct uint32) {
	n := sr.u32()
	if sr.err == nil && n > nAcct {
		sr.fail("%d offline counts for %d accounts", n, nAcct)
	}
	prev := int64(-1)
	for i := uint32(0); i < n && sr.err == nil; i++ {
		ai := sr.u32()
		c := sr.u16()
		if sr.err == nil && (ai >= nAcct || int64(ai) <= prev || c == 0 || s.accounts[ai].kind != kindECNY) {
			sr.fail("offline count of account %d out of order, range or kind", ai)
			return
		}
		prev = int64(ai)
		s.accounts[ai].offN = c
	}
}
