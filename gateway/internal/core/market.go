package core

// Market payments in the shard step. A stall terminal's scan of a consumer
// payment code (OpQRPay) is verified (MAC under the issuer key, issue time,
// lifetime, single use), checked against the PBoC QR daily limit of the
// code's class for the account the code is bound to, then against the core
// ledger rules (blocked, e-CNY limits, funds), and only then applied: the
// code marked used, the QR class counter and the debit moved, and the
// payment with its stall and operator legs entered in the refund ledger.
// All of it is one Step of the account's shard writer, so the limit can
// never be passed by concurrent payments, and the record carries what
// replay needs (class, code tag and expiry, legs, counter after) so that
// Apply never consults policy. A refund (OpRefund) names the original by
// (TID, Orig), is bounded by what remains refundable, credits the original
// account and takes the amount off the QR counter if it is still the
// payment's day.

import (
	"fmt"
	"strconv"
	"time"

	"scenepay/gateway/internal/scene/market"
	"scenepay/terminals"
)

// MarketAmounts is the market extension of a version 3 record.
type MarketAmounts struct {
	Class    uint8               // PBoC QR class 1..4 (A..D); 0 for declines
	Static   bool                // OpQRPay through a static merchant code (class D, no consumer code)
	Tag      [market.TagLen]byte // the consumer code's tag (its identity in the used set); zero if static
	Expiry   int64               // Unix seconds after which the code can no longer verify
	PaidAt   int64               // UTC Unix ns of the payment (OpRefund: the original's time)
	Stall    int64               // stall leg of Amount, fen (OpRefund: taken back from the stall)
	Operator int64               // operator's leg of Amount, fen (OpRefund: taken back from the operator)
	OpMerch  string              // market operator's merchant id, payee of the operator leg
	QRDay    int32               // the account's QR counter day after the effect (market.DayOf)
	QRSpent  int64               // the account's QR counter of Class on QRDay after the effect, fen
}

// marketState is the shard's market state: one writer owns it.
type marketState struct {
	used   *market.UsedCodes
	ledger *market.Ledger
	verify *market.Verifier
}

func newMarketState(c *Config) marketState {
	mc := c.Market.Config()
	return marketState{
		used:   market.NewUsedCodes(mc.UsedCodesMax),
		ledger: market.NewLedger(c.Market),
		verify: market.NewVerifier(c.PayCodeKeys),
	}
}

// SetMarket replaces the market policy (limits, code lifetime, fee ratio)
// that OpQRPay decides with; the table bounds stay those of NewShard. Like
// SetTransit it is called by the single writer between Steps. A nil r is
// ignored.
func (s *Shard) SetMarket(r *market.Rules) {
	if r != nil {
		s.cfg.Market = r
	}
}

// Market returns the market policy the shard decides OpQRPay with (the
// caller reads it between Steps, as the single writer).
func (s *Shard) Market() *market.Rules { return s.cfg.Market }

// PaymentID is the refund ledger's id of the market payment (tid, txn).
func PaymentID(tid string, txn uint64) string {
	return tid + "/" + strconv.FormatUint(txn, 10)
}

// paymentIDMaxTID keeps PaymentID within market.MaxIDLen: "/" and 20 digits.
const paymentIDMaxTID = market.MaxIDLen - 21

// qrAfter is the account's QR counter of class after an effect.
func qrAfter(a *account, class uint8) (int32, int64) {
	if a.qr == nil || class < 1 || class > 4 {
		return 0, 0
	}
	return a.qr.Day, a.qr.Spent[class]
}

// declineOf maps a market decline to (code, journal): decisions are
// journaled like a purchase's declines; refusals (malformed, busy, id
// conflict) and ORIGINAL_NOT_FOUND are not.
func declineOf(err error) (terminals.Code, bool) {
	c := market.CodeOf(err)
	return c, c.Class() == terminals.ClassDecline && c != terminals.CodeOriginalNotFound
}

// decideQRPay decides a market QR payment. Precedence: refusals (bad
// merchant or terminal id, id reuse, malformed code, full used-code set),
// then the code's decisions (invalid, expired, reused; a code bound to
// another account is invalid), amount, unknown account, blocked, the PBoC
// QR class daily limit, the e-CNY limits, funds.
func (s *Shard) decideQRPay(in *Input, r *Record) (terminals.Code, bool) {
	rules := s.cfg.Market
	if in.Merchant == "" || len(in.Merchant) > market.MaxIDLen || len(in.TID) > paymentIDMaxTID ||
		len(in.Account) > market.MaxIDLen || len(in.Code) > market.MaxCodeLen {
		return terminals.CodeMalformed, false
	}
	if _, _, ok := s.mkt.ledger.Lookup(PaymentID(in.TID, in.Txn)); ok {
		return terminals.CodeIDConflict, false
	}
	if s.rev.get(txnKey{in.TID, in.Txn}, s.hashTxn(in.TID, in.Txn)) != nil {
		return terminals.CodeIDConflict, false
	}
	now := time.Unix(0, r.Time)
	m := &r.Market
	if in.QRStatic {
		if in.Code != "" || in.QRClass != 0 {
			return terminals.CodeMalformed, false
		}
		m.Class, m.Static = uint8(market.ClassD), true
	} else if in.QRClass != 0 {
		// A fresh dynamic stall code: the registry (the caller's) decided
		// the class and keeps the code single-use across shards; the tag
		// in this shard's used set makes a second use here corruption on
		// replay, as for a consumer code.
		if in.QRClass > uint8(market.ClassC) || in.Code == "" {
			return terminals.CodeMalformed, false
		}
		if in.QRExpiry <= now.Unix() {
			return market.CodePayCodeExpired, true
		}
		tag := market.StallTag(in.Code)
		if s.mkt.used.Seen(tag) {
			return market.CodePayCodeReused, true
		}
		if !s.mkt.used.Room(now.Unix()) {
			return terminals.CodeBusy, false
		}
		m.Class, m.Tag, m.Expiry = in.QRClass, tag, in.QRExpiry
	} else {
		pc, err := s.mkt.verify.Verify(rules, s.mkt.used, in.Code, now)
		if err != nil {
			return declineOf(err)
		}
		if !pc.AccountIs(in.Account) {
			return market.CodePayCodeInvalid, true
		}
		m.Class, m.Tag, m.Expiry = uint8(pc.Class), pc.Tag, rules.Expiry(&pc)
	}
	if in.Amount <= 0 {
		return terminals.CodeInvalidAmount, true
	}
	_, a := s.lookup(in.Account)
	if a == nil {
		return terminals.CodeUnknownInstrument, true
	}
	if a.blocked {
		return terminals.CodeInstrumentBlocked, true
	}
	var cust market.Customer
	if a.qr != nil {
		cust = *a.qr
	}
	if err := rules.Check(&cust, market.Class(m.Class), in.Amount, now); err != nil {
		return declineOf(err)
	}
	if c := s.limitCheck(a, in.Amount, r.Time, true); c != terminals.CodeApproved {
		return c, true
	}
	if in.Amount > a.available() {
		return terminals.CodeInsufficientFunds, true
	}
	split, err := rules.SplitPayment("", in.Merchant, in.Amount)
	if err != nil {
		return declineOf(err)
	}
	m.PaidAt, m.Stall, m.Operator, m.OpMerch = r.Time, split.Stall.Amount, split.Operator.Amount, split.Operator.Merchant
	return terminals.CodeApproved, true
}

// decideRefund decides a refund of the QR payment (TID, Orig). Precedence:
// refusals (ids, reuse of the refund's own id), original not found (also
// when it is on another account), then the ledger's decisions (amount,
// exceeds), and a full refund list (busy).
func (s *Shard) decideRefund(in *Input, r *Record) (terminals.Code, bool) {
	if len(in.TID) > paymentIDMaxTID || len(in.Account) > market.MaxIDLen || in.Orig == 0 || in.Orig == in.Txn {
		return terminals.CodeMalformed, false
	}
	p, _, ok := s.mkt.ledger.Lookup(PaymentID(in.TID, in.Orig))
	if !ok || p.Account != in.Account {
		return terminals.CodeOriginalNotFound, false
	}
	if _, _, dup := s.mkt.ledger.Lookup(PaymentID(in.TID, in.Txn)); dup {
		return terminals.CodeIDConflict, false
	}
	f, err := s.mkt.ledger.CheckRefund(s.cfg.Market, PaymentID(in.TID, in.Orig), PaymentID(in.TID, in.Txn), in.Amount)
	if err != nil {
		return declineOf(err)
	}
	if f.Duplicate {
		return terminals.CodeIDConflict, false // the gateway's dedupe should have caught it
	}
	_, a := s.lookup(in.Account)
	if a == nil {
		return terminals.CodeOriginalNotFound, false
	}
	if _, ok := credit(a, f.Amount); !ok {
		return terminals.CodeInvalidAmount, true
	}
	m := &r.Market
	m.Class, m.PaidAt, m.Stall, m.Operator, m.OpMerch = uint8(f.Class), f.PaidAt.UnixNano(), f.Stall.Amount, f.Operator.Amount, f.Operator.Merchant
	return terminals.CodeApproved, true
}

// effectQRPay applies an approved QR payment record: every precondition is
// checked before anything changes (code not used, payment id new, legs sum
// to the amount, funds), then the code is marked used, the payment entered
// in the ledger, the QR counter and the debit moved.
func (s *Shard) effectQRPay(r *Record, a *account) error {
	m := &r.Market
	switch {
	case m.Class < uint8(market.ClassA) || m.Class > uint8(market.ClassD):
		return fmt.Errorf("qr class %d", m.Class)
	case m.Static != (m.Class == uint8(market.ClassD)):
		return fmt.Errorf("qr class %d with static=%t", m.Class, m.Static)
	case m.PaidAt != r.Time:
		return fmt.Errorf("payment time %d is not the record's %d", m.PaidAt, r.Time)
	case m.Stall < 0 || m.Operator < 0 || m.Stall > r.Amount || m.Operator != r.Amount-m.Stall:
		return fmt.Errorf("legs %d + %d do not make %d", m.Stall, m.Operator, r.Amount)
	case r.Amount <= 0 || r.Amount > a.available():
		return fmt.Errorf("debit of %d fen with %d available", r.Amount, a.available())
	case r.TID == "" || r.Txn == 0:
		return fmt.Errorf("qr payment without a terminal txn id")
	}
	id := PaymentID(r.TID, r.Txn)
	if _, _, ok := s.mkt.ledger.Lookup(id); ok {
		return fmt.Errorf("payment %s already in the ledger", id)
	}
	if !m.Static && s.mkt.used.Seen(m.Tag) {
		return fmt.Errorf("code %x already used", m.Tag[:4])
	}
	c, ok := s.spend(a, r.Time, r.Amount)
	if !ok {
		return fmt.Errorf("debit of %d fen overflows the day or year counter", r.Amount)
	}
	cust := market.Customer{}
	if a.qr != nil {
		cust = *a.qr
	}
	now := time.Unix(0, r.Time)
	if err := s.cfg.Market.Apply(&cust, market.Class(m.Class), r.Amount, now); err != nil {
		return fmt.Errorf("qr counter: %v", err)
	}
	if !m.Static {
		if err := s.mkt.used.Mark(m.Tag, m.Expiry, now.Unix()); err != nil {
			return fmt.Errorf("used codes: %v", err)
		}
	}
	err := s.mkt.ledger.Record(market.Payment{ID: id, Account: r.Account, StallMerchant: r.Merchant,
		Class: market.Class(m.Class), Amount: r.Amount, Operator: m.Operator, PaidAt: now})
	if err != nil {
		return fmt.Errorf("refund ledger: %v", err) // the code stays marked: the shard is discarded on error
	}
	a.balance -= r.Amount
	a.count(c)
	if a.qr == nil {
		a.qr = new(market.Customer)
	}
	*a.qr = cust
	return nil
}

// effectRefund applies an approved refund record. The ledger recomputes
// the legs (a deterministic function of the payment and earlier refunds,
// not of policy) and they must equal the record's.
func (s *Shard) effectRefund(r *Record, a *account) error {
	m := &r.Market
	f, err := s.mkt.ledger.CheckRefund(s.cfg.Market, PaymentID(r.TID, r.Orig), PaymentID(r.TID, r.Txn), r.Amount)
	switch {
	case err != nil:
		return fmt.Errorf("refund: %v", err)
	case f.Duplicate:
		return fmt.Errorf("refund %s/%d already applied", r.TID, r.Txn)
	case f.Account != r.Account:
		return fmt.Errorf("payment %s/%d is on another account", r.TID, r.Orig)
	case uint8(f.Class) != m.Class || f.PaidAt.UnixNano() != m.PaidAt || f.Stall.Amount != m.Stall ||
		f.Operator.Amount != m.Operator || f.Operator.Merchant != m.OpMerch || m.Static:
		return fmt.Errorf("refund legs %d/%d class %d differ from the ledger's %d/%d class %d",
			m.Stall, m.Operator, m.Class, f.Stall.Amount, f.Operator.Amount, f.Class)
	}
	nb, ok := credit(a, f.Amount)
	if !ok {
		return fmt.Errorf("refund of %d fen overflows balance %d", f.Amount, a.balance)
	}
	if err := s.mkt.ledger.ApplyRefund(&f); err != nil {
		return fmt.Errorf("refund: %v", err)
	}
	a.balance = nb
	// The e-CNY counters and the QR counter give the amount back only on
	// the payment's own day (year): a refund on a later day is a credit,
	// not a correction of that day's spending.
	pday, pyear := s.clock.at(m.PaidAt)
	if pday == a.day {
		a.dayTotal -= min(a.dayTotal, f.Amount)
	}
	if pyear == a.year {
		a.yearTotal -= min(a.yearTotal, f.Amount)
	}
	if a.qr != nil {
		s.cfg.Market.Reverse(a.qr, f.Class, f.Amount, f.PaidAt, time.Unix(0, r.Time))
	}
	return nil
}

// QRCounter returns an account's PBoC QR counters (false if the account
// never paid by QR).
func (s *Shard) QRCounter(key string) (market.Customer, bool) {
	_, a := s.lookup(key)
	if a == nil || a.qr == nil {
		return market.Customer{}, false
	}
	return *a.qr, true
}

// MarketPayment returns a market payment of the refund ledger and the
// amount refunded so far.
func (s *Shard) MarketPayment(tid string, txn uint64) (market.Payment, int64, bool) {
	return s.mkt.ledger.Lookup(PaymentID(tid, txn))
}
