package idem

import (
	"fmt"
	"testing"

	"scenepay/terminals"
)

// benchStore holds terms terminals with per stored replies of 300 bytes
// each (the benchmark fleet's idempotency state at its window).
func benchStore(b *testing.B, terms, per int) *Store {
	s := New(DefaultConfig())
	reply := make([]byte, 300)
	for i := 0; i < terms; i++ {
		tid := fmt.Sprintf("T%07d", i)
		for k := 1; k <= per; k++ {
			r := s.Begin(Request{TID: tid, Txn: uint64(k), Hash: uint64(k)}, func(bool) bool { return true })
			if r.Verdict != Admitted {
				b.Fatal(r.Verdict)
			}
			s.Complete(tid, uint64(k), uint64(k), terminals.ClassApproved, reply)
		}
	}
	return s
}

// BenchmarkSnapshotEncode: encoding 200 terminals x 1024 stored replies,
// what a snapshot's pause took before the store was frozen instead.
func BenchmarkSnapshotEncode(b *testing.B) {
	s := benchStore(b, 200, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.SetBytes(int64(len(s.AppendSnapshot(nil))))
	}
}

// BenchmarkFreeze: freezing the same store, what the pause takes now.
func BenchmarkFreeze(b *testing.B) {
	s := benchStore(b, 200, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Freeze()
	}
}
