package core

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/transit"
	. "scenepay/terminals"
)

func tapIn(key, route, stop string, txn uint64) Input {
	return Input{Op: OpTapIn, Account: key, Route: route, Stop: stop, TID: "BUS1", Txn: txn, Merchant: "busco"}
}

func tapOut(key, route, stop string, txn uint64) Input {
	return Input{Op: OpTapOut, Account: key, Route: route, Stop: stop, TID: "BUS1", Txn: txn, Merchant: "busco"}
}

// tapRow is one tap of a journey story with what the ledger must show.
type tapRow struct {
	name    string
	min     int // minutes after t0
	in      Input
	code    Code
	rec     bool
	amount  int64 // Output.Amount
	balance int64
	held    int64
	tap     TapAmounts // the record's amounts (Reason/Flags not compared)
}

func runTaps(t *testing.T, s *Shard, rows []tapRow) [][]byte {
	t.Helper()
	var recs [][]byte
	var out Output
	for _, row := range rows {
		in := row.in
		at := t0.Add(time.Duration(row.min) * time.Minute)
		s.Step(at, &in, &out)
		if out.Code != row.code || (len(out.Record) > 0) != row.rec || out.Amount != row.amount {
			t.Fatalf("%s: got code %s rec %t amount %d, want %s %t %d", row.name, out.Code, len(out.Record) > 0, out.Amount, row.code, row.rec, row.amount)
		}
		v, _ := s.Account(in.Account)
		if v.Balance != row.balance || v.Held != row.held {
			t.Errorf("%s: balance %d held %d, want %d %d", row.name, v.Balance, v.Held, row.balance, row.held)
		}
		if len(out.Record) > 0 {
			var r Record
			if err := DecodeRecord(out.Record, &r); err != nil {
				t.Fatalf("%s: %v", row.name, err)
			}
			got := r.Tap
			got.Reason, got.Flags = 0, 0
			if row.code == CodeApproved && got != row.tap {
				t.Errorf("%s: record amounts %+v, want %+v", row.name, got, row.tap)
			}
			if r.Version != RecordVersionTap || r.Route != in.Route || r.Stop != in.Stop {
				t.Errorf("%s: record version %d route %q stop %q", row.name, r.Version, r.Route, r.Stop)
			}
			recs = append(recs, bytes.Clone(out.Record))
		}
		if err := s.CheckInvariants(); err != nil {
			t.Fatalf("%s: %v", row.name, err)
		}
	}
	return recs
}

func TestTapJourneys(t *testing.T) {
	const c = "county:C1"
	tests := []struct {
		name string
		bal  int64
		rows []tapRow
	}{
		{"flat route charges at tap-in", 1000, []tapRow{
			{"in B1", 0, tapIn(c, "B1", "", 1), CodeApproved, true, 200, 800, 0, TapAmounts{Fare: 200, Charge: 200}},
			{"stray out B1", 5, tapOut(c, "B1", "", 2), CodeApproved, true, 0, 800, 0, TapAmounts{}},
		}},
		{"distance route holds then captures and releases", 1000, []tapRow{
			{"in D1 S1", 0, tapIn(c, "D1", "S1", 1), CodeApproved, true, 600, 1000, 600, TapAmounts{Fare: 600, Hold: 600}},
			{"out D1 S3", 20, tapOut(c, "D1", "S3", 2), CodeApproved, true, 300, 700, 0, TapAmounts{Fare: 300, Capture: 300, Release: 300}},
			{"out again: no journey", 21, tapOut(c, "D1", "S3", 3), CodeApproved, true, 0, 700, 0, TapAmounts{}},
		}},
		{"cap reached mid-journey", 5000, []tapRow{
			{"B1 #1", 0, tapIn(c, "B1", "", 1), CodeApproved, true, 200, 4800, 0, TapAmounts{Fare: 200, Charge: 200}},
			{"B1 #2", 10, tapIn(c, "B1", "", 2), CodeApproved, true, 200, 4600, 0, TapAmounts{Fare: 200, Charge: 200}},
			{"B1 #3", 20, tapIn(c, "B1", "", 3), CodeApproved, true, 200, 4400, 0, TapAmounts{Fare: 200, Charge: 200}},
			{"B1 #4", 30, tapIn(c, "B1", "", 4), CodeApproved, true, 200, 4200, 0, TapAmounts{Fare: 200, Charge: 200}},
			// 800 of the 1000 daily cap spent: the hold is what the cap leaves.
			{"in D1 S1 past the transfer window", 180, tapIn(c, "D1", "S1", 5), CodeApproved, true, 200, 4200, 200, TapAmounts{Fare: 600, Hold: 200}},
			{"out D1 S4: fare 600, capped at 200", 200, tapOut(c, "D1", "S4", 6), CodeApproved, true, 200, 4000, 0, TapAmounts{Fare: 600, Capture: 200}},
			{"capped: B1 free", 400, tapIn(c, "B1", "", 7), CodeApproved, true, 0, 4000, 0, TapAmounts{Fare: 200}},
		}},
		{"same-stop cancel", 1000, []tapRow{
			{"in D1 S2", 0, tapIn(c, "D1", "S2", 1), CodeApproved, true, 600, 1000, 600, TapAmounts{Fare: 600, Hold: 600}},
			{"out D1 S2 within grace", 1, tapOut(c, "D1", "S2", 2), CodeApproved, true, 0, 1000, 0, TapAmounts{Release: 600}},
		}},
		{"incomplete journey: the next tap-in captures the maximum fare", 2000, []tapRow{
			{"in D1 S1", 0, tapIn(c, "D1", "S1", 1), CodeApproved, true, 600, 2000, 600, TapAmounts{Fare: 600, Hold: 600}},
			{"in B1 later (transfer: free)", 30, tapIn(c, "B1", "", 2), CodeApproved, true, 0, 1400, 0, TapAmounts{PrevCapture: 600}},
		}},
		{"declines", 500, []tapRow{
			{"unknown route: refusal, not journaled", 0, tapIn(c, "ZZ", "", 1), CodeMalformed, false, 0, 500, 0, TapAmounts{}},
			{"unknown stop", 0, tapIn(c, "D1", "S9", 2), CodeMalformed, false, 0, 500, 0, TapAmounts{}},
			{"hold over the balance", 1, tapIn(c, "D1", "S1", 3), CodeInsufficientFunds, true, 0, 500, 0, TapAmounts{}},
			{"unknown card", 2, tapIn("county:NOPE", "B1", "", 4), CodeUnknownInstrument, true, 0, 0, 0, TapAmounts{}},
			{"flat fare fits", 3, tapIn(c, "B1", "", 5), CodeApproved, true, 200, 300, 0, TapAmounts{Fare: 200, Charge: 200}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{}
			s := NewShard(1, cfg)
			var out Output
			in := open(c, tc.bal)
			s.Step(t0, &in, &out)
			recs := [][]byte{bytes.Clone(out.Record)}
			recs = append(recs, runTaps(t, s, tc.rows)...)
			replay(t, s, cfg, recs)
		})
	}
}

func TestTapBlockedCard(t *testing.T) {
	s := NewShard(1, nil)
	runSteps(t, s, []step{
		{name: "open", in: open("county:C1", 1000), code: CodeApproved, avail: 1000, rec: true},
	})
	runTaps(t, s, []tapRow{
		{"in D1 S1", 0, tapIn("county:C1", "D1", "S1", 1), CodeApproved, true, 600, 1000, 600, TapAmounts{Fare: 600, Hold: 600}},
	})
	runSteps(t, s, []step{{name: "block", in: block("county:C1", true), code: CodeApproved, avail: 400, rec: true}})
	runTaps(t, s, []tapRow{
		// The journey's money is held: its tap-out proceeds, a new boarding does not.
		{"out D1 S2", 10, tapOut("county:C1", "D1", "S2", 2), CodeApproved, true, 200, 800, 0, TapAmounts{Fare: 200, Capture: 200, Release: 400}},
		{"in B1 blocked", 11, tapIn("county:C1", "B1", "", 3), CodeInstrumentBlocked, true, 0, 800, 0, TapAmounts{}},
	})
}

// TestTapSnapshotMidJourney: a snapshot taken with a journey open restores
// the card (and its hold), and the tap-out after the restore finds it.
func TestTapSnapshotMidJourney(t *testing.T) {
	s := NewShard(3, nil)
	var out Output
	in := open("county:C1", 1000)
	s.Step(t0, &in, &out)
	runTaps(t, s, []tapRow{
		{"in D1 S1", 0, tapIn("county:C1", "D1", "S1", 1), CodeApproved, true, 600, 1000, 600, TapAmounts{Fare: 600, Hold: 600}},
	})
	var b bytes.Buffer
	if err := s.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	r := NewShard(3, nil)
	if err := r.Restore(bytes.NewReader(b.Bytes())); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "restore", s, r)
	card, ok := r.Card("county:C1")
	if !ok || !card.Open || card.Journey.Held != 600 || card.Journey.Stop != "S1" {
		t.Fatalf("restored card %+v %t", card, ok)
	}
	runTaps(t, r, []tapRow{
		{"out D1 S4", 30, tapOut("county:C1", "D1", "S4", 2), CodeApproved, true, 600, 400, 0, TapAmounts{Fare: 600, Capture: 600}},
	})

	// A snapshot whose card disagrees with the account's held is refused.
	bad := bytes.Clone(b.Bytes())
	i := bytes.Index(bad, []byte("county:C1"))
	binary.LittleEndian.PutUint64(bad[i+len("county:C1")+8:], 0) // held 0, journey holds 600
	if err := NewShard(3, nil).Restore(bytes.NewReader(resealSnapshot(bad))); err == nil {
		t.Fatal("snapshot with held 0 and an open journey of 600 restored")
	}
}

// TestSnapshotVersion1StillLoads: a snapshot written before taps (version
// 1: no card section) restores.
func TestSnapshotVersion1StillLoads(t *testing.T) {
	s, _ := sampleRecords(t)
	var b bytes.Buffer
	if err := s.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	v5 := b.Bytes()
	// The version 5 section is one debt (i64) per top-up ref before the
	// CRC; without it, and with no debt paid, the image is version 4.
	cut := len(v5) - 4 - 8*s.refs.n
	if s.refs.n == 0 || !bytes.Equal(v5[cut:len(v5)-4], make([]byte, 8*s.refs.n)) {
		t.Fatalf("sample shard: %d refs, want some and no debt paid", s.refs.n)
	}
	v4 := append(bytes.Clone(v5[:cut]), 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(v4[len(snapMagic):], 4)
	v4 = resealSnapshot(v4)
	r4 := NewShard(s.ID(), &Config{ReversibleMax: 64, RefsMax: 64, HoldsMax: 64})
	if err := r4.Restore(bytes.NewReader(v4)); err != nil {
		t.Fatal("v4:", err)
	}
	assertSame(t, "v4 snapshot", s, r4)
	// No offline e-CNY payments in the sample: the version 4 section is a
	// zero count before the CRC; without it, the image is version 3.
	if binary.LittleEndian.Uint32(v4[len(v4)-8:]) != 0 {
		t.Fatal("sample shard has offline counts")
	}
	v3 := append(bytes.Clone(v4[:len(v4)-8]), 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(v3[len(snapMagic):], 3)
	v3 = resealSnapshot(v3)
	r3 := NewShard(s.ID(), &Config{ReversibleMax: 64, RefsMax: 64, HoldsMax: 64})
	if err := r3.Restore(bytes.NewReader(v3)); err != nil {
		t.Fatal("v3:", err)
	}
	assertSame(t, "v3 snapshot", s, r3)
	// No market state in the sample: the version 3 section is a zero QR
	// counter count, an empty used set (9 bytes) and an empty ledger (13).
	mkt := 4 + 4 + 9 + 4 + 13
	n := len(v3) - 4 - mkt
	if binary.LittleEndian.Uint32(v3[n:]) != 0 {
		t.Fatal("sample shard has QR counters")
	}
	v2 := append(bytes.Clone(v3[:n]), 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(v2[len(snapMagic):], 2)
	v2 = resealSnapshot(v2)
	r2 := NewShard(s.ID(), &Config{ReversibleMax: 64, RefsMax: 64, HoldsMax: 64})
	if err := r2.Restore(bytes.NewReader(v2)); err != nil {
		t.Fatal("v2:", err)
	}
	assertSame(t, "v2 snapshot", s, r2)
	// No cards in the sample: drop the zero card count, set version 1.
	if binary.LittleEndian.Uint32(v3[n-4:]) != 0 {
		t.Fatal("sample shard has cards")
	}
	v1 := append(bytes.Clone(v3[:n-4]), 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(v1[len(snapMagic):], 1)
	v1 = resealSnapshot(v1)
	r := NewShard(s.ID(), &Config{ReversibleMax: 64, RefsMax: 64, HoldsMax: 64})
	if err := r.Restore(bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "v1 snapshot", s, r)
	binary.LittleEndian.PutUint16(v1[len(snapMagic):], SnapVersion+1)
	if err := NewShard(s.ID(), nil).Restore(bytes.NewReader(resealSnapshot(v1))); err == nil {
		t.Fatal("snapshot of a future version restored")
	}
}

// TestApplyTapDivergence: a tap record whose amounts do not fit the card's
// journey is corruption on replay.
func TestApplyTapDivergence(t *testing.T) {
	s := NewShard(1, nil)
	var out Output
	in := open("county:C1", 1000)
	s.Step(t0, &in, &out)
	recs := [][]byte{bytes.Clone(out.Record)}
	recs = append(recs, runTaps(t, s, []tapRow{
		{"in D1 S1", 0, tapIn("county:C1", "D1", "S1", 1), CodeApproved, true, 600, 1000, 600, TapAmounts{Fare: 600, Hold: 600}},
		{"out D1 S3", 20, tapOut("county:C1", "D1", "S3", 2), CodeApproved, true, 300, 700, 0, TapAmounts{Fare: 300, Capture: 300, Release: 300}},
	})...)
	for _, mut := range []func(r *Record){
		func(r *Record) { r.Tap.Release = 200; r.Held = 100 },   // releases less than was held
		func(r *Record) { r.Tap.Capture = 400; r.Amount = 400 }, // captures more
		func(r *Record) { r.Card = r.Card[:len(r.Card)-1] },     // damaged card state
		func(r *Record) { r.Balance = 800 },                     // account differs
	} {
		sh := NewShard(1, nil)
		var err error
		for i, b := range recs {
			var r Record
			if e := DecodeRecord(b, &r); e != nil {
				t.Fatal(e)
			}
			if i == 2 {
				mut(&r)
			}
			if err = sh.Apply(&r); err != nil {
				break
			}
		}
		if err == nil {
			t.Error("a mutated tap record replayed")
		}
	}
}

func TestTapRecordRoundTrip(t *testing.T) {
	s := NewShard(1, nil)
	var out Output
	in := open("county:C1", 1000)
	s.Step(t0, &in, &out)
	in = tapIn("county:C1", "D1", "S1", 1)
	s.Step(t0, &in, &out)
	var r Record
	if err := DecodeRecord(out.Record, &r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.AppendBinary(nil), out.Record) {
		t.Fatal("tap record does not re-encode to its bytes")
	}
	var c transit.Card
	if err := c.SetStateString(r.Card); err != nil || !c.Open || c.Journey.Route != "D1" {
		t.Fatalf("record card state %+v: %v", c, err)
	}
	// Truncating the card state by one byte (with a valid CRC) is a length error.
	b := bytes.Clone(out.Record)
	b = append(b[:len(b)-5], b[len(b)-4:]...)
	binary.LittleEndian.PutUint32(b[len(b)-4:], crcOf(b[:len(b)-4]))
	if err := DecodeRecord(b, &r); err == nil {
		t.Fatal("truncated tap record decoded")
	}
}

// BenchmarkStepTapJourney: one distance journey (tap-in hold, tap-out
// capture and release) per two iterations on one card, with the daily cap
// off so every journey pays.
func BenchmarkStepTapJourney(b *testing.B) {
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
	ins := [2]Input{tapIn("county:C1", "D1", "S1", 0), tapOut("county:C1", "D1", "S3", 0)}
	at := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in := ins[i%2]
		in.Txn = uint64(i + 1)
		at = at.Add(10 * time.Minute)
		s.Step(at, &in, &out)
		if out.Code != CodeApproved {
			b.Fatalf("step %d: %s", i, out.Code)
		}
	}
}

// TestTapStepAllocs pins the allocations of a tap step: the record's card
// state string, its decode in the shared effect code, and the card's
// strings (route, stop, anchor route, and a journey's boarding reader and
// merchant: a tap-in decodes two more strings, so the in/out pair averages
// one more). A rise means a new copy crept in.
func TestTapStepAllocs(t *testing.T) {
	s := NewShard(1, nil)
	var out Output
	in := open("county:C1", 1<<50)
	s.Step(t0, &in, &out)
	at, txn := t0, uint64(0)
	ins := [2]Input{tapIn("county:C1", "D1", "S1", 0), tapOut("county:C1", "D1", "S3", 0)}
	allocs := testing.AllocsPerRun(200, func() {
		txn++
		in := ins[txn%2]
		in.Txn = txn
		at = at.Add(24 * time.Hour) // a new transit day: the cap never bites
		s.Step(at, &in, &out)
		if out.Code != CodeApproved {
			t.Fatalf("tap %d: %s", txn, out.Code)
		}
	})
	if allocs > 5 {
		t.Fatalf("a tap step allocates %.1f times, want <= 5", allocs)
	}
}
