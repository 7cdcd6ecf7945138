package storetest

// Contract cases for the clearing records (store.Clearing).

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

var clearingCases = []struct {
	name string
	fn   func(t *testing.T, ctx context.Context, open Opener, s store.Store)
}{
	{"WindowStateMachine", testWindowStates},
	{"SettleIsAtomicAndOnce", testSettleOnce},
	{"SceneTotalsByWindow", testSceneTotals},
	{"FeeRatesAndMerchants", testRatesMerchants},
	{"DifferencesRecordedNotMerged", testDifferences},
}

// TestWindow is window 2026-03-01 with a 23:00 Asia/Shanghai cut-off.
var TestWindow = store.Window{ID: "2026-03-01",
	Start:  time.Date(2026, 2, 28, 15, 0, 0, 0, time.UTC),
	CutOff: time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC)}

func testWindowStates(t *testing.T, ctx context.Context, open Opener, s store.Store) {
	if _, ok, err := s.LatestWindow(ctx); err != nil || ok {
		t.Fatalf("LatestWindow on empty store = %v, %v", ok, err)
	}
	w, created, err := s.OpenWindow(ctx, TestWindow)
	if err != nil || !created || w.State != store.WindowOpen || !w.Start.Equal(TestWindow.Start) || !w.CutOff.Equal(TestWindow.CutOff) {
		t.Fatalf("OpenWindow = %+v, %v, %v", w, created, err)
	}
	again := TestWindow
	again.CutOff = again.CutOff.Add(time.Hour) // a second open never rewrites
	if w2, created, err := s.OpenWindow(ctx, again); err != nil || created || !w2.CutOff.Equal(TestWindow.CutOff) {
		t.Fatalf("second OpenWindow = %+v, %v, %v", w2, created, err)
	}
	if _, _, err := s.OpenWindow(ctx, store.Window{ID: "2026-3-1", Start: TestWindow.Start, CutOff: TestWindow.CutOff}); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("bad window id: %v", err)
	}
	if _, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, nil); !errors.Is(err, store.ErrState) {
		t.Fatalf("settle an OPEN window: %v, want ErrState", err)
	}
	closeAt := TestWindow.CutOff.Add(10 * time.Minute)
	if ok, err := s.CloseWindow(ctx, TestWindow.ID, closeAt); err != nil || !ok {
		t.Fatalf("CloseWindow = %v, %v", ok, err)
	}
	if ok, err := s.CloseWindow(ctx, TestWindow.ID, closeAt.Add(time.Hour)); err != nil || ok {
		t.Fatalf("second CloseWindow = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.CloseWindow(ctx, "2026-01-01", closeAt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("close a missing window: %v", err)
	}
	// Reopen the database: state survives.
	s2, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Window(ctx, TestWindow.ID)
	if err != nil || got.State != store.WindowClosed || !got.ClosedAt.Equal(closeAt) || !got.SettledAt.IsZero() {
		t.Fatalf("Window after close = %+v, %v", got, err)
	}
	next := store.Window{ID: "2026-03-02", Start: TestWindow.CutOff, CutOff: TestWindow.CutOff.Add(24 * time.Hour)}
	if _, _, err := s.OpenWindow(ctx, next); err != nil {
		t.Fatal(err)
	}
	un, err := s.UnsettledWindows(ctx)
	if err != nil || len(un) != 2 || un[0].ID != TestWindow.ID || un[1].ID != next.ID {
		t.Fatalf("UnsettledWindows = %+v, %v", un, err)
	}
	if l, ok, err := s.LatestWindow(ctx); err != nil || !ok || l.ID != next.ID {
		t.Fatalf("LatestWindow = %+v, %v, %v", l, ok, err)
	}
	if ws, err := s.Windows(ctx, "2026-03-02", ""); err != nil || len(ws) != 1 || ws[0].ID != next.ID {
		t.Fatalf("Windows = %+v, %v", ws, err)
	}
	if _, err := s.Window(ctx, "2020-01-01"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing window: %v", err)
	}
}

func sampleSettlements(window string) []store.Settlement {
	return []store.Settlement{
		{Window: window, Merchant: "M1", Totals: store.Totals{Count: 3, Gross: 1000, Payments: 2, Refunds: -100, RefundCount: 1, Net: 900},
			Fee: 3, Payable: 852, Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "MKT", Amount: 45}}},
		{Window: window, Merchant: "M2", Totals: store.Totals{Count: 1, Gross: 500, Payments: 1, Net: 500}, Fee: 2, Payable: 498},
	}
}

func testSettleOnce(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	if _, _, err := s.OpenWindow(ctx, TestWindow); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CloseWindow(ctx, TestWindow.ID, TestWindow.CutOff); err != nil {
		t.Fatal(err)
	}
	want := sampleSettlements(TestWindow.ID)
	// A refused batch of settlements leaves the window CLOSED and empty.
	bad := sampleSettlements(TestWindow.ID)
	bad[1].Window = "2026-03-02"
	if _, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, bad); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("settle with a foreign row: %v", err)
	}
	// Two settlements of one merchant break the primary key half-way:
	// nothing of the attempt may remain.
	dup := append(sampleSettlements(TestWindow.ID), sampleSettlements(TestWindow.ID)[0])
	if _, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, dup); err == nil {
		t.Fatal("settle with a duplicate merchant succeeded")
	}
	if got, err := s.Settlements(ctx, TestWindow.ID); err != nil || len(got) != 0 {
		t.Fatalf("after failed settle: %+v, %v", got, err)
	}
	at := TestWindow.CutOff.Add(time.Hour)
	if ok, err := s.SettleWindow(ctx, TestWindow.ID, at, want); err != nil || !ok {
		t.Fatalf("SettleWindow = %v, %v", ok, err)
	}
	other := sampleSettlements(TestWindow.ID)
	other[0].Payable = 1
	if ok, err := s.SettleWindow(ctx, TestWindow.ID, at.Add(time.Hour), other); err != nil || ok {
		t.Fatalf("second SettleWindow = %v, %v; want false, nil", ok, err)
	}
	got, err := s.Settlements(ctx, TestWindow.ID)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Settlements =\n%+v, %v\nwant\n%+v", got, err, want)
	}
	one, err := s.Settlement(ctx, TestWindow.ID, "M2")
	if err != nil || !reflect.DeepEqual(one, want[1]) {
		t.Fatalf("Settlement(M2) = %+v, %v", one, err)
	}
	if _, err := s.Settlement(ctx, TestWindow.ID, "M9"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Settlement(M9): %v", err)
	}
	w, err := s.Window(ctx, TestWindow.ID)
	if err != nil || w.State != store.WindowSettled || !w.SettledAt.Equal(at) {
		t.Fatalf("window after settle = %+v, %v", w, err)
	}
}

func testSceneTotals(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	r := func(lsn uint64, at time.Time, merchant, scene, op string, amount int64) handoff.Txn {
		x := Row("gw-1", lsn, merchant, amount)
		x.At, x.Scene, x.Op = at, scene, op
		if amount < 0 {
			x.Orig = 1
		}
		return x
	}
	c := TestWindow.CutOff
	rows := []handoff.Txn{
		r(1, TestWindow.Start.Add(-time.Microsecond), "M1", handoff.SceneBus, handoff.OpPurchase, 7), // previous window
		r(2, TestWindow.Start, "M1", handoff.SceneBus, handoff.OpPurchase, 100),
		r(3, c.Add(-time.Microsecond), "M1", handoff.SceneStall, handoff.OpPurchase, 250),
		r(4, c.Add(-time.Hour), "M1", handoff.SceneStall, handoff.OpRefund, -50),
		r(5, c.Add(-time.Hour), "M2", handoff.SceneKiosk, handoff.OpCapture, 900),
		r(6, c.Add(-time.Hour), "M2", handoff.SceneKiosk, handoff.OpReversal, -900),
		r(7, c, "M1", handoff.SceneBus, handoff.OpPurchase, 11), // at the cut-off: next window
	}
	b := &handoff.Batch{ID: handoff.BatchID("gw-1", 1, 7), Source: "gw-1", FirstLSN: 1, LastLSN: 7, Watermark: c, Rows: rows}
	ingest(t, ctx, s, b)
	got, err := s.SceneTotals(ctx, TestWindow.Start, TestWindow.CutOff)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SceneTotals{
		{Merchant: "M1", Scene: handoff.SceneBus, Totals: store.Totals{Count: 1, Gross: 100, Payments: 1, Net: 100}},
		{Merchant: "M1", Scene: handoff.SceneStall, Totals: store.Totals{Count: 2, Gross: 250, Payments: 1, Refunds: -50, RefundCount: 1, Net: 200}},
		{Merchant: "M2", Scene: handoff.SceneKiosk, Totals: store.Totals{Count: 2, Gross: 900, Payments: 1, Reversals: -900, ReversalCount: 1, Net: 0}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SceneTotals =\n%+v\nwant\n%+v", got, want)
	}
	first, ok, err := s.FirstTxnAt(ctx)
	if err != nil || !ok || !first.Equal(rows[0].At) {
		t.Fatalf("FirstTxnAt = %v, %v, %v", first, ok, err)
	}
}

func testRatesMerchants(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	for _, r := range []store.FeeRate{{Merchant: "*", Scene: handoff.SceneBus, Rate: "0.002"}, {Merchant: "M1", Scene: handoff.SceneBus, Rate: "0.0038"}, {Merchant: "M1", Scene: handoff.SceneBus, Rate: "0.0035"}} {
		if err := s.PutFeeRate(ctx, r); err != nil {
			t.Fatalf("PutFeeRate(%+v): %v", r, err)
		}
	}
	for _, bad := range []store.FeeRate{{Merchant: "M1", Scene: handoff.SceneBus, Rate: "1"}, {Merchant: "M1", Scene: handoff.SceneBus, Rate: "-0.1"}, {Merchant: "M1", Scene: handoff.SceneBus, Rate: "abc"},
		{Merchant: "M1", Scene: "ferry", Rate: "0.1"}, {Merchant: "", Scene: handoff.SceneBus, Rate: "0.1"}} {
		if err := s.PutFeeRate(ctx, bad); !errors.Is(err, store.ErrBadQuery) {
			t.Fatalf("PutFeeRate(%+v) = %v, want ErrBadQuery", bad, err)
		}
	}
	rates, err := s.FeeRates(ctx)
	want := []store.FeeRate{{Merchant: "*", Scene: handoff.SceneBus, Rate: "0.002"}, {Merchant: "M1", Scene: handoff.SceneBus, Rate: "0.0035"}}
	if err != nil || !reflect.DeepEqual(rates, want) {
		t.Fatalf("FeeRates = %+v, %v", rates, err)
	}
	m := store.Merchant{ID: "M1", Name: "Stall 1", PayeeAccount: "6230-ACC-1", MarketOperator: "MKT", MarketFeeRate: "0.01"}
	if err := s.PutMerchant(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMerchant(ctx, store.Merchant{ID: "M2", Name: "Bus Co"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMerchant(ctx, store.Merchant{ID: "M3", Name: "x", MarketFeeRate: "2"}); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("bad market rate: %v", err)
	}
	got, err := s.Merchant(ctx, "M1")
	if err != nil || got != m {
		t.Fatalf("Merchant = %+v, %v", got, err)
	}
	all, err := s.Merchants(ctx)
	if err != nil || len(all) != 2 || all[1].MarketFeeRate != "0" {
		t.Fatalf("Merchants = %+v, %v", all, err)
	}
	if _, err := s.Merchant(ctx, "M9"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing merchant: %v", err)
	}
}

func testDifferences(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	at := TestWindow.CutOff.Add(2 * time.Hour)
	d := store.Difference{Window: TestWindow.ID, Merchant: "M1", Field: "net", Journal: 1000, Store: 990, SeenAt: at}
	if isNew, err := s.RecordDifference(ctx, d); err != nil || !isNew {
		t.Fatalf("RecordDifference = %v, %v", isNew, err)
	}
	d.Store, d.SeenAt = 980, at.Add(time.Hour)
	if isNew, err := s.RecordDifference(ctx, d); err != nil || isNew {
		t.Fatalf("second RecordDifference = %v, %v", isNew, err)
	}
	if _, err := s.RecordDifference(ctx, store.Difference{Window: "x", Merchant: "M1", Field: "net", SeenAt: at}); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("bad difference: %v", err)
	}
	got, err := s.Differences(ctx, TestWindow.ID)
	want := []store.Difference{{Window: TestWindow.ID, Merchant: "M1", Field: "net", Journal: 1000, Store: 980, FoundAt: at, SeenAt: at.Add(time.Hour)}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Differences = %+v, %v", got, err)
	}
	if all, err := s.Differences(ctx, ""); err != nil || len(all) != 1 {
		t.Fatalf("all Differences = %+v, %v", all, err)
	}
	if none, err := s.Differences(ctx, "2026-03-02"); err != nil || len(none) != 0 {
		t.Fatalf("other window's Differences = %+v, %v", none, err)
	}
}
