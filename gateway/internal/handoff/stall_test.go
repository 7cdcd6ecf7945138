package handoff_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/market"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

// A wallet's payment through a stall code settles for the stall's merchant
// like a QR payment: one purchase row of the amount, a refund one refund
// row; a declined payment and the registry entries give no row.
func TestStallCodePaymentSettles(t *testing.T) {
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	e, err := engine.Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.SetPublisher(&pub{ch: make(chan []byte, 16)})
	if err := e.RegisterTerminal(registry.Terminal{TID: "S1", Kind: registry.KindStall, Merchant: "stall-7", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "county:P", Amount: 3000, Ref: "o"})
	if err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open: %v %v", r.Code, err)
	}
	sc, err := e.RegisterStallCode(engine.StallCodeSpec{TID: "S1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		id   string
		amt  int64
		want terminals.Code
	}{{"w1", 2500, terminals.CodeApproved}, {"w2", 2000, terminals.CodeInsufficientFunds}, {"w3", 500, terminals.CodeApproved}} {
		res, err := e.PayStallCode(context.Background(), engine.StallPay{Code: sc.ID, Account: "county:P", Amount: p.amt, ID: p.id, Verified: market.ClassB})
		if err != nil || res.Code != p.want {
			t.Fatalf("pay %s: %v %v", p.id, res.Code, err)
		}
	}
	if res, err := e.RefundStallPayment(context.Background(), engine.StallRefund{Code: sc.ID, Payment: "w1", ID: "r1", Amount: 1000}); err != nil || res.Code != terminals.CodeApproved {
		t.Fatalf("refund: %v %v", res.Code, err)
	}
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "settlement.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	durable := e.Journal().DurableLSN()
	runHandoff(t, e, st, func(h *handoff.Handoff) bool { return h.HandedOff() == durable })
	tot, err := st.Totals(context.Background(), "stall-7", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if tot.Count != 3 || tot.Net != 2000 || tot.Gross != 3000 || tot.Payments != 2 || tot.Refunds != -1000 || tot.RefundCount != 1 {
		t.Fatalf("stall-7 settles %+v, want 2 purchase rows of 3000 fen and a refund of 1000", tot)
	}
}
