package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// TestOfflineCapsLiveFromLimitsDoc: the e-CNY double-offline caps are part
// of the "limits" document. A PUT changes the decisions of the next
// offline payment without a restart, a restart (journal replay) keeps
// them, and a limits document without the offline section leaves the caps
// the gateway was started with.
func TestOfflineCapsLiveFromLimitsDoc(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 0)
	if r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "ecny:W1", Amount: 100_000, Class: 2, Ref: "w"}); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open wallet: %v %v", r.Code, err)
	}
	pay := func(e *Engine, p *fakePub, txn uint64, amt int64) terminals.Code {
		r := terminals.Request{V: 1, Type: terminals.TypeECNYOffline, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(), Amt: amt,
			Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: "W1"}}
		rep, _ := send(t, e, p, r)
		return rep.Code
	}
	if c := pay(e, p, 1, 30_000); c != terminals.CodeApproved {
		t.Fatalf("300 CNY under the default 500 CNY cap: %s", c)
	}
	tab := core.LimitsTable{ECNY: core.DefaultConfig().ECNY, Offline: core.OfflineCaps{PaymentMax: 20_000, CountMax: 2}}
	if _, err := e.PutConfig("limits", core.EncodeLimitsTable(tab)); err != nil {
		t.Fatal(err)
	}
	if c := pay(e, p, 2, 30_000); c != terminals.CodeLimitSingle {
		t.Fatalf("300 CNY over the pushed 200 CNY cap: %s", c)
	}
	if c := pay(e, p, 3, 1_000); c != terminals.CodeApproved {
		t.Fatalf("second offline payment: %s", c)
	}
	crash(e)
	e, p = openEngine(t, dir, vfs.Default)
	if c := pay(e, p, 4, 1_000); c != terminals.CodeOfflineCountExceeded {
		t.Fatalf("third offline payment under the pushed count of 2, after a restart: %s", c)
	}
	// A document without the offline section: the started-with caps (the
	// defaults here) come back.
	if _, err := e.PutConfig("limits", core.EncodeLimits(core.DefaultConfig().ECNY)); err != nil {
		t.Fatal(err)
	}
	if c := pay(e, p, 5, 30_000); c != terminals.CodeApproved {
		t.Fatalf("300 CNY under the default cap again: %s", c)
	}
	e.Close()
}

// TestReaderFloorLimitsLiveFromTransitDoc: the bus readers' offline floor
// limits (amount per tap, taps per card before sync) are part of the
// "transit" document: a PUT changes, without a restart, which uploaded
// taps the gateway flags as beyond the floor (FlagOverFloor in the
// upload's journal record, for the operator), and the retained document
// the readers apply carries them.
func TestReaderFloorLimitsLiveFromTransitDoc(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 10_000)
	upload := func(txn uint64, seq uint64) {
		at := time.Now().Add(-time.Hour).UnixMilli()
		r := terminals.Request{V: 1, Type: terminals.TypeOfflineUpload, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(),
			Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}}
		r.Taps.Add(terminals.UploadTap{Seq: seq, Route: "B1", TS: at + int64(seq)})
		rep, _ := send(t, e, p, r)
		if rep.Code != terminals.CodeApproved {
			t.Fatalf("upload %d: %s", txn, rep.Code)
		}
	}
	upload(1, 1) // first offline tap since sync: within the default 10
	c := core.DefaultTransit().Config()
	c.Offline.TapsMax = 1
	c.Offline.AmountMax = 150
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutConfig("transit", b); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Config("transit"); !strings.Contains(string(d.Body), `"taps_max":1`) {
		t.Fatalf("stored transit document: %s", d.Body)
	}
	upload(2, 2) // second offline tap with a floor of 1 tap and 1.50 CNY: over it
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(journal.Options{FS: vfs.Default, Dir: dir + "/journal"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var flags []bool
	if err := j.Replay(0, func(_ uint64, payload []byte) error {
		return EntryRecords(payload, func(_ string, b []byte) error {
			var r core.Record
			if err := core.DecodeRecord(b, &r); err != nil {
				return err
			}
			if r.Op == core.OpTapUpload {
				flags = append(flags, r.Tap.Flags&uint16(transit.FlagOverFloor) != 0)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(flags) != 2 || flags[0] || !flags[1] {
		t.Fatalf("over-floor flags of the two uploads %v, want [false true]", flags)
	}
}
