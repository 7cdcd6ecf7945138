package core

import (
	"bytes"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/transit"
	. "scenepay/terminals"
)

func offTap(route string, seq uint64, at time.Time) transit.Tap {
	return transit.Tap{Kind: transit.TapIn, Route: route, At: at, Reader: "BUS7", Seq: seq}
}

func upload(key string, txn uint64, taps ...transit.Tap) Input {
	return Input{Op: OpTapUpload, Account: key, TID: "BUS7", Txn: txn, Merchant: "busco", Taps: taps}
}

// TestUpload walks a card through an offline upload: charged, debt,
// duplicate, too old and refused taps, a top-up that pays part and then
// all of the debt, and an unknown card; replay and snapshot must rebuild
// the same ledger and card.
func TestUpload(t *testing.T) {
	const c = "county:C1"
	now := t0.Add(2 * time.Hour)
	type row struct {
		name     string
		in       Input
		code     Code
		rec      bool
		outcomes string // record Ref
		balance  int64
		debt     int64
		flags    transit.Flags
		paid     int64
	}
	rows := []row{
		{"open", open(c, 300), CodeApproved, true, "", 300, 0, 0, 0},
		// The reader approved both rides offline; the second finds 100 fen
		// available and its whole fare of 200 becomes debt.
		{"upload: one charged, one into debt", upload(c, 1, offTap("B1", 2, t0.Add(10*time.Minute)), offTap("B1", 1, t0)),
			CodeApproved, true, "cd", 100, 200, transit.FlagDeny, 0},
		{"re-upload with a new tap, an old one and an unknown route", upload(c, 2,
			offTap("B1", 1, t0), offTap("B1", 3, t0.Add(time.Hour)), offTap("B1", 4, now.Add(-8*24*time.Hour)), offTap("ZZ", 5, t0.Add(90*time.Minute))),
			CodeApproved, true, "oudx", 100, 400, transit.FlagDeny, 0},
		{"top-up pays part of the debt", topup(c, 250, "R1"), CodeApproved, true, "R1", 100, 150, 0, 250},
		{"top-up pays the rest and credits the remainder", topup(c, 500, "R2"), CodeApproved, true, "R2", 450, 0, transit.FlagUndeny, 150},
		{"top-up without debt", topup(c, 100, "R3"), CodeApproved, true, "R3", 550, 0, 0, 0},
		{"unknown card", upload("county:NOPE", 3, offTap("B1", 6, t0)), CodeUnknownInstrument, true, "", 0, 0, 0, 0},
		{"empty upload", upload(c, 4), CodeMalformed, false, "", 550, 0, 0, 0},
		{"tap without reader", upload(c, 5, transit.Tap{Kind: transit.TapIn, Route: "B1", At: t0, Seq: 9}), CodeMalformed, false, "", 550, 0, 0, 0},
	}
	cfg := &Config{}
	s := NewShard(1, cfg)
	var recs [][]byte
	var out Output
	for _, r := range rows {
		in := r.in
		s.Step(now, &in, &out)
		if out.Code != r.code || (len(out.Record) > 0) != r.rec {
			t.Fatalf("%s: code %s rec %t, want %s %t", r.name, out.Code, len(out.Record) > 0, r.code, r.rec)
		}
		if out.Flags != uint16(r.flags) || out.DebtPaid != r.paid {
			t.Errorf("%s: flags %v paid %d, want %v %d", r.name, transit.Flags(out.Flags), out.DebtPaid, r.flags, r.paid)
		}
		if len(out.Record) > 0 {
			var rec Record
			if err := DecodeRecord(out.Record, &rec); err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
			if in.Op == OpTapUpload && rec.Ref != r.outcomes {
				t.Errorf("%s: outcomes %q, want %q", r.name, rec.Ref, r.outcomes)
			}
			recs = append(recs, bytes.Clone(out.Record))
		}
		if r.code != CodeUnknownInstrument {
			v, _ := s.Account(c)
			card, _ := s.Card(c)
			if v.Balance != r.balance || card.Debt != r.debt {
				t.Errorf("%s: balance %d debt %d, want %d %d", r.name, v.Balance, card.Debt, r.balance, r.debt)
			}
		}
		if err := s.CheckInvariants(); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	r := replay(t, s, cfg, recs)
	// The replayed card remembers the uploaded taps: a third upload of seq 1
	// is a duplicate there too.
	in := upload(c, 6, offTap("B1", 1, t0))
	r.Step(now, &in, &out)
	var rec Record
	if err := DecodeRecord(out.Record, &rec); err != nil || rec.Ref != "u" {
		t.Fatalf("replayed shard: outcomes %q (%v), want \"u\"", rec.Ref, err)
	}

	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	back := NewShard(1, cfg)
	if err := back.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "restore", s, back)
	in = upload(c, 6, offTap("B1", 3, t0.Add(time.Hour)))
	back.Step(now, &in, &out)
	if err := DecodeRecord(out.Record, &rec); err != nil || rec.Ref != "u" {
		t.Fatalf("restored shard: outcomes %q (%v), want \"u\"", rec.Ref, err)
	}
}

// TestUploadRecordTampered: an upload record whose amounts do not fit the
// card it carries is corruption on replay.
func TestUploadRecordTampered(t *testing.T) {
	const c = "county:C1"
	cfg := &Config{}
	s := NewShard(1, cfg)
	var out Output
	var recs [][]byte
	for _, in := range []Input{open(c, 1000), upload(c, 1, offTap("B1", 1, t0))} {
		s.Step(t0.Add(time.Hour), &in, &out)
		recs = append(recs, bytes.Clone(out.Record))
	}
	var rec Record
	if err := DecodeRecord(recs[1], &rec); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(r *Record){
		"charge":   func(r *Record) { r.Tap.Charge += 10; r.Amount += 10 },
		"hold":     func(r *Record) { r.Tap.Hold = 5; r.Amount += 5 },
		"card":     func(r *Record) { r.Card = r.Card[:len(r.Card)-1] },
		"outcomes": func(r *Record) { r.Ref = "" },
	} {
		r2 := NewShard(1, cfg)
		var first Record
		if err := DecodeRecord(recs[0], &first); err != nil {
			t.Fatal(err)
		}
		if err := r2.Apply(&first); err != nil {
			t.Fatal(err)
		}
		bad := rec
		mut(&bad)
		if err := r2.Apply(&bad); err == nil {
			t.Errorf("%s: tampered upload applied", name)
		}
	}
}

// BenchmarkStepUpload: one card's upload of two flat-fare taps per
// iteration (new reader seqs each time), with the daily cap off.
func BenchmarkStepUpload(b *testing.B) {
	tc := transit.DefaultConfig()
	tc.DailyCap = 0
	tc.Routes = DefaultTransit().Config().Routes
	eng, err := transit.New(tc)
	if err != nil {
		b.Fatal(err)
	}
	s := NewShard(1, &Config{Transit: eng})
	var out Output
	in := open("county:C1", 1<<50)
	s.Step(t0, &in, &out)
	taps := make([]transit.Tap, 2)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		taps[0] = offTap("B1", uint64(2*i+1), at)
		taps[1] = offTap("B1", uint64(2*i+2), at.Add(time.Second))
		in := upload("county:C1", uint64(i+1), taps...)
		s.Step(at.Add(time.Hour), &in, &out)
		if out.Code != CodeApproved {
			b.Fatal(out.Code)
		}
	}
}
