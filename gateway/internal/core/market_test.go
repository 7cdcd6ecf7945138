package core

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/market"
	"scenepay/terminals"
)

var issuerKey = market.IssuerKey([]byte("0123456789abcdef0123456789abcdef"), 1)

func marketCfg() *Config {
	return &Config{ReversibleMax: 64, RefsMax: 64, HoldsMax: 64, PayCodeKeys: map[uint8][]byte{1: issuerKey}}
}

// code issues a consumer code for acct of class at t with nonce n.
func code(t testing.TB, key []byte, acct string, class market.Class, at time.Time, n uint64) string {
	t.Helper()
	c, err := market.Issue(key, 1, acct, class, at, n)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func qrPay(acct, c string, amt int64, txn uint64) Input {
	return Input{Op: OpQRPay, Account: acct, Code: c, Amount: amt, TID: "S1", Txn: txn, Merchant: "stall-7", Hash: txn}
}

func qrStatic(acct string, amt int64, txn uint64) Input {
	return Input{Op: OpQRPay, Account: acct, QRStatic: true, Amount: amt, TID: "S1", Txn: txn, Merchant: "stall-7"}
}

func refund(acct string, amt int64, txn, orig uint64) Input {
	return Input{Op: OpRefund, Account: acct, Amount: amt, TID: "S1", Txn: txn, Orig: orig, Merchant: "stall-7"}
}

const cust = "county:c1"

// TestQRPayLimitsAndCodes: the PBoC class C limit (1,000 CNY) reached by
// the sum of small payments, per class counters, class D static limit,
// expired, reused, forged and misbound codes, and the day boundary.
func TestQRPayLimitsAndCodes(t *testing.T) {
	s := NewShard(0, marketCfg())
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	cC := func(n uint64, sec int) string { return code(t, issuerKey, cust, market.ClassC, at(sec), n) }
	reused := cC(3, 3)
	other := market.IssuerKey([]byte("another master key of 32 bytes!!"), 1)
	nextDay := t0.Add(24 * time.Hour)
	steps := []step{
		{name: "open", at: at(0), in: open(cust, 1_000_000), code: terminals.CodeApproved, avail: 1_000_000, rec: true},
		{name: "C 400", at: at(1), in: qrPay(cust, cC(1, 1), 40_000, 1), code: terminals.CodeApproved, avail: 960_000, rec: true},
		{name: "C 400", at: at(2), in: qrPay(cust, cC(2, 2), 40_000, 2), code: terminals.CodeApproved, avail: 920_000, rec: true},
		{name: "C 300 over 1000", at: at(3), in: qrPay(cust, reused, 30_000, 3), code: terminals.CodeLimitDaily, avail: 920_000, rec: true},
		{name: "same code, 200: a declined code is not burnt", at: at(4), in: qrPay(cust, reused, 20_000, 4), code: terminals.CodeApproved, avail: 900_000, rec: true},
		{name: "reused", at: at(5), in: qrPay(cust, reused, 1, 5), code: terminals.CodePayCodeReused, avail: 900_000, rec: true},
		{name: "C at the limit: 1 fen more", at: at(6), in: qrPay(cust, cC(6, 6), 1, 6), code: terminals.CodeLimitDaily, avail: 900_000, rec: true},
		{name: "B has its own counter", at: at(7), in: qrPay(cust, code(t, issuerKey, cust, market.ClassB, at(7), 7), 300_000, 7), code: terminals.CodeApproved, avail: 600_000, rec: true},
		{name: "expired", at: at(100), in: qrPay(cust, cC(8, 39), 100, 8), code: terminals.CodePayCodeExpired, avail: 600_000, rec: true},
		{name: "future", at: at(9), in: qrPay(cust, cC(9, 30), 100, 9), code: terminals.CodePayCodeInvalid, avail: 600_000, rec: true},
		{name: "forged key", at: at(10), in: qrPay(cust, code(t, other, cust, market.ClassC, at(10), 10), 100, 10), code: terminals.CodePayCodeInvalid, avail: 600_000, rec: true},
		{name: "bound to another account", at: at(11), in: qrPay(cust, code(t, issuerKey, "county:c2", market.ClassC, at(11), 11), 100, 11), code: terminals.CodePayCodeInvalid, avail: 600_000, rec: true},
		{name: "malformed", at: at(12), in: qrPay(cust, "SPC1!!", 100, 12), code: terminals.CodeMalformed, avail: 600_000},
		{name: "D static 300", at: at(13), in: qrStatic(cust, 30_000, 13), code: terminals.CodeApproved, avail: 570_000, rec: true},
		{name: "D static 300 over 500", at: at(14), in: qrStatic(cust, 30_000, 14), code: terminals.CodeLimitDaily, avail: 570_000, rec: true},
		{name: "D static 200", at: at(15), in: qrStatic(cust, 20_000, 15), code: terminals.CodeApproved, avail: 550_000, rec: true},
		{name: "B 2000 (B at 5000)", at: at(16), in: qrPay(cust, code(t, issuerKey, cust, market.ClassB, at(16), 16), 200_000, 16), code: terminals.CodeApproved, avail: 350_000, rec: true},
		{name: "B over its limit", at: at(17), in: qrPay(cust, code(t, issuerKey, cust, market.ClassB, at(17), 17), 1, 17), code: terminals.CodeLimitDaily, avail: 350_000, rec: true},
		{name: "next day C again", at: nextDay, in: qrPay(cust, code(t, issuerKey, cust, market.ClassC, nextDay, 18), 100_000, 18), code: terminals.CodeApproved, avail: 250_000, rec: true},
		{name: "next day C over", at: nextDay.Add(time.Second), in: qrPay(cust, code(t, issuerKey, cust, market.ClassC, nextDay, 19), 1, 19), code: terminals.CodeLimitDaily, avail: 250_000, rec: true},
		{name: "unknown account", at: nextDay.Add(2 * time.Second), in: qrPay("county:zz", code(t, issuerKey, "county:zz", market.ClassC, nextDay, 20), 1, 20), code: terminals.CodeUnknownInstrument, avail: 0, rec: true},
	}
	recs := runSteps(t, s, steps)
	c, ok := s.QRCounter(cust)
	if !ok || c.Day != market.DayOf(nextDay) || c.Spent[market.ClassC] != 100_000 || c.Spent[market.ClassB] != 0 {
		t.Errorf("QR counter after the day roll: %+v", c)
	}
	// Legs: the operator's 1% of every approved payment, linked by id.
	p, refunded, ok := s.MarketPayment("S1", 1)
	if !ok || p.Amount != 40_000 || p.Operator != 400 || p.StallMerchant != "stall-7" || p.Account != cust || refunded != 0 {
		t.Errorf("payment S1/1: %+v refunded %d ok %t", p, refunded, ok)
	}
	var r Record
	if err := DecodeRecord(recs[1], &r); err != nil {
		t.Fatal(err)
	}
	if r.Op != OpQRPay || r.Market.Stall != 39_600 || r.Market.Operator != 400 || r.Market.OpMerch != "market-operator" ||
		r.Market.Class != uint8(market.ClassC) || r.Market.QRSpent != 40_000 {
		t.Errorf("record legs: %+v", r.Market)
	}
	replay(t, s, marketCfg(), recs)
}

// TestRefunds: partial, full, over-refund (C5), unknown original, refund on
// another account, QR counter given back on the payment's day only.
func TestRefunds(t *testing.T) {
	s := NewShard(0, marketCfg())
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	nextDay := t0.Add(24 * time.Hour)
	steps := []step{
		{name: "open", at: at(0), in: open(cust, 100_000), code: terminals.CodeApproved, avail: 100_000, rec: true},
		{name: "open c2", at: at(0), in: open("county:c2", 0), code: terminals.CodeApproved, avail: 0, rec: true},
		{name: "pay 100", at: at(1), in: qrPay(cust, code(t, issuerKey, cust, market.ClassC, at(1), 1), 10_000, 1), code: terminals.CodeApproved, avail: 90_000, rec: true},
		{name: "refund 30", at: at(2), in: refund(cust, 3_000, 2, 1), code: terminals.CodeApproved, avail: 93_000, rec: true},
		{name: "refund 80 over", at: at(3), in: refund(cust, 8_000, 3, 1), code: terminals.CodeRefundExceeds, avail: 93_000, rec: true},
		{name: "refund on another account", at: at(4), in: refund("county:c2", 1_000, 4, 1), code: terminals.CodeOriginalNotFound, avail: 0},
		{name: "refund unknown original", at: at(5), in: refund(cust, 1_000, 5, 99), code: terminals.CodeOriginalNotFound, avail: 93_000},
		{name: "refund 70 full", at: at(6), in: refund(cust, 7_000, 6, 1), code: terminals.CodeApproved, avail: 100_000, rec: true},
		{name: "refund 1 more", at: at(7), in: refund(cust, 1, 7, 1), code: terminals.CodeRefundExceeds, avail: 100_000, rec: true},
		{name: "refund zero", at: at(8), in: refund(cust, 0, 8, 1), code: terminals.CodeInvalidAmount, avail: 100_000, rec: true},
		{name: "pay 500", at: at(9), in: qrPay(cust, code(t, issuerKey, cust, market.ClassC, at(9), 9), 50_000, 9), code: terminals.CodeApproved, avail: 50_000, rec: true},
		{name: "refund 100 next day", at: nextDay, in: refund(cust, 10_000, 10, 9), code: terminals.CodeApproved, avail: 60_000, rec: true},
	}
	recs := runSteps(t, s, steps)
	p, refunded, ok := s.MarketPayment("S1", 1)
	if !ok || refunded != 10_000 {
		t.Errorf("payment S1/1 refunded %d (ok %t), want 10000", refunded, ok)
	}
	var r Record
	if err := DecodeRecord(recs[3], &r); err != nil {
		t.Fatal(err)
	}
	if r.Op != OpRefund || r.Market.Operator != 30 || r.Market.Stall != 2_970 || r.Market.PaidAt != at(1).UnixNano() {
		t.Errorf("refund legs %+v (payment %+v)", r.Market, p)
	}
	// The full refund took back exactly the legs paid.
	if err := DecodeRecord(recs[5], &r); err != nil {
		t.Fatal(err)
	}
	if r.Market.Operator+30 != 100 {
		t.Errorf("refund legs of the rest: %+v", r.Market)
	}
	// Same day: the QR counter went back to zero before the 500 payment;
	// the next-day refund left the (rolled) counter alone.
	c, _ := s.QRCounter(cust)
	if c.Day != market.DayOf(t0) || c.Spent[market.ClassC] != 50_000 {
		t.Errorf("QR counter %+v, want day %d C 50000", c, market.DayOf(t0))
	}
	replay(t, s, marketCfg(), recs)
}

// TestQRRestartKeepsCounters: a restart (snapshot + journal, or journal
// only) keeps the used codes, the QR counters and the refund ledger: the
// limit is still reached by the sum across the restart and a code used
// before it is still refused.
func TestQRRestartKeepsCounters(t *testing.T) {
	s := NewShard(0, marketCfg())
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	used := code(t, issuerKey, cust, market.ClassC, at(2), 2)
	recs := runSteps(t, s, []step{
		{name: "open", at: at(0), in: open(cust, 1_000_000), code: terminals.CodeApproved, avail: 1_000_000, rec: true},
		{name: "pay 600", at: at(1), in: qrPay(cust, code(t, issuerKey, cust, market.ClassC, at(1), 1), 60_000, 1), code: terminals.CodeApproved, avail: 940_000, rec: true},
	})
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, runSteps(t, s, []step{
		{name: "pay 300", at: at(2), in: qrPay(cust, used, 30_000, 2), code: terminals.CodeApproved, avail: 910_000, rec: true},
	})...)
	after := []step{
		{name: "reused after restart", at: at(3), in: qrPay(cust, used, 100, 3), code: terminals.CodePayCodeReused, avail: 910_000, rec: true},
		{name: "sum over 1000 after restart", at: at(4), in: qrPay(cust, code(t, issuerKey, cust, market.ClassC, at(4), 4), 10_001, 4), code: terminals.CodeLimitDaily, avail: 910_000, rec: true},
		{name: "refund after restart", at: at(5), in: refund(cust, 60_000, 5, 1), code: terminals.CodeApproved, avail: 970_000, rec: true},
	}
	// Journal only.
	r1 := replay(t, s, marketCfg(), recs)
	runSteps(t, r1, after)
	// Snapshot, then the rest of the journal.
	r2 := NewShard(0, marketCfg())
	if err := r2.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	var rec Record
	if err := DecodeRecord(recs[2], &rec); err != nil {
		t.Fatal(err)
	}
	if err := r2.Apply(&rec); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "snapshot + journal", s, r2)
	runSteps(t, r2, after)
	runSteps(t, s, after)
	assertSame(t, "after restart", s, r2)
	assertSame(t, "journal only", s, r1)
}

// TestMarketRecordTampering: a record whose legs, class, code or counter
// do not fit the shard is corruption on replay, never silently applied.
// (How a payment divides between legs that sum to it is policy, the fee
// ratio of its day, so replay takes it from the record.)
func TestMarketRecordTampering(t *testing.T) {
	s := NewShard(0, marketCfg())
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	recs := runSteps(t, s, []step{
		{name: "open", at: at(0), in: open(cust, 100_000), code: terminals.CodeApproved, avail: 100_000, rec: true},
		{name: "pay", at: at(1), in: qrPay(cust, code(t, issuerKey, cust, market.ClassC, at(1), 1), 10_000, 1), code: terminals.CodeApproved, avail: 90_000, rec: true},
		{name: "refund", at: at(2), in: refund(cust, 5_000, 2, 1), code: terminals.CodeApproved, avail: 95_000, rec: true},
	})
	tamper := []struct {
		name string
		rec  int
		f    func(r *Record)
	}{
		{"legs do not sum", 1, func(r *Record) { r.Market.Stall++ }},
		{"class changed", 1, func(r *Record) { r.Market.Class = uint8(market.ClassB) }},
		{"counter", 1, func(r *Record) { r.Market.QRSpent = 1 }},
		{"static without its class", 1, func(r *Record) { r.Market.Static = true }},
		{"refund legs", 2, func(r *Record) { r.Market.Operator++; r.Market.Stall-- }},
		{"refund paid-at", 2, func(r *Record) { r.Market.PaidAt++ }},
		{"refund over the payment", 2, func(r *Record) { r.Amount = 20_000; r.Balance = 110_000 }},
	}
	for _, tc := range tamper {
		r := NewShard(0, marketCfg())
		var err error
		for i, b := range recs {
			var rec Record
			if err := DecodeRecord(b, &rec); err != nil {
				t.Fatal(err)
			}
			if i == tc.rec {
				tc.f(&rec)
				var back Record
				if err := DecodeRecord(rec.AppendBinary(nil), &back); err != nil || back != rec {
					t.Fatalf("%s: tampered record does not round-trip: %v", tc.name, err)
				}
			}
			if err = r.Apply(&rec); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: replay got %v, want corruption", tc.name, err)
		}
	}
	// A replayed code is marked used: the same payment twice is refused.
	r := replay(t, s, marketCfg(), recs)
	var rec Record
	if err := DecodeRecord(recs[1], &rec); err != nil {
		t.Fatal(err)
	}
	rec.Seq = r.Seq() + 1
	rec.Txn = 77
	if err := r.Apply(&rec); !errors.Is(err, ErrCorrupt) {
		t.Errorf("second use of a code in replay: %v", err)
	}
}

// marketRecords is a small market history for fuzz seeds: payments (code
// and static), a decline, refunds.
func marketRecords(tb testing.TB) (*Shard, [][]byte) {
	s := NewShard(5, marketCfg())
	var recs [][]byte
	var out Output
	for i, in := range []Input{
		open(cust, 100_000),
		qrPay(cust, code(tb, issuerKey, cust, market.ClassC, t0, 1), 10_000, 1),
		qrStatic(cust, 60_000, 2),
		qrStatic(cust, 30_000, 3),
		refund(cust, 2_500, 4, 1),
		refund(cust, 9_000, 5, 1),
	} {
		s.Step(t0.Add(time.Duration(i)*time.Second), &in, &out)
		if len(out.Record) > 0 {
			recs = append(recs, bytes.Clone(out.Record))
		}
	}
	return s, recs
}
