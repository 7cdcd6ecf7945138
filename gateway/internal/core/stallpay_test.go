package core

import (
	"testing"
	"time"

	"scenepay/gateway/internal/scene/market"
	"scenepay/terminals"
)

func qrDynamic(acct, id string, class market.Class, expiry int64, amt int64, txn uint64) Input {
	return Input{Op: OpQRPay, Account: acct, Code: id, QRClass: uint8(class), QRExpiry: expiry, Amount: amt, TID: "S1", Txn: txn, Merchant: "stall-7"}
}

// TestQRPayDynamicStallCode: a fresh dynamic stall code pays in the payer's
// class, once (its tag in the used set), not after its expiry, and replay
// rebuilds the same shard.
func TestQRPayDynamicStallCode(t *testing.T) {
	s := NewShard(0, marketCfg())
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	exp := at(60).Unix()
	both := qrDynamic(cust, "SC2", market.ClassB, exp, 100, 9)
	both.QRStatic = true
	recs := runSteps(t, s, []step{
		{name: "open", at: at(0), in: open(cust, 100_000), code: terminals.CodeApproved, avail: 100_000, rec: true},
		{name: "dynamic B", at: at(1), in: qrDynamic(cust, "SC1", market.ClassB, exp, 1550, 1), code: terminals.CodeApproved, avail: 98_450, rec: true},
		{name: "same code again", at: at(2), in: qrDynamic(cust, "SC1", market.ClassB, exp, 1550, 2), code: terminals.CodePayCodeReused, avail: 98_450, rec: true},
		{name: "expired", at: at(60), in: qrDynamic(cust, "SC2", market.ClassB, exp, 100, 3), code: terminals.CodePayCodeExpired, avail: 98_450, rec: true},
		{name: "class D is not a dynamic class", at: at(3), in: qrDynamic(cust, "SC3", market.ClassD, exp, 100, 4), code: terminals.CodeMalformed, avail: 98_450},
		{name: "no code id", at: at(3), in: qrDynamic(cust, "", market.ClassB, exp, 100, 5), code: terminals.CodeMalformed, avail: 98_450},
		{name: "static and dynamic", at: at(3), in: both, code: terminals.CodeMalformed, avail: 98_450},
		{name: "static D", at: at(4), in: qrStatic(cust, 500, 6), code: terminals.CodeApproved, avail: 97_950, rec: true},
	})
	c, ok := s.QRCounter(cust)
	if !ok || c.Spent[market.ClassB] != 1550 || c.Spent[market.ClassD] != 500 {
		t.Errorf("QR counters %+v", c)
	}
	p, _, ok := s.MarketPayment("S1", 1)
	if !ok || p.Class != market.ClassB || p.StallMerchant != "stall-7" {
		t.Errorf("payment %+v %v", p, ok)
	}
	replay(t, s, marketCfg(), recs)
}
