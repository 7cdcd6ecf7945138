package core

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"scenepay/terminals"
)

// t0 is 10:00 on 2026-03-10 in Asia/Shanghai.
var t0 = time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)

const skip = int64(-1 << 63) // want.avail value meaning "do not check"

// step is one row of a scenario: an input and the outcome it must get.
type step struct {
	name  string
	at    time.Time // zero: t0
	in    Input
	code  terminals.Code
	avail int64
	rec   bool // a record must be journaled
}

func open(key string, amt int64) Input {
	return Input{Op: OpOpenAccount, Account: key, Amount: amt, Ref: "open-" + key}
}
func openECNY(key string, class uint8, amt int64) Input {
	return Input{Op: OpOpenAccount, Account: key, Amount: amt, Class: class, Ref: "open-" + key}
}
func openBank(key string, amt, floor int64) Input {
	return Input{Op: OpOpenAccount, Account: key, Amount: amt, Floor: floor, Ref: "open-" + key}
}
func topup(key string, amt int64, ref string) Input {
	return Input{Op: OpTopUp, Account: key, Amount: amt, Ref: ref}
}
func buy(key string, amt int64, txn uint64) Input {
	return Input{Op: OpPurchase, Account: key, Amount: amt, TID: "T1", Txn: txn, Merchant: "M1", Hash: txn * 7}
}
func rev(key string, amt int64, txn, orig uint64) Input {
	return Input{Op: OpReversal, Account: key, Amount: amt, TID: "T1", Txn: txn, Orig: orig, Merchant: "M1"}
}
func hold(key string, amt int64, txn uint64) Input {
	return Input{Op: OpHold, Account: key, Amount: amt, TID: "T1", Txn: txn, Merchant: "M1"}
}
func capture(key string, amt int64, txn, orig uint64) Input {
	return Input{Op: OpCapture, Account: key, Amount: amt, TID: "T1", Txn: txn, Orig: orig, Merchant: "M1"}
}
func release(key string, txn, orig uint64) Input {
	return Input{Op: OpRelease, Account: key, TID: "T1", Txn: txn, Orig: orig, Merchant: "M1"}
}
func bal(key string) Input { return Input{Op: OpBalance, Account: key, TID: "T1", Txn: 1} }
func block(key string, b bool) Input {
	return Input{Op: OpBlock, Account: key, Blocked: b, Ref: "blk"}
}

// runSteps steps every row on s, checks got against want, checks the
// invariants after each step, and returns the journaled records.
func runSteps(t *testing.T, s *Shard, steps []step) [][]byte {
	t.Helper()
	var recs [][]byte
	var out Output
	for i, st := range steps {
		at := st.at
		if at.IsZero() {
			at = t0.Add(time.Duration(i) * time.Second)
		}
		in := st.in
		seqBefore := s.Seq()
		s.Step(at, &in, &out)
		if out.Code != st.code {
			t.Errorf("step %d %q: code got %s %s, want %s %s", i, st.name, out.Code, out.Code.Name(), st.code, st.code.Name())
		}
		if st.avail != skip && out.Available != st.avail {
			t.Errorf("step %d %q: available got %d, want %d", i, st.name, out.Available, st.avail)
		}
		if got := len(out.Record) > 0; got != st.rec {
			t.Errorf("step %d %q: journaled got %t, want %t", i, st.name, got, st.rec)
		}
		if st.rec {
			if out.Seq != seqBefore+1 || s.Seq() != out.Seq {
				t.Errorf("step %d %q: seq got %d (shard %d), want %d", i, st.name, out.Seq, s.Seq(), seqBefore+1)
			}
			var r Record
			if err := DecodeRecord(out.Record, &r); err != nil {
				t.Fatalf("step %d %q: own record does not decode: %v", i, st.name, err)
			}
			if r.Code != out.Code || r.Seq != out.Seq || r.Available() != out.Available || r.Time != at.UnixNano() {
				t.Errorf("step %d %q: record %+v disagrees with output %+v", i, st.name, r, out)
			}
			recs = append(recs, bytes.Clone(out.Record))
		} else if out.Seq != 0 || s.Seq() != seqBefore {
			t.Errorf("step %d %q: no record but seq %d (shard %d -> %d)", i, st.name, out.Seq, seqBefore, s.Seq())
		}
		if err := s.CheckInvariants(); err != nil {
			t.Fatalf("step %d %q: %v", i, st.name, err)
		}
	}
	return recs
}

// digest is a hash of the shard's snapshot, which is deterministic.
func digest(t testing.TB, s *Shard) [32]byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.Snapshot(&b); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return sha256.Sum256(b.Bytes())
}

func views(s *Shard) map[string]AccountView {
	m := map[string]AccountView{}
	s.Accounts(func(v AccountView) bool { m[v.Key] = v; return true })
	return m
}

// assertSame fails unless a and b hold the same state.
func assertSame(t testing.TB, what string, a, b *Shard) {
	t.Helper()
	if a.Seq() != b.Seq() {
		t.Fatalf("%s: seq %d vs %d", what, a.Seq(), b.Seq())
	}
	va, vb := views(a), views(b)
	if len(va) != len(vb) {
		t.Fatalf("%s: %d accounts vs %d", what, len(va), len(vb))
	}
	for k, v := range va {
		if vb[k] != v {
			t.Fatalf("%s: account %s:\n live   %+v\n replay %+v", what, k, v, vb[k])
		}
	}
	if digest(t, a) != digest(t, b) {
		t.Fatalf("%s: state digests differ", what)
	}
}

// replay applies recs to a fresh shard with cfg and checks it matches s.
func replay(t testing.TB, s *Shard, cfg *Config, recs [][]byte) *Shard {
	t.Helper()
	r := NewShard(s.ID(), cfg)
	for i, b := range recs {
		var rec Record
		if err := DecodeRecord(b, &rec); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if err := r.Apply(&rec); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := r.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "replay", s, r)
	return r
}
