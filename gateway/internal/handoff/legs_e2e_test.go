package handoff_test

import (
	"context"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/market"
	"scenepay/settlement/clearing"
	settle "scenepay/settlement/handoff"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

// TestLegsSettleEndToEnd: a QR payment at a stall and an insurance-split
// hospital purchase go through the engine, the handoff (with the engine's
// Extras) and a SQLite store, and clearing the window settles them with
// their legs: the stall's market fee division is exactly the operator's
// leg the core computed for the payment, paid to the market operator and
// deducted from the stall's payable; the hospital's insurance parts are
// receivables from the configured payers, beside its self-pay takings.
func TestLegsSettleEndToEnd(t *testing.T) {
	ctx := context.Background()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 1
	cfg.SnapshotEvery = 0
	e, err := engine.Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := &pub{ch: make(chan []byte, 4)}
	e.SetPublisher(p)
	terms := map[string]*terminal{
		"S1": {tid: "S1", merchant: "stall-7", kind: registry.KindStall},
		"K1": {tid: "K1", merchant: "hosp", kind: registry.KindKiosk},
	}
	for _, tm := range terms {
		if err := e.RegisterTerminal(registry.Terminal{TID: tm.tid, Kind: tm.kind, Merchant: tm.merchant, KeyVersion: 1}); err != nil {
			t.Fatal(err)
		}
		tm.s = terminals.NewSigner(terminals.DeriveKey(master, tm.tid, 1))
	}
	if r, err := e.Operate(ctx, core.Input{Op: core.OpOpenAccount, Account: "county:C1", Amount: 100_000, Ref: "o-C1"}); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open account: %v %v", r.Code, err)
	}
	do := func(tm *terminal, r terminals.Request) *terminals.Reply {
		t.Helper()
		r.V, r.TID, r.TS = 1, tm.tid, time.Now().UnixMilli()
		return tm.do(t, e, p, r)
	}
	code, err := market.Issue(market.IssuerKey(master, 1), 1, "county:C1", market.ClassB, time.Now(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if rep := do(terms["S1"], terminals.Request{Type: terminals.TypeQRPay, Txn: 1, Amt: 1550, PayCode: code}); rep.Code != terminals.CodeApproved {
		t.Fatalf("qr_pay: %s", rep.Code)
	}
	// A partial refund takes its share of the operator's leg back.
	refund := terminals.Request{Type: terminals.TypeRefund, Txn: 2, Orig: 1, Amt: 500, Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}}
	if rep := do(terms["S1"], refund); rep.Code != terminals.CodeApproved {
		t.Fatalf("refund: %s", rep.Code)
	}
	hosp := terminals.Request{Type: terminals.TypePurchase, Txn: 1, Amt: 10_000,
		Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"},
		Ins:  terminals.Insurance{Pool: 6_000, Personal: 1_000, Self: 3_000, Set: true}}
	if rep := do(terms["K1"], hosp); rep.Code != terminals.CodeApproved || rep.Amt == nil || *rep.Amt != 3_000 {
		t.Fatalf("insurance-split purchase: %+v", rep)
	}

	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "settlement.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := handoff.New(handoff.Config{
		Source: "gw-legs", Store: st, Journal: e.Journal(), Entry: engine.EntryRecords, Extras: e.HandoffExtras(),
		Scene: func(tid string) (string, bool) {
			te, ok := e.Registry().Get(tid)
			if !ok {
				return "", false
			}
			return te.Terminal().Kind, true
		},
		BatchAge: 10 * time.Millisecond, PollEvery: 5 * time.Millisecond, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.Run(hctx) }()
	for deadline := time.Now().Add(20 * time.Second); h.HandedOff() < e.Journal().DurableLSN(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatalf("handoff did not finish: %d of %d", h.HandedOff(), e.Journal().DurableLSN())
		}
	}
	cancel()
	wg.Wait()

	// The rows in the store carry their legs.
	page, err := st.Transactions(ctx, store.Filter{Merchant: "stall-7"})
	if err != nil || len(page.Rows) != 2 || page.Rows[0].Op != settle.OpPurchase || page.Rows[0].Amount != 1550 ||
		page.Rows[1].Op != settle.OpRefund || page.Rows[1].Amount != -500 {
		t.Fatalf("stall rows %+v, %v", page.Rows, err)
	}
	cl, err := clearing.New(clearing.Config{Store: st, Legs: st})
	if err != nil {
		t.Fatal(err)
	}
	w := cl.Calendar().Of(page.Rows[0].At)
	legs, err := st.Legs(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	fee := legs["stall-7"]
	// The default market rules give the operator 1% of the payment (15.5
	// fen, rounded by the core) and take about 1% of the refund (5 fen) back.
	if len(fee) != 1 || fee[0].Kind != store.DivisionMarketFee || fee[0].Payee != "market-operator" || fee[0].Amount < 10 || fee[0].Amount > 11 {
		t.Fatalf("stall legs %+v, want one market fee of 10 or 11 fen to market-operator", fee)
	}
	ss, err := cl.Clear(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Settlement{
		{Window: w.ID, Merchant: "hosp", Totals: store.Totals{Count: 1, Gross: 3_000, Payments: 1, Net: 3_000}, Payable: 3_000,
			Divisions: []store.Division{{Kind: store.DivisionInsurancePersonal, Payee: "insurance-personal-account", Amount: 1_000},
				{Kind: store.DivisionInsurancePooled, Payee: "insurance-pooled-fund", Amount: 6_000}}},
		{Window: w.ID, Merchant: "stall-7", Totals: store.Totals{Count: 2, Gross: 1550, Payments: 1, Refunds: -500, RefundCount: 1, Net: 1050},
			Payable:   1050 - fee[0].Amount,
			Divisions: fee},
	}
	if !reflect.DeepEqual(ss, want) {
		t.Fatalf("settlements\n%+v\nwant\n%+v", ss, want)
	}
}
