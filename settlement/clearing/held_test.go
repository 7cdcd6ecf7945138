package clearing

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"scenepay/settlement/handoff"
)

// TestHeldGaugesAndSyncPrune: each pass sets the held e-CNY receipt
// gauges (count, fen, age of the oldest) and deletes the wallet syncs
// that lie before the oldest window not settled.
func TestHeldGaugesAndSyncPrune(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s, err := open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cl, err := New(Config{Store: s, Grace: 10 * time.Minute, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		gauges := func(receipts, fen, age float64, pruned float64) {
			t.Helper()
			for _, g := range []struct {
				name      string
				got, want float64
			}{{"receipts", testutil.ToFloat64(cl.m.heldReceipts), receipts}, {"fen", testutil.ToFloat64(cl.m.heldFen), fen},
				{"oldest seconds", testutil.ToFloat64(cl.m.heldOldest), age}, {"syncs pruned", testutil.ToFloat64(cl.m.syncsPruned), pruned}} {
				if g.got != g.want {
					t.Errorf("held %s = %v, want %v", g.name, g.got, g.want)
				}
			}
		}
		ingest := func(b *handoff.Batch) {
			t.Helper()
			b.ID = handoff.BatchID(b.Source, b.FirstLSN, b.LastLSN)
			if _, err := s.Ingest(ctx, b); err != nil {
				t.Fatalf("ingest %s: %v", b.ID, err)
			}
		}
		paid := sh(2026, 3, 1, 10, 0, 0, 0)
		receipt := handoff.Txn{Source: "gw-1", LSN: 1, At: paid.UTC(), Merchant: "STALL-1", Terminal: "T-1", Scene: "stall",
			Op: "purchase", InstKind: "ecny", Account: "w-1", Amount: 250, Auth: "A", Txn: 1, Unsynced: true}
		// w-1 pays offline; w-2 tops up (a sync no receipt needs).
		ingest(&handoff.Batch{Source: "gw-1", FirstLSN: 1, LastLSN: 2, Watermark: sh(2026, 3, 1, 23, 30, 0, 0).UTC(),
			Rows: []handoff.Txn{receipt}, Syncs: []handoff.Sync{{Account: "w-2", At: sh(2026, 3, 1, 11, 0, 0, 0).UTC(), LSN: 2}}})
		now := sh(2026, 3, 1, 23, 45, 0, 0)
		if res, err := cl.Tick(ctx, now); err != nil || len(res.Settled) != 1 {
			t.Fatalf("first day: %+v, %v", res, err)
		}
		gauges(1, 250, now.Sub(paid).Seconds(), 1)
		// w-1 syncs the next day; that day's window releases the receipt.
		ingest(&handoff.Batch{Source: "gw-1", FirstLSN: 3, LastLSN: 3, Watermark: sh(2026, 3, 2, 23, 30, 0, 0).UTC(),
			Syncs: []handoff.Sync{{Account: "w-1", At: sh(2026, 3, 2, 9, 0, 0, 0).UTC(), LSN: 3}}})
		mid := sh(2026, 3, 2, 12, 0, 0, 0)
		if _, err := cl.Tick(ctx, mid); err != nil {
			t.Fatal(err)
		}
		gauges(1, 250, mid.Sub(paid).Seconds(), 1) // synced, not paid yet; its sync is in the open window
		if res, err := cl.Tick(ctx, sh(2026, 3, 2, 23, 45, 0, 0)); err != nil || len(res.Settled) != 1 {
			t.Fatalf("second day: %+v, %v", res, err)
		}
		gauges(0, 0, 0, 2)
		if st, err := s.Settlement(ctx, "2026-03-02", "STALL-1"); err != nil || st.Released != 250 || st.Payable != 250 {
			t.Fatalf("second day's settlement: %+v, %v", st, err)
		}
	})
}
