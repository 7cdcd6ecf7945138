package handoff

import (
	"reflect"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	settle "scenepay/settlement/handoff"
	"scenepay/terminals"
)

// TestEntryRowSyncs: an e-CNY offline payment is an Unsynced purchase row;
// every approved online operation of a wallet is its sync, shown by the
// row (an online purchase at a stall or kiosk) or else sent as a Sync.
func TestEntryRowSyncs(t *testing.T) {
	scenes := map[string]string{"STALL-1": settle.SceneStall, "BUS-1": settle.SceneBus}
	scene := func(tid string) (string, bool) { s, ok := scenes[tid]; return s, ok }
	at := time.Date(2026, 5, 1, 8, 0, 0, 123456789, time.UTC)
	atMicro := at.Truncate(time.Microsecond)
	base := core.Record{Version: core.RecordVersion, Code: terminals.CodeApproved, Shard: 2, Seq: 7, Time: at.UnixNano(),
		Account: "ecny:w-1", TID: "STALL-1", Txn: 9, Merchant: "M", Amount: 1500}
	with := func(f func(r *core.Record)) core.Record { r := base; f(&r); return r }
	sync := []settle.Sync{{Account: "w-1", At: atMicro, LSN: 40}}
	cases := []struct {
		name     string
		r        core.Record
		row      string // "" no row, else the row's op
		unsynced bool
		rowSyncs bool
		syncs    []settle.Sync
		errors   bool
	}{
		{"offline payment", with(func(r *core.Record) { r.Op = core.OpECNYOffline; r.Unsynced = true; r.Orig = 1 }),
			settle.OpPurchase, true, false, nil, false},
		{"online stall purchase", with(func(r *core.Record) { r.Op = core.OpPurchase }), settle.OpPurchase, false, true, nil, false},
		{"QR payment", with(func(r *core.Record) {
			r.Op = core.OpQRPay
			r.Market = core.MarketAmounts{Class: 2, Stall: 1500}
		}), settle.OpPurchase, false, true, nil, false},
		{"purchase at a bus terminal", with(func(r *core.Record) { r.Op = core.OpPurchase; r.TID = "BUS-1" }),
			settle.OpPurchase, false, false, sync, false},
		{"top-up", with(func(r *core.Record) { r.Op = core.OpTopUp; r.TID = "" }), "", false, false, sync, false},
		{"hold", with(func(r *core.Record) { r.Op = core.OpHold }), "", false, false, sync, false},
		{"flat tap", with(func(r *core.Record) { r.Op = core.OpTapIn; r.TID = "BUS-1"; r.Tap = core.TapAmounts{Charge: 200} }),
			settle.OpPurchase, false, false, sync, false},
		{"tap-out", with(func(r *core.Record) { r.Op = core.OpTapOut; r.TID = "BUS-1"; r.Tap = core.TapAmounts{Capture: 300} }),
			settle.OpCapture, false, false, sync, false},
		{"offline tap upload", with(func(r *core.Record) {
			r.Op = core.OpTapUpload
			r.TID = "BUS-1"
			r.Tap = core.TapAmounts{Charge: 200}
		}), settle.OpPurchase, false, false, nil, false},
		{"tap upload from a stall", with(func(r *core.Record) { r.Op = core.OpTapUpload; r.Tap = core.TapAmounts{Charge: 200} }),
			"", false, false, nil, true},
		{"capture", with(func(r *core.Record) { r.Op = core.OpCapture; r.Orig = 3 }), settle.OpCapture, false, false, nil, false},
		{"refund", with(func(r *core.Record) { r.Op = core.OpRefund; r.Orig = 3; r.Market = core.MarketAmounts{Stall: 1500} }),
			settle.OpRefund, false, false, nil, false},
		{"declined purchase", with(func(r *core.Record) { r.Op = core.OpPurchase; r.Code = terminals.CodeInsufficientFunds }),
			"", false, false, nil, false},
		{"county purchase at a bus terminal", with(func(r *core.Record) { r.Op = core.OpPurchase; r.TID = "BUS-1"; r.Account = "county:C1" }),
			settle.OpPurchase, false, false, nil, false},
	}
	for _, c := range cases {
		switch c.r.Op {
		case core.OpTapIn, core.OpTapOut, core.OpTapUpload:
			c.r.Version = core.RecordVersionTap
		case core.OpQRPay, core.OpRefund:
			c.r.Version = core.RecordVersionMarket
		}
		raw := c.r.AppendBinary(nil)
		one := func(_ []byte, fn func(string, []byte) error) error { return fn(c.r.TID, raw) }
		var rec core.Record
		var syncs []settle.Sync
		row, n, _, err := entryRowSyncs("gw1", 40, nil, one, scene, &rec, nil, &syncs)
		if (err != nil) != c.errors {
			t.Errorf("%s: err %v, want error %t", c.name, err, c.errors)
			continue
		}
		if c.errors {
			continue
		}
		if (n > 0) != (c.row != "") || n > 0 && (row.Op != c.row || row.Unsynced != c.unsynced || row.SyncsWallet() != c.rowSyncs) {
			t.Errorf("%s: row %+v (rows %d); want op %q unsynced %t syncs by itself %t", c.name, row, n, c.row, c.unsynced, c.rowSyncs)
		}
		if !reflect.DeepEqual(syncs, c.syncs) {
			t.Errorf("%s: syncs %+v, want %+v", c.name, syncs, c.syncs)
		}
	}
}

// An entry with several records of the same wallet gives one Sync; syncs
// of several wallets are ordered by account.
func TestEntrySyncsOnePerWallet(t *testing.T) {
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	mk := func(acct string, txn uint64) []byte {
		r := core.Record{Version: core.RecordVersion, Op: core.OpHold, Code: terminals.CodeApproved, Shard: 1, Seq: txn, Time: at.UnixNano(),
			Account: acct, TID: "K1", Txn: txn, Merchant: "HOSP", Amount: 100}
		return r.AppendBinary(nil)
	}
	entry := func(_ []byte, fn func(string, []byte) error) error {
		for i, a := range []string{"ecny:w-9", "ecny:w-2", "ecny:w-9", "county:C1"} {
			if err := fn("K1", mk(a, uint64(i+1))); err != nil {
				return err
			}
		}
		return nil
	}
	var rec core.Record
	var syncs []settle.Sync
	scene := func(string) (string, bool) { return settle.SceneKiosk, true }
	if _, n, _, err := entryRowSyncs("gw1", 8, nil, entry, scene, &rec, nil, &syncs); err != nil || n != 0 {
		t.Fatalf("rows %d err %v", n, err)
	}
	want := []settle.Sync{{Account: "w-2", At: at, LSN: 8}, {Account: "w-9", At: at, LSN: 8}}
	if !reflect.DeepEqual(syncs, want) {
		t.Fatalf("syncs %+v, want %+v", syncs, want)
	}
}

// TestSyncOpsMatchCore: syncsOnline names exactly the ops after which the
// core resets a wallet's offline count, for the ops a test can step here.
func TestSyncOpsMatchCore(t *testing.T) {
	const w = "ecny:W1"
	now := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	s := core.NewShard(1, &core.Config{})
	var out core.Output
	step := func(in core.Input) {
		t.Helper()
		s.Step(now, &in, &out)
		if out.Code != terminals.CodeApproved {
			t.Fatalf("%v: %s", in.Op, out.Code)
		}
	}
	step(core.Input{Op: core.OpOpenAccount, Account: w, Amount: 100_000, Class: 2, Ref: "open"})
	txn := uint64(100)
	offline := func() {
		txn++
		step(core.Input{Op: core.OpECNYOffline, Account: w, Amount: 100, TID: "S1", Txn: txn, Merchant: "M"})
	}
	cases := []struct {
		op core.Op
		in func() core.Input
	}{
		{core.OpTopUp, func() core.Input {
			return core.Input{Op: core.OpTopUp, Account: w, Amount: 100, Ref: "top-" + string(rune('a'+txn%26))}
		}},
		{core.OpPurchase, func() core.Input {
			return core.Input{Op: core.OpPurchase, Account: w, Amount: 100, TID: "T1", Txn: txn + 1000, Merchant: "M", Hash: txn}
		}},
		{core.OpHold, func() core.Input {
			return core.Input{Op: core.OpHold, Account: w, Amount: 100, TID: "T1", Txn: txn + 1000, Merchant: "M"}
		}},
		{core.OpCapture, func() core.Input { // of the hold above
			return core.Input{Op: core.OpCapture, Account: w, Amount: 100, TID: "T1", Txn: txn + 2000, Orig: txn - 1 + 1000, Merchant: "M"}
		}},
	}
	for _, c := range cases {
		offline()
		in := c.in()
		if in.Op != c.op {
			t.Fatalf("case op %v, input %v", c.op, in.Op)
		}
		step(in)
		if reset := s.OfflineCount(w) == 0; reset != syncsOnline(c.op) {
			t.Errorf("%v: core resets the offline count %t, syncsOnline %t", c.op, reset, syncsOnline(c.op))
		}
	}
}
