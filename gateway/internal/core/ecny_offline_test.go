package core

import (
	"bytes"
	"testing"

	. "scenepay/terminals"
)

func offlinePay(key string, amt int64, txn uint64) Input {
	return Input{Op: OpECNYOffline, Account: key, Amount: amt, TID: "STALL9", Txn: txn, Merchant: "stall-9"}
}

// TestECNYOfflineCaps: the per-payment cap, the count since the last
// online sync (declined with its own code, journaled), the reset by an
// online payment, the Unsynced flag, and replay and snapshot keeping the
// count.
func TestECNYOfflineCaps(t *testing.T) {
	const w = "ecny:W1"
	type row struct {
		name  string
		in    Input
		code  Code
		rec   bool
		count int
	}
	rows := []row{
		{"open", openECNY(w, 2, 100_000), CodeApproved, true, 0},
		{"over the offline cap of 500 CNY", offlinePay(w, 50_001, 1), CodeLimitSingle, true, 0},
	}
	for i := 0; i < DefaultOfflineCountMax; i++ {
		rows = append(rows, row{"offline payment", offlinePay(w, 1000, uint64(10+i)), CodeApproved, true, i + 1})
	}
	rows = append(rows,
		row{"one over the count", offlinePay(w, 1000, 30), CodeOfflineCountExceeded, true, DefaultOfflineCountMax},
		row{"online purchase syncs", buy(w, 100, 31), CodeApproved, true, 0},
		row{"offline again", offlinePay(w, 1000, 32), CodeApproved, true, 1},
		row{"unknown account", offlinePay("ecny:NOPE", 100, 33), CodeUnknownInstrument, true, 1},
		row{"zero amount", offlinePay(w, 0, 34), CodeInvalidAmount, true, 1},
	)
	cfg := &Config{}
	s := NewShard(1, cfg)
	var recs [][]byte
	var out Output
	for _, r := range rows {
		in := r.in
		s.Step(t0, &in, &out)
		if out.Code != r.code || (len(out.Record) > 0) != r.rec {
			t.Fatalf("%s: code %s rec %t, want %s %t", r.name, out.Code, len(out.Record) > 0, r.code, r.rec)
		}
		if got := s.OfflineCount(w); got != r.count {
			t.Errorf("%s: offline count %d, want %d", r.name, got, r.count)
		}
		if len(out.Record) > 0 {
			var rec Record
			if err := DecodeRecord(out.Record, &rec); err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
			if want := in.Op == OpECNYOffline && r.code == CodeApproved; rec.Unsynced != want {
				t.Errorf("%s: unsynced %t, want %t", r.name, rec.Unsynced, want)
			}
			recs = append(recs, bytes.Clone(out.Record))
		}
	}
	if v, _ := s.Account(w); v.Balance != 100_000-11*1000-100 {
		t.Fatalf("balance %d", v.Balance)
	}
	replay(t, s, cfg, recs)
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	back := NewShard(1, cfg)
	if err := back.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "restore", s, back)
	if back.OfflineCount(w) != 1 {
		t.Fatalf("restored offline count %d", back.OfflineCount(w))
	}

	// Configured caps; a county account is not a wallet (refused).
	c := NewShard(2, &Config{Offline: OfflineCaps{PaymentMax: 500, CountMax: 2}})
	for _, in := range []Input{open("county:C1", 1000), openECNY("ecny:W2", 4, 10_000)} {
		c.Step(t0, &in, &out)
	}
	for i, want := range []Code{CodeApproved, CodeApproved, CodeOfflineCountExceeded} {
		in := offlinePay("ecny:W2", 500, uint64(40+i))
		c.Step(t0, &in, &out)
		if out.Code != want {
			t.Fatalf("configured caps, payment %d: %s, want %s", i, out.Code, want)
		}
	}
	in := offlinePay("county:C1", 100, 50)
	if c.Step(t0, &in, &out); out.Code != CodeMalformed || len(out.Record) != 0 {
		t.Fatalf("county offline payment: %s (record %t)", out.Code, len(out.Record) > 0)
	}
}

// TestECNYOfflineRecordChecks: the Unsynced flag only on approved offline
// payments, and a record whose count disagrees with the wallet is
// corruption on replay.
func TestECNYOfflineRecordChecks(t *testing.T) {
	cfg := &Config{}
	s := NewShard(1, cfg)
	var out Output
	var recs [][]byte
	for _, in := range []Input{openECNY("ecny:W1", 2, 10_000), offlinePay("ecny:W1", 100, 1)} {
		s.Step(t0, &in, &out)
		recs = append(recs, bytes.Clone(out.Record))
	}
	var open, pay Record
	if err := DecodeRecord(recs[0], &open); err != nil {
		t.Fatal(err)
	}
	if err := DecodeRecord(recs[1], &pay); err != nil {
		t.Fatal(err)
	}
	open.Unsynced = true
	if err := DecodeRecord(open.AppendBinary(nil), &Record{}); err == nil {
		t.Fatal("unsynced flag on an open record decoded")
	}
	for name, mut := range map[string]func(r *Record){
		"count":    func(r *Record) { r.Orig = 2 },
		"unsynced": func(r *Record) { r.Unsynced = false },
	} {
		r := NewShard(1, cfg)
		var o Record
		DecodeRecord(recs[0], &o)
		if err := r.Apply(&o); err != nil {
			t.Fatal(err)
		}
		bad := pay
		mut(&bad)
		if err := r.Apply(&bad); err == nil {
			t.Errorf("%s: tampered offline payment applied", name)
		}
	}
}
