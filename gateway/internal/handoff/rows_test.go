package handoff

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/scene/transit"
	settle "scenepay/settlement/handoff"
	"scenepay/terminals"
)

func TestRowOf(t *testing.T) {
	scene := func(tid string) (string, bool) { return settle.SceneBus, tid == "T1" }
	at := time.Date(2026, 5, 1, 8, 0, 0, 123456789, time.UTC).UnixNano()
	base := core.Record{Code: terminals.CodeApproved, Shard: 3, Seq: 42, Time: at, Account: "county:C1",
		TID: "T1", Txn: 9, Merchant: "M", Amount: 250}
	with := func(f func(r *core.Record)) core.Record { r := base; f(&r); return r }
	legs := func(stall, operator int64) core.MarketAmounts {
		return core.MarketAmounts{Class: 2, Stall: stall, Operator: operator, OpMerch: "MKT-OP"}
	}
	cases := []struct {
		name   string
		r      core.Record
		op     string
		amt    int64
		orig   uint64
		row    bool
		errors bool
	}{
		{"purchase", with(func(r *core.Record) { r.Op = core.OpPurchase }), settle.OpPurchase, 250, 0, true, false},
		{"reversal", with(func(r *core.Record) { r.Op = core.OpReversal; r.Orig = 8 }), settle.OpReversal, -250, 8, true, false},
		{"refund", with(func(r *core.Record) { r.Op = core.OpRefund; r.Orig = 7; r.Market = legs(245, 5) }), settle.OpRefund, -250, 7, true, false},
		{"qr pay with operator leg", with(func(r *core.Record) { r.Op = core.OpQRPay; r.Market = legs(245, 5) }), settle.OpPurchase, 250, 0, true, false},
		{"qr pay without operator leg", with(func(r *core.Record) { r.Op = core.OpQRPay; r.Market = legs(250, 0) }), settle.OpPurchase, 250, 0, true, false},
		{"declined qr pay", with(func(r *core.Record) { r.Op = core.OpQRPay; r.Code = terminals.CodePayCodeReused }), "", 0, 0, false, false},
		{"declined refund", with(func(r *core.Record) { r.Op = core.OpRefund; r.Orig = 7; r.Code = terminals.CodeRefundExceeds }), "", 0, 0, false, false},
		{"qr pay legs short", with(func(r *core.Record) { r.Op = core.OpQRPay; r.Market = legs(240, 5) }), "", 0, 0, false, true},
		{"qr pay legs over", with(func(r *core.Record) { r.Op = core.OpQRPay; r.Market = legs(300, -50) }), "", 0, 0, false, true},
		{"refund leg over amount", with(func(r *core.Record) { r.Op = core.OpRefund; r.Orig = 7; r.Market = legs(251, -1) }), "", 0, 0, false, true},
		{"operator leg without payee", with(func(r *core.Record) {
			r.Op = core.OpQRPay
			r.Market = legs(245, 5)
			r.Market.OpMerch = ""
		}), "", 0, 0, false, true},
		{"capture", with(func(r *core.Record) { r.Op = core.OpCapture; r.Orig = 6 }), settle.OpCapture, 250, 6, true, false},
		{"declined purchase", with(func(r *core.Record) { r.Op = core.OpPurchase; r.Code = terminals.CodeInsufficientFunds }), "", 0, 0, false, false},
		{"hold", with(func(r *core.Record) { r.Op = core.OpHold }), "", 0, 0, false, false},
		{"top-up", with(func(r *core.Record) { r.Op = core.OpTopUp }), "", 0, 0, false, false},
		{"concession profile", with(func(r *core.Record) { r.Op = core.OpSetProfile; r.Amount = 0 }), "", 0, 0, false, false},
		{"flat tap", with(func(r *core.Record) { r.Op = core.OpTapIn; r.Tap = core.TapAmounts{Charge: 200} }), settle.OpPurchase, 200, 0, true, false},
		{"hold-only tap", with(func(r *core.Record) { r.Op = core.OpTapIn; r.Tap = core.TapAmounts{Hold: 500} }), "", 0, 0, false, false},
		{"tap-out", with(func(r *core.Record) { r.Op = core.OpTapOut; r.Tap = core.TapAmounts{Capture: 300, Release: 200} }), settle.OpCapture, 300, 0, true, false},
		{"journey closed by the sweep", with(func(r *core.Record) {
			r.Op = core.OpJourneyExpire
			r.Tap = core.TapAmounts{Capture: 600, Reason: 2}
		}), settle.OpCapture, 600, 0, true, false},
		{"unknown terminal", with(func(r *core.Record) { r.Op = core.OpPurchase; r.TID = "T9" }), "", 0, 0, false, true},
		{"unmapped op", with(func(r *core.Record) { r.Op = core.Op(99) }), "", 0, 0, false, true},
	}
	for _, c := range cases {
		row, ok, err := rowOf("gw1", 5, &c.r, scene, testPayees)
		if (err != nil) != c.errors || ok != c.row {
			t.Errorf("%s: ok %v err %v; want row %v error %v", c.name, ok, err, c.row, c.errors)
			continue
		}
		if !ok {
			continue
		}
		if row.Op != c.op || row.Amount != c.amt || row.Orig != c.orig || row.Auth != "03-0000000042" || row.Merchant != "M" ||
			row.InstKind != "county" || row.Account != "C1" || row.Scene != settle.SceneBus || row.At.Nanosecond()%1000 != 0 {
			t.Errorf("%s: row %+v", c.name, row)
		}
	}
}

// A hospital order captured across two holds is one journal entry with two
// core records: settlement gets one row (keyed by the entry's LSN) with the sum.
func TestEntryRowMergesRecordsOfOneEntry(t *testing.T) {
	scene := func(string) (string, bool) { return settle.SceneKiosk, true }
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano()
	mk := func(amt int64, orig uint64) []byte {
		r := core.Record{Version: core.RecordVersion, Op: core.OpCapture, Code: terminals.CodeApproved, Shard: 1, Seq: 7, Time: at,
			Account: "county:P1", TID: "K1", Txn: 30, Orig: orig, Merchant: "HOSP", Amount: amt}
		return r.AppendBinary(nil)
	}
	two := func(_ []byte, fn func(string, []byte) error) error {
		if err := fn("K1", mk(300, 10)); err != nil {
			return err
		}
		return fn("K1", mk(50, 11))
	}
	var rec core.Record
	row, n, when, err := entryRow("gw1", 77, nil, two, scene, &rec, nil)
	if err != nil || n != 2 || row.Amount != 350 || row.LSN != 77 || row.Op != settle.OpCapture || when.IsZero() {
		t.Fatalf("row %+v n %d at %v err %v; want one capture row of 350 at LSN 77", row, n, when, err)
	}
	none := func([]byte, func(string, []byte) error) error { return nil }
	if _, n, when, err := entryRow("gw1", 78, nil, none, scene, &rec, nil); err != nil || n != 0 || !when.IsZero() {
		t.Fatalf("entry without records: n %d at %v err %v", n, when, err)
	}
}

// A journaled market record (version 3) reaches settlement as one row of
// the stall merchant: the payment +Amount, a partial refund -Amount with
// the payment's txn id as Orig.
func TestEntryRowMarketRecords(t *testing.T) {
	scene := func(tid string) (string, bool) { return settle.SceneStall, tid == "STALL-1" }
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano()
	mk := func(op core.Op, amt int64, txn, orig uint64, stall, operator int64) []byte {
		r := core.Record{Version: core.RecordVersionMarket, Op: op, Code: terminals.CodeApproved, Shard: 2, Seq: txn, Time: at,
			Account: "county:C-1", TID: "STALL-1", Txn: txn, Orig: orig, Merchant: "STALL-M", Amount: amt,
			Market: core.MarketAmounts{Class: 2, PaidAt: at, Stall: stall, Operator: operator, OpMerch: "MKT-OP"}}
		return r.AppendBinary(nil)
	}
	var rec core.Record
	for _, c := range []struct {
		name string
		raw  []byte
		op   string
		amt  int64
		orig uint64
	}{
		{"qr pay", mk(core.OpQRPay, 1550, 9001, 0, 1519, 31), settle.OpPurchase, 1550, 0},
		{"partial refund", mk(core.OpRefund, 500, 9002, 9001, 490, 10), settle.OpRefund, -500, 9001},
	} {
		one := func(_ []byte, fn func(string, []byte) error) error { return fn("STALL-1", c.raw) }
		row, n, _, err := entryRow("gw1", 90, nil, one, scene, &rec, nil)
		if err != nil || n != 1 {
			t.Fatalf("%s: n %d err %v", c.name, n, err)
		}
		if row.Op != c.op || row.Amount != c.amt || row.Orig != c.orig || row.Merchant != "STALL-M" ||
			row.Scene != settle.SceneStall || row.Account != "C-1" || row.LSN != 90 {
			t.Errorf("%s: row %+v", c.name, row)
		}
	}
}

var testPayees = func() Payees { return Payees{InsPooled: "ins-pool", InsPersonal: "ins-pers", Debt: "BUS-CO"} }

// The division legs of each mapping: a QR payment's market fee leg to the
// operator, a refund's negative leg, none when the operator's leg is 0; a
// top-up that paid transit debt becomes a debt_recovery row for the debt
// payee, with the fixed operator terminal when it came from no terminal.
func TestRowOfLegsAndDebt(t *testing.T) {
	scene := func(tid string) (string, bool) { return settle.SceneStall, tid == "T1" }
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano()
	base := core.Record{Code: terminals.CodeApproved, Shard: 3, Seq: 42, Time: at, Account: "county:C1",
		TID: "T1", Txn: 9, Merchant: "STALL-M", Amount: 250,
		Market: core.MarketAmounts{Class: 2, Stall: 245, Operator: 5, OpMerch: "MKT-OP"}}
	with := func(f func(r *core.Record)) core.Record { r := base; f(&r); return r }
	cases := []struct {
		name string
		r    core.Record
		want []settle.Leg
	}{
		{"qr pay", with(func(r *core.Record) { r.Op = core.OpQRPay }), []settle.Leg{{Kind: settle.LegMarketFee, Payee: "MKT-OP", Amount: 5}}},
		{"refund", with(func(r *core.Record) { r.Op = core.OpRefund; r.Orig = 7 }), []settle.Leg{{Kind: settle.LegMarketFee, Payee: "MKT-OP", Amount: -5}}},
		{"qr pay without operator leg", with(func(r *core.Record) {
			r.Op = core.OpQRPay
			r.Market = core.MarketAmounts{Class: 2, Stall: 250}
		}), nil},
		{"purchase", with(func(r *core.Record) { r.Op = core.OpPurchase; r.Market = core.MarketAmounts{} }), nil},
	}
	for _, c := range cases {
		row, ok, err := rowOf("gw1", 5, &c.r, scene, testPayees)
		if err != nil || !ok || !reflect.DeepEqual(row.Legs, c.want) {
			t.Errorf("%s: legs %+v ok %v err %v; want %+v", c.name, row.Legs, ok, err, c.want)
		}
	}
	// An operator's top-up (no terminal, no txn id) that paid 120 fen of debt.
	topUp := core.Record{Op: core.OpTopUp, Code: terminals.CodeApproved, Shard: 1, Seq: 3, Time: at, Account: "county:C9",
		Amount: 1000, Orig: 120}
	row, ok, err := rowOf("gw1", 77, &topUp, scene, testPayees)
	want := settle.Txn{Source: "gw1", LSN: 77, At: time.Unix(0, at).UTC(), Merchant: "BUS-CO", Terminal: OperatorTerminal,
		Scene: settle.SceneBus, Op: settle.OpDebtRecovery, InstKind: "county", Account: "C9", Amount: 120,
		Auth: "01-0000000003", Txn: 77}
	if err != nil || !ok || !reflect.DeepEqual(row, want) {
		t.Fatalf("debt recovery row %+v ok %v err %v;\nwant %+v", row, ok, err, want)
	}
	// Deterministic: the same record maps to the same row again.
	if again, _, _ := rowOf("gw1", 77, &topUp, scene, testPayees); !reflect.DeepEqual(again, row) {
		t.Fatalf("re-mapped row differs: %+v", again)
	}
	// No payee configured: the handoff stops rather than drop the money.
	if _, _, err := rowOf("gw1", 77, &topUp, scene, nil); err == nil {
		t.Fatal("a top-up that paid debt with no debt payee made no error")
	}
	topUp.Orig = 0
	if _, ok, err := rowOf("gw1", 77, &topUp, scene, testPayees); ok || err != nil {
		t.Fatalf("top-up without debt: ok %v err %v; want no row", ok, err)
	}
}

// A hospital purchase whose entry carries an insurance split: the
// self-pay row with ins_pooled and ins_personal legs to the configured
// payers; a zero part gives no leg; no split, no legs.
func TestEntryRowInsuranceLegs(t *testing.T) {
	scene := func(string) (string, bool) { return settle.SceneKiosk, true }
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano()
	raw := (&core.Record{Version: core.RecordVersion, Op: core.OpPurchase, Code: terminals.CodeApproved, Shard: 1, Seq: 7, Time: at,
		Account: "bank:tok-1", TID: "K1", Txn: 30, Merchant: "HOSP", Amount: 300}).AppendBinary(nil)
	one := func(_ []byte, fn func(string, []byte) error) error { return fn("K1", raw) }
	for _, c := range []struct {
		name             string
		pooled, personal int64
		split            bool
		want             []settle.Leg
	}{
		{"split", 6000, 700, true, []settle.Leg{{Kind: settle.LegInsPooled, Payee: "ins-pool", Amount: 6000},
			{Kind: settle.LegInsPersonal, Payee: "ins-pers", Amount: 700}}},
		{"personal only", 0, 700, true, []settle.Leg{{Kind: settle.LegInsPersonal, Payee: "ins-pers", Amount: 700}}},
		{"no split", 0, 0, false, nil},
	} {
		x := &Extras{Payees: testPayees, Split: func([]byte) (int64, int64, bool, error) { return c.pooled, c.personal, c.split, nil }}
		var rec core.Record
		row, ok, _, err := EntryRow("gw1", 40, nil, one, scene, &rec, x)
		if err != nil || !ok || row.Amount != 300 || !reflect.DeepEqual(row.Legs, c.want) {
			t.Errorf("%s: row %+v ok %v err %v; want legs %+v", c.name, row, ok, err, c.want)
		}
	}
	// A split but no payees: refused, not settled without them.
	x := &Extras{Split: func([]byte) (int64, int64, bool, error) { return 1, 1, true, nil }}
	var rec core.Record
	if _, _, _, err := EntryRow("gw1", 40, nil, one, scene, &rec, x); err == nil {
		t.Fatal("insurance split without payers made no error")
	}
}

// A card boards company A's bus (reader TA), never taps out, and hours
// later, before the sweep reached the journey, taps in on company B's flat
// bus (reader TB). The gateway journals the old journey's expiry as its own
// entry ahead of the tap's (core.Shard.ExpireBeforeTap): settlement pays
// A's merchant the maximum fare and B's merchant only B's fare. Had the
// tap's record closed the journey (the lazy path), its one row would pay
// both to B.
func TestRowsExpiredJourneyBeforeAnotherCompanysTap(t *testing.T) {
	scene := func(tid string) (string, bool) { return settle.SceneBus, tid == "TA" || tid == "TB" }
	board := time.Date(2026, 3, 10, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	later := board.Add(6 * time.Hour)
	s := core.NewShard(1, nil)
	var out core.Output
	var entries [][]byte // one per journal entry, in journal order
	step := func(at time.Time, in core.Input) {
		t.Helper()
		if s.ExpireBeforeTap(at, &in, &out) {
			entries = append(entries, bytes.Clone(out.Record))
		}
		s.Step(at, &in, &out)
		if out.Code != terminals.CodeApproved {
			t.Fatalf("%s: %s", in.Op, out.Code)
		}
		entries = append(entries, bytes.Clone(out.Record))
	}
	step(board, core.Input{Op: core.OpOpenAccount, Account: "county:C1", Amount: 5000})
	step(board, core.Input{Op: core.OpTapIn, Account: "county:C1", TID: "TA", Txn: 1, Merchant: "BUS-A", Route: "D1", Stop: "S1"})
	step(later, core.Input{Op: core.OpTapIn, Account: "county:C1", TID: "TB", Txn: 1, Merchant: "BUS-B", Route: "B1"})
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4 (open, A's tap-in, the expiry, B's tap-in)", len(entries))
	}
	var rows []settle.Txn
	var rec core.Record
	for i, raw := range entries {
		one := func(_ []byte, fn func(string, []byte) error) error { return fn("", raw) }
		row, ok, _, err := EntryRow("gw1", uint64(i+1), nil, one, scene, &rec, nil)
		if err != nil {
			t.Fatalf("entry %d: %v", i+1, err)
		}
		if ok {
			rows = append(rows, row)
		}
	}
	want := []struct {
		lsn            uint64
		merchant, term string
		op             string
		amt            int64
	}{
		{3, "BUS-A", "TA", settle.OpCapture, 600},  // the maximum fare, to the company the card boarded with
		{4, "BUS-B", "TB", settle.OpPurchase, 200}, // B's flat fare only
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	paid := map[string]int64{}
	for i, w := range want {
		r := rows[i]
		if r.LSN != w.lsn || r.Merchant != w.merchant || r.Terminal != w.term || r.Op != w.op || r.Amount != w.amt || r.Account != "C1" {
			t.Errorf("row %d: %+v; want lsn %d %s/%s %s %d", i, r, w.lsn, w.term, w.merchant, w.op, w.amt)
		}
		paid[r.Merchant] += r.Amount
	}
	if paid["BUS-A"] != 600 || paid["BUS-B"] != 200 {
		t.Fatalf("paid %v, want BUS-A 600 BUS-B 200", paid)
	}
	// The same records map to the same rows again (a re-cut batch).
	for i, raw := range entries[2:] {
		one := func(_ []byte, fn func(string, []byte) error) error { return fn("", raw) }
		again, _, _, err := EntryRow("gw1", uint64(i+3), nil, one, scene, &rec, nil)
		if err != nil || !reflect.DeepEqual(again, rows[i]) {
			t.Fatalf("re-mapped row %d: %+v %v; want %+v", i, again, err, rows[i])
		}
	}
}

// The two taps that end a journey still within its maximum journey time
// as incomplete (the maximum fare stands): a) C1 boards company A's bus
// (reader TA) on D1 and, without tapping out, boards company B's bus (TB)
// on D1 half an hour later; b) C2 boards A's bus on D1 and taps out on B's
// bus on another distance route, D2. The gateway journals the old
// journey's close as its own entry ahead of the tap's
// (core.Shard.ExpireBeforeTap): settlement pays A the maximum fare of each
// journey A's bus carried, and B only B's own fare. Had the taps' records
// closed the journeys, their rows would have paid both maximum fares to B.
func TestRowsOpenJourneyEndedByAnotherCompanysTap(t *testing.T) {
	scene := func(tid string) (string, bool) { return settle.SceneBus, tid == "TA" || tid == "TB" }
	board := time.Date(2026, 3, 10, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	fares := core.DefaultTransit().Config()
	d2 := fares.Routes[slices.IndexFunc(fares.Routes, func(r transit.Route) bool { return r.ID == "D1" })]
	d2.ID = "D2"
	fares.Routes = append(slices.Clone(fares.Routes), d2)
	pol, err := transit.New(fares)
	if err != nil {
		t.Fatal(err)
	}
	s := core.NewShard(1, &core.Config{Transit: pol})
	var out core.Output
	var entries [][]byte // one per journal entry, in journal order
	step := func(at time.Time, in core.Input) {
		t.Helper()
		if s.ExpireBeforeTap(at, &in, &out) {
			entries = append(entries, bytes.Clone(out.Record))
		}
		s.Step(at, &in, &out)
		if out.Code != terminals.CodeApproved {
			t.Fatalf("%s: %s", in.Op, out.Code)
		}
		entries = append(entries, bytes.Clone(out.Record))
	}
	step(board, core.Input{Op: core.OpOpenAccount, Account: "county:C1", Amount: 5000})
	step(board, core.Input{Op: core.OpOpenAccount, Account: "county:C2", Amount: 5000})
	step(board, core.Input{Op: core.OpTapIn, Account: "county:C1", TID: "TA", Txn: 1, Merchant: "BUS-A", Route: "D1", Stop: "S1"})
	step(board, core.Input{Op: core.OpTapIn, Account: "county:C2", TID: "TA", Txn: 2, Merchant: "BUS-A", Route: "D1", Stop: "S1"})
	step(board.Add(30*time.Minute), core.Input{Op: core.OpTapIn, Account: "county:C1", TID: "TB", Txn: 1, Merchant: "BUS-B", Route: "D1", Stop: "S2"})
	step(board.Add(40*time.Minute), core.Input{Op: core.OpTapOut, Account: "county:C2", TID: "TB", Txn: 2, Merchant: "BUS-B", Route: "D2", Stop: "S3"})
	step(board.Add(50*time.Minute), core.Input{Op: core.OpTapOut, Account: "county:C1", TID: "TB", Txn: 3, Merchant: "BUS-B", Route: "D1", Stop: "S3"})
	if len(entries) != 9 {
		t.Fatalf("%d entries, want 9 (2 opens, 2 tap-ins on A, a close and B's tap-in, a close and B's tap-out, B's tap-out)", len(entries))
	}
	var rows []settle.Txn
	var rec core.Record
	for i, raw := range entries {
		one := func(_ []byte, fn func(string, []byte) error) error { return fn("", raw) }
		row, ok, _, err := EntryRow("gw1", uint64(i+1), nil, one, scene, &rec, nil)
		if err != nil {
			t.Fatalf("entry %d: %v", i+1, err)
		}
		if ok && row.Amount != 0 {
			rows = append(rows, row)
		}
	}
	want := []struct {
		lsn            uint64
		account        string
		merchant, term string
		op             string
		amt            int64
	}{
		{5, "C1", "BUS-A", "TA", settle.OpCapture, 600}, // a): C1's journey on A's bus, closed before B's tap-in (entry 6, a hold)
		{7, "C2", "BUS-A", "TA", settle.OpCapture, 600}, // b): C2's journey on A's bus, closed before B's tap-out (entry 8, nothing)
		{9, "C1", "BUS-B", "TB", settle.OpCapture, 300}, // C1's journey on B's bus, 2 zones, ended normally
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows with money, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.LSN != w.lsn || r.Account != w.account || r.Merchant != w.merchant || r.Terminal != w.term || r.Op != w.op || r.Amount != w.amt {
			t.Errorf("row %d: %+v; want lsn %d %s %s/%s %s %d", i, r, w.lsn, w.account, w.term, w.merchant, w.op, w.amt)
		}
	}
}
