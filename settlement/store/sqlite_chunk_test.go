package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scenepay/settlement/handoff"
)

var chunkDay = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// chunkRow is a purchase of merchant M1 at LSN lsn; rows at even LSNs
// carry a market fee leg.
func chunkRow(lsn uint64) handoff.Txn {
	r := handoff.Txn{Source: "gw-1", LSN: lsn, At: chunkDay.Add(time.Duration(lsn) * time.Second), Merchant: "M1",
		Terminal: "STALL-1", Scene: handoff.SceneStall, Op: handoff.OpPurchase, InstKind: "county",
		Account: fmt.Sprintf("county:C-%d", lsn%7), Amount: 100 + int64(lsn), Auth: fmt.Sprint(lsn), Txn: lsn}
	if lsn%2 == 0 {
		r.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-1", Amount: int64(lsn%5) + 1}}
	}
	return r
}

// chunkBatch is the batch covering [first, last] with the rows of the LSNs
// keep accepts.
func chunkBatch(first, last uint64, keep func(lsn uint64) bool) *handoff.Batch {
	b := &handoff.Batch{ID: handoff.BatchID("gw-1", first, last), Source: "gw-1", FirstLSN: first, LastLSN: last,
		Watermark: chunkDay.Add(time.Duration(last) * time.Second)}
	for l := first; l <= last; l++ {
		if keep(l) {
			b.Rows = append(b.Rows, chunkRow(l))
		}
	}
	return b
}

// chunkSums are the row count, gross and market fee legs a store should
// hold for the rows of batches.
func chunkSums(batches ...*handoff.Batch) (count, gross, fees int64) {
	seen := map[uint64]bool{}
	for _, b := range batches {
		for i := range b.Rows {
			r := &b.Rows[i]
			if seen[r.LSN] {
				continue
			}
			seen[r.LSN] = true
			count, gross = count+1, gross+r.Amount
			for _, l := range r.Legs {
				fees += l.Amount
			}
		}
	}
	return count, gross, fees
}

func wantChunkStore(t *testing.T, s *SQLite, hw uint64, batches ...*handoff.Batch) {
	t.Helper()
	ctx := context.Background()
	count, gross, fees := chunkSums(batches...)
	tot, err := s.Totals(ctx, "M1", time.Time{}, time.Time{})
	if err != nil || tot.Count != count || tot.Gross != gross {
		t.Fatalf("Totals = %+v, %v; want %d rows, gross %d", tot, err, count, gross)
	}
	legs, err := s.Legs(ctx, Window{ID: "2026-03-01", Start: chunkDay, CutOff: chunkDay.Add(24 * time.Hour)})
	if err != nil || len(legs["M1"]) != 1 || legs["M1"][0].Amount != fees {
		t.Fatalf("Legs = %+v, %v; want market fees %d", legs, err, fees)
	}
	if got, err := s.HighWater(ctx, "gw-1"); err != nil || got != hw {
		t.Fatalf("HighWater = %d, %v; want %d", got, err, hw)
	}
}

// TestSQLiteIngestAcrossChunks re-cuts a batch over stored rows that lie
// on both sides of chunk boundaries and in the remainder's smaller chunks:
// the stored rows are skipped and counted, a stored row met with other
// content or other legs is refused wherever it lies (the first one in
// batch order is named) and leaves the store as it was, and the new rows
// and their legs are all written.
// openChunkStore opens an embedded store in a temporary directory, closed
// when the test ends.
func openChunkStore(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "settlement.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteIngestAcrossChunks(t *testing.T) {
	ctx := context.Background()
	s := openChunkStore(t)

	// Re-cut rows 1..n: three full chunks, then 8 + 2 + 1. Every third
	// LSN up to n-5 is stored first.
	n := uint64(3*sqliteChunk + 11)
	storedLast := n - 5
	stored := func(l uint64) bool { return l%3 == 0 }
	first := chunkBatch(1, storedLast, stored)
	if res, err := s.Ingest(ctx, first); err != nil || res.Inserted != len(first.Rows) {
		t.Fatalf("first ingest = %+v, %v", res, err)
	}
	wantChunkStore(t, s, storedLast, first)

	// Stored LSNs: the last of the first chunk with legs, the first of the
	// second chunk, the last in the remainder with legs.
	endFirst := uint64(sqliteChunk) - uint64(sqliteChunk)%6
	startSecond := uint64(sqliteChunk) + 3 - uint64(sqliteChunk)%3
	var inRemainder uint64
	for l := storedLast; l > 3*sqliteChunk; l-- {
		if l%6 == 0 {
			inRemainder = l
			break
		}
	}
	if inRemainder == 0 || startSecond > 2*sqliteChunk || endFirst == 0 {
		t.Fatalf("chunk layout: end of first %d, start of second %d, in remainder %d", endFirst, startSecond, inRemainder)
	}
	amount := func(r *handoff.Txn) { r.Amount++ }
	payee := func(r *handoff.Txn) { r.Legs[0].Payee = "MKT-2" }
	noLegs := func(r *handoff.Txn) { r.Legs = nil }
	type edit struct {
		lsn uint64
		fn  func(r *handoff.Txn)
	}
	for _, c := range []struct {
		name  string
		edits []edit
		want  string // the reason's end
	}{
		{"content at the end of the first chunk", []edit{{endFirst, amount}}, fmt.Sprintf("LSN %d was ingested with other content", endFirst)},
		{"content at the start of the second chunk", []edit{{startSecond, amount}}, fmt.Sprintf("LSN %d was ingested with other content", startSecond)},
		{"content in the remainder", []edit{{inRemainder, amount}}, fmt.Sprintf("LSN %d was ingested with other content", inRemainder)},
		{"legs at the end of the first chunk", []edit{{endFirst, noLegs}}, fmt.Sprintf("LSN %d was ingested with other legs", endFirst)},
		{"legs in the remainder", []edit{{inRemainder, payee}}, fmt.Sprintf("LSN %d was ingested with other legs", inRemainder)},
		{"first of two in batch order", []edit{{startSecond, amount}, {endFirst, payee}},
			fmt.Sprintf("LSN %d was ingested with other legs", endFirst)},
	} {
		b := chunkBatch(1, n, func(uint64) bool { return true })
		for _, e := range c.edits {
			if !stored(e.lsn) {
				t.Fatalf("%s: LSN %d is not stored", c.name, e.lsn)
			}
			e.fn(&b.Rows[e.lsn-1])
		}
		_, err := s.Ingest(ctx, b)
		if !errors.Is(err, ErrConflict) || !strings.HasSuffix(err.Error(), c.want) {
			t.Fatalf("%s: Ingest = %v, want ErrConflict ending %q", c.name, err, c.want)
		}
		wantChunkStore(t, s, storedLast, first)
	}

	// The re-cut with the stored rows as they are (and a new row of
	// its own content) goes through.
	recut := chunkBatch(1, n, func(uint64) bool { return true })
	recut.Rows[startSecond].Amount += 1000 // LSN startSecond+1: new
	res, err := s.Ingest(ctx, recut)
	if err != nil || res.Duplicate || res.Inserted != int(n)-len(first.Rows) || res.Skipped != len(first.Rows) {
		t.Fatalf("re-cut = %+v, %v; want %d inserted, %d skipped", res, err, int(n)-len(first.Rows), len(first.Rows))
	}
	wantChunkStore(t, s, n, first, recut)
	if res, err := s.Ingest(ctx, recut); err != nil || !res.Duplicate {
		t.Fatalf("re-sent re-cut = %+v, %v; want duplicate", res, err)
	}

	// New rows only, each with a leg: the legs fill full leg chunks too.
	next := chunkBatch(n+1, n+2*sqliteChunk+45, func(uint64) bool { return true })
	for i := range next.Rows {
		if r := &next.Rows[i]; len(r.Legs) == 0 {
			r.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-1", Amount: 3}}
		}
	}
	if res, err := s.Ingest(ctx, next); err != nil || res.Inserted != len(next.Rows) || res.Skipped != 0 {
		t.Fatalf("next = %+v, %v", res, err)
	}
	wantChunkStore(t, s, next.LastLSN, first, recut, next)
}

// TestChunkLen: the statements cover any count with full chunks and then
// the remainder's binary digits, each a cached size.
func TestChunkLen(t *testing.T) {
	for n := 1; n <= 3*sqliteChunk+7; n++ {
		left, steps := n, 0
		for left > 0 {
			k := chunkLen(left)
			if k < 1 || k > sqliteChunk || k&(k-1) != 0 || k > left {
				t.Fatalf("chunkLen(%d) = %d", left, k)
			}
			left -= k
			steps++
		}
		full := n / sqliteChunk
		if want := full + onesCount(n%sqliteChunk); steps != want {
			t.Fatalf("%d items in %d statements, want %d", n, steps, want)
		}
	}
}

func onesCount(x int) int {
	c := 0
	for ; x > 0; x &= x - 1 {
		c++
	}
	return c
}

// Under WithChunkPause, Ingest calls the pause once after each chunk it
// writes, with the time the chunk took.
func TestSQLiteIngestPausesBetweenChunks(t *testing.T) {
	ctx := context.Background()
	s := openChunkStore(t)
	n := uint64(2*sqliteChunk + 11) // chunks of 128, 128, 8, 2, 1
	var pauses []time.Duration
	pctx := WithChunkPause(ctx, func(took time.Duration) { pauses = append(pauses, took) })
	if res, err := s.Ingest(pctx, chunkBatch(1, n, func(uint64) bool { return true })); err != nil || res.Inserted != int(n) {
		t.Fatalf("Ingest = %+v, %v", res, err)
	}
	if len(pauses) != 5 {
		t.Fatalf("%d pauses, want one after each of 5 chunks", len(pauses))
	}
	for i, d := range pauses {
		if d <= 0 {
			t.Errorf("pause %d was told the chunk took %v", i, d)
		}
	}
}
