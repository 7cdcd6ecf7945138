package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scenepay/terminals"
)

// sampleRecords returns the journal of a short story touching every op.
func sampleRecords(t testing.TB) (*Shard, [][]byte) {
	s := NewShard(5, nil)
	var recs [][]byte
	var out Output
	for i, in := range []Input{
		open("county:a", 1000), openBank("bank:tok_b", 50, -500), openECNY("ecny:w", 2, 7000),
		topup("county:a", 250, "op-42"), block("bank:tok_b", true),
		buy("county:a", 300, 1), buy("bank:tok_b", 10, 2), buy("nope:x", 5, 3), rev("county:a", 300, 4, 1),
		hold("ecny:w", 4000, 5), capture("ecny:w", 1000, 6, 5), release("ecny:w", 7, 5),
		{Op: OpPurchase, Account: "ecny:w", Amount: 1, TID: strings.Repeat("t", MaxFieldLen), Txn: 1 << 60, Merchant: strings.Repeat("m", MaxFieldLen), Hash: ^uint64(0)},
	} {
		s.Step(t0.Add(time.Duration(i)*time.Minute), &in, &out)
		if len(out.Record) == 0 {
			t.Fatalf("input %d %+v: no record (%s)", i, in, out.Code)
		}
		recs = append(recs, bytes.Clone(out.Record))
	}
	return s, recs
}

func TestRecordRoundTrip(t *testing.T) {
	_, recs := sampleRecords(t)
	for i, b := range recs {
		var r Record
		if err := DecodeRecord(b, &r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got := r.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("record %d: re-encoding differs", i)
		}
		if r.Seq != uint64(i+1) || r.Shard != 5 || r.Version != RecordVersion {
			t.Errorf("record %d: seq %d shard %d version %d", i, r.Seq, r.Shard, r.Version)
		}
	}
	var r Record
	if err := DecodeRecord(recs[5], &r); err != nil {
		t.Fatal(err)
	}
	want := Record{Version: 1, Op: OpPurchase, Code: terminals.CodeApproved, Shard: 5, Seq: 6, Time: t0.Add(5 * time.Minute).UnixNano(),
		Account: "county:a", Amount: 300, TID: "T1", Txn: 1, Hash: 7, Merchant: "M1", Balance: 950}
	if r != want {
		t.Errorf("purchase record\n got  %+v\n want %+v", r, want)
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	_, recs := sampleRecords(t)
	good := recs[5]
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	reseal := func(b []byte) []byte { // fix the CRC so that the field check is what fails
		n := len(b) - recCRCLen
		c := crcOf(b[:n])
		b[n], b[n+1], b[n+2], b[n+3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		return b
	}
	tests := []struct {
		name  string
		b     []byte
		field string
	}{
		{"empty", nil, "length"},
		{"short", good[:MinRecordLen-1], "length"},
		{"long", make([]byte, MaxRecordLen+1), "length"},
		{"truncated", good[:len(good)-1], "length"},
		{"trailing", append(bytes.Clone(good), 0), "length"},
		{"crc", mut(func(b []byte) []byte { b[30] ^= 1; return b }), "crc"},
		{"version", mut(func(b []byte) []byte { b[0] = 2; return reseal(b) }), "version"},
		{"op balance", mut(func(b []byte) []byte { b[1] = byte(OpBalance); return reseal(b) }), "op"},
		{"op 0", mut(func(b []byte) []byte { b[1] = 0; return reseal(b) }), "op"},
		{"code refusal", mut(func(b []byte) []byte { b[2], b[3] = 'A', '2'; return reseal(b) }), "code"},
		{"code unknown", mut(func(b []byte) []byte { b[2], b[3] = 'z', 'z'; return reseal(b) }), "code"},
		{"class", mut(func(b []byte) []byte { b[80] = 5; return reseal(b) }), "class"},
		{"flags", mut(func(b []byte) []byte { b[81] = 2; return reseal(b) }), "flags"},
	}
	for _, tc := range tests {
		var r Record
		err := DecodeRecord(tc.b, &r)
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != tc.field || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want a DecodeError on %q", tc.name, err, tc.field)
		}
	}
}

func TestApplyDetectsDivergence(t *testing.T) {
	_, recs := sampleRecords(t)
	decode := func(i int) Record {
		var r Record
		if err := DecodeRecord(recs[i], &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	prefix := func(n int) *Shard {
		s := NewShard(5, nil)
		for i := 0; i < n; i++ {
			r := decode(i)
			if err := s.Apply(&r); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	tests := []struct {
		name string
		at   int
		edit func(r *Record)
	}{
		{"balance", 5, func(r *Record) { r.Balance++ }},
		{"held", 9, func(r *Record) { r.Held-- }},
		{"blocked", 6, func(r *Record) { r.Blocked = false }},
		{"seq gap", 5, func(r *Record) { r.Seq++ }},
		{"seq repeat", 5, func(r *Record) { r.Seq-- }},
		{"other shard", 5, func(r *Record) { r.Shard = 6 }},
		{"version", 5, func(r *Record) { r.Version = 9 }},
		{"op balance", 5, func(r *Record) { r.Op = OpBalance }},
		{"refusal code", 5, func(r *Record) { r.Code = terminals.CodeBusy }},
		{"overdraw", 5, func(r *Record) { r.Amount = 1_000_000 }},
		{"unknown account", 5, func(r *Record) { r.Account = "county:zz" }},
		{"declined as unknown but exists", 5, func(r *Record) { r.Code = terminals.CodeUnknownInstrument }},
		{"reverse other amount", 8, func(r *Record) { r.Amount = 299 }},
		{"reverse unknown original", 8, func(r *Record) { r.Orig = 77 }},
		{"open twice", 0, func(r *Record) { r.Seq = 4; r.Amount = 1000 }},
		{"capture beyond hold", 10, func(r *Record) { r.Amount = 4001 }},
		{"release other amount", 11, func(r *Record) { r.Amount = 1 }},
		{"top-up ref again", 3, func(r *Record) { r.Seq = 5 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.at
			if tc.name == "open twice" || tc.name == "top-up ref again" {
				n = 4
			}
			s := prefix(n)
			r := decode(tc.at)
			tc.edit(&r)
			err := s.Apply(&r)
			var re *ReplayError
			if !errors.As(err, &re) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want a ReplayError", err)
			}
		})
	}
	// and the unedited journal applies cleanly
	if s := prefix(len(recs)); s.Seq() != uint64(len(recs)) {
		t.Fatalf("seq %d after %d records", s.Seq(), len(recs))
	}
}

func TestSnapshotRestore(t *testing.T) {
	live, recs := sampleRecords(t)
	var b bytes.Buffer
	if err := live.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	snap := b.Bytes()
	r := NewShard(5, nil)
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "restore", live, r)
	if err := r.Restore(bytes.NewReader(snap)); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("restore into a full shard: got %v, want ErrNotEmpty", err)
	}
	// The restored shard goes on where the live one stands.
	var out Output
	in := rev("county:a", 300, 20, 1)
	r.Step(t0.Add(time.Hour), &in, &out)
	if out.Code != terminals.CodeApproved || len(out.Record) != 0 {
		t.Errorf("second reversal after restore: got %s with %d record bytes, want approved, no record", out.Code, len(out.Record))
	}
	in = buy("county:a", 1, 21)
	r.Step(t0.Add(time.Hour), &in, &out)
	if out.Seq != uint64(len(recs))+1 {
		t.Errorf("seq after restore got %d, want %d", out.Seq, len(recs)+1)
	}

	bad := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(snap)) }
	tests := []struct {
		name string
		b    []byte
		id   uint32
		cfg  *Config
	}{
		{"empty", nil, 5, nil},
		{"magic", bad(func(b []byte) []byte { b[0] = 'X'; return b }), 5, nil},
		{"flipped bit", bad(func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }), 5, nil},
		{"truncated", snap[:len(snap)-1], 5, nil},
		{"trailing", append(bytes.Clone(snap), 0), 5, nil},
		{"other shard", snap, 6, nil},
		{"smaller ReversibleMax", snap, 5, &Config{ReversibleMax: 1}},
	}
	// a held total that disagrees with the holds, with a valid CRC
	withHold := NewShard(5, nil)
	for _, in := range []Input{open("county:h", 100), hold("county:h", 40, 1)} {
		withHold.Step(t0, &in, &out)
	}
	withHold.accounts[0].held = 39
	var hb bytes.Buffer
	if err := withHold.Snapshot(&hb); err != nil {
		t.Fatal(err)
	}
	tests = append(tests, struct {
		name string
		b    []byte
		id   uint32
		cfg  *Config
	}{"held disagrees with holds", hb.Bytes(), 5, nil})
	for _, tc := range tests {
		s := NewShard(tc.id, tc.cfg)
		err := s.Restore(bytes.NewReader(tc.b))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", tc.name, err)
		}
		if !s.empty() {
			t.Errorf("%s: shard not left empty", tc.name)
		}
	}
}

var writeSeeds = flag.Bool("write-seeds", false, "rewrite testdata/fuzz/FuzzDecodeRecord seed files from sampleRecords")

// TestWriteFuzzSeeds keeps the committed seed corpus reproducible: run with
// -write-seeds to regenerate it from sampleRecords.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to regenerate the seed corpus")
	}
	_, recs := sampleRecords(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeRecord")
	for i, b := range recs {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-record-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDecodeRecord: decoding never panics, and whatever decodes re-encodes
// to the same bytes and applies or fails with a typed error.
func FuzzDecodeRecord(f *testing.F) {
	_, recs := sampleRecords(f)
	_, mrecs := marketRecords(f)
	for _, b := range append(recs, mrecs...) {
		f.Add(b)
	}
	check := func(t *testing.T, b []byte) {
		var r Record
		err := DecodeRecord(b, &r)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := r.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("round trip differs:\n in  %x\n out %x", b, got)
		}
		s := NewShard(r.Shard, &Config{ReversibleMax: 4, RefsMax: 4, HoldsMax: 4})
		r.Seq = 1
		if err := s.Apply(&r); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("apply: untyped error %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check(t, b)
		// The CRC stops almost every mutation at the door; also try the
		// input with its CRC made right, so the field checks get fuzzed.
		if n := len(b) - recCRCLen; n >= recHeaderLen {
			c := bytes.Clone(b)
			binary.LittleEndian.PutUint32(c[n:], crcOf(c[:n]))
			check(t, c)
		}
	})
}

// FuzzRestore: a damaged snapshot is an error (ErrCorrupt), never a panic
// and never a half-restored shard. As with records, the CRC is also made
// right so that the structural checks behind it get fuzzed.
func FuzzRestore(f *testing.F) {
	live, _ := sampleRecords(f)
	var b bytes.Buffer
	if err := live.Snapshot(&b); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	mlive, _ := marketRecords(f)
	var mb bytes.Buffer
	if err := mlive.Snapshot(&mb); err != nil {
		f.Fatal(err)
	}
	f.Add(mb.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, resealSnapshot(b)} {
			s := NewShard(5, &Config{ReversibleMax: 64, RefsMax: 64, HoldsMax: 64})
			if err := s.Restore(bytes.NewReader(in)); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("untyped error %v", err)
				}
				if !s.empty() {
					t.Fatal("failed restore left state behind")
				}
				continue
			}
			if err := s.CheckInvariants(); err != nil {
				t.Fatalf("restored a shard that breaks invariants: %v", err)
			}
		}
	})
}

func resealSnapshot(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	c := bytes.Clone(b)
	n := len(c) - 4
	binary.LittleEndian.PutUint32(c[n:], crcOf(c[:n]))
	return c
}
