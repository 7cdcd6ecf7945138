package store_test

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
	"scenepay/settlement/store/storetest"
)

// sqliteHandoffRows is the size of the batches the gateway's handoff
// seals for the embedded store under load.
const sqliteHandoffRows = 2_000

// BenchmarkIngestSQLiteHandoff is the embedded store's ingest cost per
// row for handoff-sized batches, in three shapes: "plain" (new rows, no
// legs), "legs" (new rows, every fourth purchase with a market fee leg)
// and "recut" (every batch re-covers the second half of the previous one,
// so half of its rows are compared with the stored ones and skipped).
// Besides the elapsed time per row (which includes waiting for fsync at
// each commit), cpu-ns/row is the process's user and system CPU time per
// row. Figures are reported, never asserted.
func BenchmarkIngestSQLiteHandoff(b *testing.B) {
	withLegs := func(bt *handoff.Batch) *handoff.Batch {
		for j := range bt.Rows {
			if r := &bt.Rows[j]; j%4 == 0 && r.Op == handoff.OpPurchase {
				r.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-1", Amount: 2}}
			}
		}
		return bt
	}
	for _, c := range []struct {
		name   string
		step   uint64 // first LSN of batch i is i*step+1
		legs   bool
		seeded bool // a first half batch is stored before the timer starts
	}{
		{"plain", sqliteHandoffRows, false, false},
		{"legs", sqliteHandoffRows, true, false},
		{"recut", sqliteHandoffRows / 2, true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := func(first uint64, n int) *handoff.Batch {
				bt := benchBatch("gw-bench", first, n, 100, storetest.Day)
				if c.legs {
					withLegs(bt)
				}
				return bt
			}
			wantInserted, wantSkipped := sqliteHandoffRows, 0
			if c.seeded {
				if _, err := s.Ingest(ctx, batch(1, sqliteHandoffRows/2)); err != nil {
					b.Fatal(err)
				}
				wantInserted, wantSkipped = sqliteHandoffRows/2, sqliteHandoffRows/2
			}
			batches := make([]*handoff.Batch, b.N)
			for i := range batches {
				batches[i] = batch(uint64(i)*c.step+1, sqliteHandoffRows)
			}
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := s.Ingest(ctx, batches[i])
				if err != nil || res.Inserted != wantInserted || res.Skipped != wantSkipped {
					b.Fatalf("Ingest = %+v, %v", res, err)
				}
			}
			b.StopTimer()
			cpu := processCPU(b) - cpu0
			rows := float64(b.N * sqliteHandoffRows)
			b.ReportMetric(float64(cpu.Nanoseconds())/rows, "cpu-ns/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
			b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
