package storetest

// Contract cases for per-payment division legs (handoff.Txn.Legs):
// written with their rows, summed per merchant, kind and payee for a
// window (store.Clearing.Legs), and part of a row's content when a re-sent
// or re-cut batch meets it.

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

var legsCases = []struct {
	name string
	fn   func(t *testing.T, ctx context.Context, open Opener, s store.Store)
}{
	{"LegsSummedPerMerchantKindPayee", testLegsSum},
	{"LegsRecutAndConflicts", testLegsRecut},
	{"DebtRecoveryInTotals", testDebtRecoveryTotals},
	{"NegativeMarketFeeDivision", testNegativeMarketFee},
}

// legRows: a stall's QR payment (fee 31 to MKT-OP) and its partial refund
// (fee -10 back), a second payment to another operator, a hospital bill
// with insurance legs, and a stall row without legs.
func legRows() []handoff.Txn {
	qr := func(lsn uint64, amt int64, payee string, fee int64) handoff.Txn {
		r := Row("gw-1", lsn, "STALL-M", amt)
		r.Terminal, r.Scene = "STALL-1", handoff.SceneStall
		r.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: payee, Amount: fee}}
		return r
	}
	refund := qr(2, -500, "MKT-OP", -10)
	refund.Op, refund.Orig = handoff.OpRefund, 1
	hosp := Row("gw-1", 4, "HOSP", 300)
	hosp.Terminal, hosp.Scene = "K-1", handoff.SceneKiosk
	hosp.Legs = []handoff.Leg{{Kind: handoff.LegInsPersonal, Payee: "ins-pers", Amount: 700},
		{Kind: handoff.LegInsPooled, Payee: "ins-pool", Amount: 6000}}
	plain := Row("gw-1", 5, "STALL-M", 80)
	plain.Terminal, plain.Scene = "STALL-1", handoff.SceneStall
	return []handoff.Txn{qr(1, 1550, "MKT-OP", 31), refund, qr(3, 1000, "MKT-2", 20), hosp, plain}
}

func wantLegs(t *testing.T, ctx context.Context, s store.Store, w store.Window, want map[string][]store.Division) {
	t.Helper()
	got, err := s.Legs(ctx, w)
	if err != nil {
		t.Fatalf("Legs: %v", err)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Legs = %+v\nwant %+v", got, want)
	}
}

func testLegsSum(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	rows := legRows()
	// A row of the next day, with a leg: outside TestWindow.
	late := Row("gw-1", 6, "STALL-M", 400)
	late.At = TestWindow.CutOff
	late.Terminal, late.Scene = "STALL-1", handoff.SceneStall
	late.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-OP", Amount: 8}}
	b := MakeBatch("gw-1", 1, 6, append(rows, late)...)
	b.Watermark = late.At
	if res := ingest(t, ctx, s, b); res.Inserted != 6 {
		t.Fatalf("ingest = %+v, want 6 inserted", res)
	}
	want := map[string][]store.Division{
		"HOSP": {{Kind: store.DivisionInsurancePersonal, Payee: "ins-pers", Amount: 700},
			{Kind: store.DivisionInsurancePooled, Payee: "ins-pool", Amount: 6000}},
		"STALL-M": {{Kind: store.DivisionMarketFee, Payee: "MKT-2", Amount: 20},
			{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: 21}},
	}
	wantLegs(t, ctx, s, TestWindow, want)
	next := store.Window{ID: "2026-03-02", Start: TestWindow.CutOff, CutOff: TestWindow.CutOff.Add(24 * time.Hour)}
	wantLegs(t, ctx, s, next, map[string][]store.Division{
		"STALL-M": {{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: 8}}})
	// The same batch again changes nothing: legs are not counted twice.
	if res := ingest(t, ctx, s, b); !res.Duplicate {
		t.Fatalf("re-ingest = %+v, want duplicate", res)
	}
	wantLegs(t, ctx, s, TestWindow, want)
	// The same id with other legs is a conflict (the batch digest covers them).
	bad := MakeBatch("gw-1", 1, 6, append(legRows(), late)...)
	bad.Watermark = late.At
	bad.Rows[0].Legs[0].Amount = 30
	wantCode(t, func() error { _, err := s.Ingest(ctx, bad); return err }(), store.ErrConflict)
	bad.Rows[0].Legs = nil
	wantCode(t, func() error { _, err := s.Ingest(ctx, bad); return err }(), store.ErrConflict)
	wantLegs(t, ctx, s, TestWindow, want)
	// A window that is not one is refused.
	if _, err := s.Legs(ctx, store.Window{ID: "2026-03-01", Start: TestWindow.CutOff, CutOff: TestWindow.Start}); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("Legs of an inverted window: %v, want ErrBadQuery", err)
	}
	// An empty window has no legs.
	wantLegs(t, ctx, s, store.Window{ID: "2026-02-01", Start: Day.AddDate(0, -1, 0), CutOff: Day.AddDate(0, -1, 1)}, nil)
}

func testLegsRecut(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	rows := legRows()
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 3, rows[:3]...))
	// Re-cut [2, 5]: rows 2 and 3 are stored with the same legs; 4 and 5
	// are new, and row 4's insurance legs are written with it.
	res := ingest(t, ctx, s, MakeBatch("gw-1", 2, 5, rows[1:]...))
	if res.Inserted != 2 || res.Skipped != 2 {
		t.Fatalf("re-cut = %+v, want 2 inserted, 2 skipped", res)
	}
	want := map[string][]store.Division{
		"HOSP": {{Kind: store.DivisionInsurancePersonal, Payee: "ins-pers", Amount: 700},
			{Kind: store.DivisionInsurancePooled, Payee: "ins-pool", Amount: 6000}},
		"STALL-M": {{Kind: store.DivisionMarketFee, Payee: "MKT-2", Amount: 20},
			{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: 21}},
	}
	wantLegs(t, ctx, s, TestWindow, want)
	// Legs in another order are the same legs.
	swapped := legRows()
	swapped[3].Legs[0], swapped[3].Legs[1] = swapped[3].Legs[1], swapped[3].Legs[0]
	if res := ingest(t, ctx, s, MakeBatch("gw-1", 4, 5, swapped[3:]...)); res.Skipped != 2 {
		t.Fatalf("re-cut with legs reordered = %+v, want 2 skipped", res)
	}
	// A stored row met with other legs: another amount, another payee, a
	// missing leg, an extra leg. Each is refused and changes nothing.
	for name, edit := range map[string]func(r []handoff.Txn){
		"amount":  func(r []handoff.Txn) { r[1].Legs[0].Amount = -11 },
		"payee":   func(r []handoff.Txn) { r[2].Legs[0].Payee = "MKT-OP" },
		"missing": func(r []handoff.Txn) { r[3].Legs = r[3].Legs[:1] },
		"extra": func(r []handoff.Txn) {
			r[4].Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-OP", Amount: 1}}
		},
		"row added": func(r []handoff.Txn) {},
	} {
		rc := legRows()
		edit(rc)
		next := Row("gw-1", 6, "STALL-M", 50)
		next.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-OP", Amount: 5}}
		b := MakeBatch("gw-1", 2, 6, append(rc[1:], next)...)
		_, err := s.Ingest(ctx, b)
		if name == "row added" {
			if err != nil {
				t.Fatalf("re-cut with only a new row: %v", err)
			}
			continue
		}
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("re-cut with other legs (%s): %v, want ErrConflict", name, err)
		}
	}
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 6 {
		t.Fatalf("HighWater = %d, want 6", hw)
	}
	want["STALL-M"][1].Amount = 26
	wantLegs(t, ctx, s, TestWindow, want)
}

func testDebtRecoveryTotals(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	debt := Row("gw-1", 2, "BUS-CO", 250)
	debt.Op, debt.Terminal = handoff.OpDebtRecovery, "operator"
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 2, Row("gw-1", 1, "BUS-CO", 200), debt))
	got, err := s.Totals(ctx, "BUS-CO", time.Time{}, time.Time{})
	if err != nil || got.Count != 2 || got.Gross != 450 || got.Payments != 2 || got.Net != 450 {
		t.Fatalf("Totals = %+v, %v; want 2 rows, gross and net 450", got, err)
	}
	st, err := s.SceneTotals(ctx, TestWindow.Start, TestWindow.CutOff)
	if err != nil || len(st) != 1 || st[0].Net != 450 || st[0].Payments != 2 {
		t.Fatalf("SceneTotals = %+v, %v; want one bus line of net 450", st, err)
	}
}

// A market fee from legs is negative in a window whose refunds gave back
// more than its payments took; the store keeps it. Other divisions stay
// non-negative.
func testNegativeMarketFee(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	if _, _, err := s.OpenWindow(ctx, TestWindow); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CloseWindow(ctx, TestWindow.ID, TestWindow.CutOff); err != nil {
		t.Fatal(err)
	}
	bad := []store.Settlement{{Window: TestWindow.ID, Merchant: "HOSP",
		Divisions: []store.Division{{Kind: store.DivisionInsurancePooled, Payee: "ins-pool", Amount: -1}}}}
	if _, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, bad); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("negative insurance division: %v, want ErrBadQuery", err)
	}
	ss := []store.Settlement{{Window: TestWindow.ID, Merchant: "STALL-M", Totals: store.Totals{Count: 1, Refunds: -500, RefundCount: 1, Net: -500},
		Payable: -490, Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: -10}}}}
	if ok, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, ss); err != nil || !ok {
		t.Fatalf("SettleWindow = %v, %v", ok, err)
	}
	got, err := s.Settlement(ctx, TestWindow.ID, "STALL-M")
	if err != nil || !reflect.DeepEqual(got.Divisions, ss[0].Divisions) || got.Payable != -490 {
		t.Fatalf("Settlement = %+v, %v", got, err)
	}
}
