package idem

import (
	"bytes"
	"fmt"
	"testing"

	"scenepay/terminals"
)

func admit(t *testing.T, s *Store, r Request) Result {
	t.Helper()
	return s.Begin(r, func(bool) bool { return true })
}

func TestBeginVerdicts(t *testing.T) {
	s := New(Config{Window: 8, TerminalsMax: 10})
	if got := admit(t, s, Request{TID: "T1", Txn: 1, Hash: 11}).Verdict; got != Admitted {
		t.Fatalf("first: %v", got)
	}
	// A copy while pending waits; different content conflicts.
	if got := admit(t, s, Request{TID: "T1", Txn: 1, Hash: 11}).Verdict; got != Waiting {
		t.Fatalf("pending dup: %v", got)
	}
	if got := admit(t, s, Request{TID: "T1", Txn: 1, Hash: 12}).Verdict; got != Conflict {
		t.Fatalf("pending conflict: %v", got)
	}
	if w := s.Complete("T1", 1, 11, terminals.ClassApproved, []byte("r1")); w != 1 {
		t.Fatalf("waiters = %d, want 1", w)
	}
	r := admit(t, s, Request{TID: "T1", Txn: 1, Hash: 11})
	if r.Verdict != Duplicate || !bytes.Equal(r.Reply, []byte("r1")) {
		t.Fatalf("dup: %+v", r)
	}
	if got := admit(t, s, Request{TID: "T1", Txn: 1, Hash: 99}).Verdict; got != Conflict {
		t.Fatalf("done conflict: %v", got)
	}
	// Another terminal's txn 1 is independent.
	if got := admit(t, s, Request{TID: "T2", Txn: 1, Hash: 99}).Verdict; got != Admitted {
		t.Fatalf("other terminal: %v", got)
	}
}

func TestDeclineDoesNotBurnTheID(t *testing.T) {
	s := New(Config{Window: 8, TerminalsMax: 10})
	admit(t, s, Request{TID: "T", Txn: 5, Hash: 1})
	s.Complete("T", 5, 1, terminals.ClassDecline, []byte("declined"))
	if r := admit(t, s, Request{TID: "T", Txn: 5, Hash: 1}); r.Verdict != Duplicate || string(r.Reply) != "declined" {
		t.Fatalf("same declined request: %+v", r)
	}
	if r := admit(t, s, Request{TID: "T", Txn: 5, Hash: 2}); r.Verdict != Admitted {
		t.Fatalf("corrected retry: %+v", r)
	}
	s.Complete("T", 5, 2, terminals.ClassApproved, []byte("approved"))
	if r := admit(t, s, Request{TID: "T", Txn: 5, Hash: 1}); r.Verdict != Conflict {
		t.Fatalf("after approval the old content conflicts: %+v", r)
	}
}

func TestWindowRefusesOldIDs(t *testing.T) {
	s := New(Config{Window: 4, TerminalsMax: 10})
	for txn := uint64(1); txn <= 10; txn++ {
		admit(t, s, Request{TID: "T", Txn: txn, Hash: txn})
		s.Complete("T", txn, txn, terminals.ClassApproved, []byte(fmt.Sprint(txn)))
	}
	for _, c := range []struct {
		txn  uint64
		want Verdict
	}{{6, TooOld}, {7, Duplicate}, {10, Duplicate}, {1, TooOld}, {11, Admitted}, {7, TooOld}} {
		if got := admit(t, s, Request{TID: "T", Txn: c.txn, Hash: c.txn}).Verdict; got != c.want {
			t.Errorf("txn %d: %v, want %v", c.txn, got, c.want)
		}
	}
	// A jump far ahead evicts everything below the new window.
	admit(t, s, Request{TID: "T", Txn: 1_000_000, Hash: 1})
	if _, found := s.Lookup("T", 10); found {
		t.Fatal("entry 10 survived a window jump")
	}
}

func TestReversalBeforeOriginal(t *testing.T) {
	s := New(Config{Window: 16, TerminalsMax: 10})
	r := admit(t, s, Request{TID: "T", Txn: 3, Hash: 7, Reversal: true, Orig: 2})
	if r.Verdict != Admitted || !r.Tombstoned {
		t.Fatalf("reversal: %+v", r)
	}
	if got := admit(t, s, Request{TID: "T", Txn: 2, Hash: 1}).Verdict; got != Reversed {
		t.Fatalf("late original: %v", got)
	}
	// A reversal of a known original places no tombstone.
	admit(t, s, Request{TID: "T", Txn: 4, Hash: 1})
	if r := admit(t, s, Request{TID: "T", Txn: 5, Hash: 9, Reversal: true, Orig: 4}); r.Tombstoned {
		t.Fatal("tombstone over a known original")
	}
}

func TestBusyUndoesAdmission(t *testing.T) {
	s := New(Config{Window: 16, TerminalsMax: 10})
	r := s.Begin(Request{TID: "T", Txn: 3, Hash: 7, Reversal: true, Orig: 2}, func(bool) bool { return false })
	if r.Verdict != Busy {
		t.Fatalf("%+v", r)
	}
	if _, found := s.Lookup("T", 2); found {
		t.Fatal("tombstone kept after busy")
	}
	if got := admit(t, s, Request{TID: "T", Txn: 3, Hash: 7}).Verdict; got != Admitted {
		t.Fatalf("retry after busy: %v", got)
	}
	// Busy on a corrected retry keeps the stored decline.
	s.Complete("T", 3, 7, terminals.ClassDecline, []byte("d"))
	s.Begin(Request{TID: "T", Txn: 3, Hash: 8}, func(bool) bool { return false })
	if r := admit(t, s, Request{TID: "T", Txn: 3, Hash: 7}); r.Verdict != Duplicate {
		t.Fatalf("decline lost after busy: %+v", r)
	}
}

func TestTerminalsBound(t *testing.T) {
	s := New(Config{Window: 4, TerminalsMax: 2})
	admit(t, s, Request{TID: "A", Txn: 1})
	admit(t, s, Request{TID: "B", Txn: 1})
	if got := admit(t, s, Request{TID: "C", Txn: 1}).Verdict; got != Full {
		t.Fatalf("third terminal: %v", got)
	}
}

func TestSnapshotRoundTripAndRestore(t *testing.T) {
	s := New(Config{Window: 8, TerminalsMax: 100})
	for i, tid := range []string{"B", "A", "C"} {
		for txn := uint64(1); txn <= 12; txn++ {
			class := terminals.ClassApproved
			if txn%3 == 0 {
				class = terminals.ClassDecline
			}
			admit(t, s, Request{TID: tid, Txn: txn, Hash: txn * uint64(i+1)})
			s.Complete(tid, txn, txn*uint64(i+1), class, []byte(fmt.Sprintf("%s-%d", tid, txn)))
		}
	}
	admit(t, s, Request{TID: "A", Txn: 14, Hash: 1, Reversal: true, Orig: 13})
	s.Complete("A", 14, 1, terminals.ClassApproved, []byte("rev"))
	admit(t, s, Request{TID: "A", Txn: 15, Hash: 5}) // pending: not in the snapshot
	snap := s.AppendSnapshot(nil)

	u := New(Config{Window: 8, TerminalsMax: 100})
	rest, err := u.RestoreSnapshot(append(snap, 0xAB))
	if err != nil || len(rest) != 1 || rest[0] != 0xAB {
		t.Fatalf("restore: %v rest=%x", err, rest)
	}
	if again := u.AppendSnapshot(nil); !bytes.Equal(again, snap) {
		t.Fatal("snapshot of the restored store differs")
	}
	if r := admit(t, u, Request{TID: "C", Txn: 12, Hash: 36}); r.Verdict != Duplicate || string(r.Reply) != "C-12" {
		t.Fatalf("restored duplicate: %+v", r)
	}
	if got := admit(t, u, Request{TID: "A", Txn: 13, Hash: 3}).Verdict; got != Reversed {
		t.Fatalf("restored tombstone: %v", got)
	}
	if got := admit(t, u, Request{TID: "A", Txn: 15, Hash: 5}).Verdict; got != Admitted {
		t.Fatalf("pending entry leaked into the snapshot: %v", got)
	}
	for cut := 0; cut < len(snap); cut += 7 {
		if _, err := New(Config{Window: 8, TerminalsMax: 100}).RestoreSnapshot(snap[:cut]); err == nil && cut < len(snap)-1 {
			// A prefix may happen to decode only if it ends exactly at a
			// terminal boundary with a smaller count; the count is first,
			// so any strict prefix must fail.
			t.Fatalf("truncated snapshot (%d of %d bytes) restored without error", cut, len(snap))
		}
	}
}

// A frozen store is the state at Freeze: completions, corrected retries,
// tombstones, window evictions and new terminals after it do not reach its
// encoding, and WriteTo (in chunks) writes what AppendTo appends.
func TestFrozenIsThePastState(t *testing.T) {
	s := New(Config{Window: 8, TerminalsMax: 100})
	reply := bytes.Repeat([]byte("r"), 900) // enough terminals x entries to flush WriteTo several times
	for k := 0; k < 60; k++ {
		tid := fmt.Sprintf("T%02d", k)
		for txn := uint64(1); txn <= 8; txn++ {
			class := terminals.ClassApproved
			if txn == 8 {
				class = terminals.ClassDecline
			}
			admit(t, s, Request{TID: tid, Txn: txn, Hash: txn})
			s.Complete(tid, txn, txn, class, append([]byte(tid), reply...))
		}
	}
	admit(t, s, Request{TID: "T00", Txn: 9, Hash: 9}) // pending at Freeze
	want := s.AppendSnapshot(nil)
	f := s.Freeze()

	s.Complete("T00", 9, 9, terminals.ClassApproved, []byte("late"))
	admit(t, s, Request{TID: "T01", Txn: 8, Hash: 80}) // corrected retry of a decline
	s.Complete("T01", 8, 80, terminals.ClassApproved, []byte("corrected"))
	admit(t, s, Request{TID: "T02", Txn: 30, Hash: 1, Reversal: true, Orig: 25}) // evicts all of T02's entries
	admit(t, s, Request{TID: "new", Txn: 1, Hash: 1})
	s.Complete("new", 1, 1, terminals.ClassApproved, []byte("n"))
	if bytes.Equal(s.AppendSnapshot(nil), want) {
		t.Fatal("the changes after Freeze changed nothing: the test proves nothing")
	}

	if got := f.AppendTo(nil); !bytes.Equal(got, want) {
		t.Fatalf("frozen encoding (%d bytes) differs from the state at Freeze (%d bytes)", len(got), len(want))
	}
	var w chunkWriter
	n, err := f.WriteTo(&w)
	if err != nil || n != int64(len(want)) || !bytes.Equal(w.buf.Bytes(), want) {
		t.Fatalf("WriteTo: %d bytes, err %v, equal %v (want %d bytes)", n, err, bytes.Equal(w.buf.Bytes(), want), len(want))
	}
	if w.writes < 2 {
		t.Fatalf("WriteTo wrote in %d calls: the chunking was not exercised", w.writes)
	}
	var empty chunkWriter
	if n, err := New(Config{}).Freeze().WriteTo(&empty); err != nil || n != 1 || !bytes.Equal(empty.buf.Bytes(), []byte{0}) {
		t.Fatalf("empty store: %d bytes %x, %v", n, empty.buf.Bytes(), err)
	}
}

type chunkWriter struct {
	buf    bytes.Buffer
	writes int
}

func (c *chunkWriter) Write(p []byte) (int, error) { c.writes++; return c.buf.Write(p) }

func TestRestoreReplacesDeclineWithCorrection(t *testing.T) {
	s := New(Config{Window: 8, TerminalsMax: 10})
	if err := s.Restore("T", 2, 1, terminals.ClassDecline, []byte("d"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore("T", 2, 2, terminals.ClassApproved, []byte("a"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore("T", 4, 3, terminals.ClassApproved, []byte("rev"), 3); err != nil {
		t.Fatal(err)
	}
	if r := admit(t, s, Request{TID: "T", Txn: 2, Hash: 2}); r.Verdict != Duplicate || string(r.Reply) != "a" {
		t.Fatalf("%+v", r)
	}
	if got := admit(t, s, Request{TID: "T", Txn: 3, Hash: 3}).Verdict; got != Reversed {
		t.Fatalf("tombstone from restore: %v", got)
	}
}

func FuzzRestoreSnapshot(f *testing.F) {
	s := New(Config{Window: 8, TerminalsMax: 100})
	admit(&testing.T{}, s, Request{TID: "A", Txn: 1, Hash: 1})
	s.Complete("A", 1, 1, terminals.ClassApproved, []byte("x"))
	f.Add(s.AppendSnapshot(nil))
	f.Add([]byte{1, 1, 'A', 5, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		u := New(Config{Window: 8, TerminalsMax: 100})
		if _, err := u.RestoreSnapshot(b); err != nil {
			return
		}
		u.AppendSnapshot(nil)
	})
}

func TestStaleDuplicateStillAnswered(t *testing.T) {
	s := New(Config{Window: 8, TerminalsMax: 10})
	admit(t, s, Request{TID: "T", Txn: 1, Hash: 1})
	s.Complete("T", 1, 1, terminals.ClassApproved, []byte("ok"))
	if r := admit(t, s, Request{TID: "T", Txn: 1, Hash: 1, Stale: true}); r.Verdict != Duplicate {
		t.Fatalf("stale duplicate: %+v", r)
	}
	if r := admit(t, s, Request{TID: "T", Txn: 2, Hash: 2, Stale: true}); r.Verdict != Stale {
		t.Fatalf("stale new request: %+v", r)
	}
	if r := admit(t, s, Request{TID: "T", Txn: 2, Hash: 2}); r.Verdict != Admitted {
		t.Fatalf("fresh retry after stale: %+v", r)
	}
}
