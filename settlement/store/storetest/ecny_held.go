package storetest

// Contract cases for what the scheduler reads and trims of the e-CNY
// receipts on every pass: the held receipts (HeldUnsynced) and the wallet
// syncs that can no longer mark a receipt (PruneSyncs).

import (
	"context"
	"errors"
	"testing"
	"time"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

func held(t *testing.T, ctx context.Context, s store.Store) store.HeldSummary {
	t.Helper()
	h, err := s.HeldUnsynced(ctx)
	if err != nil {
		t.Fatalf("HeldUnsynced: %v", err)
	}
	return h
}

func settleOrFail(t *testing.T, ctx context.Context, s store.Store, w store.Window, ss []store.Settlement) {
	t.Helper()
	if _, err := s.CloseWindow(ctx, w.ID, w.CutOff); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.SettleWindow(ctx, w.ID, w.CutOff, ss); err != nil || !ok {
		t.Fatalf("settle %s: %v, %v", w.ID, ok, err)
	}
}

func testHeldSummary(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	if h := held(t, ctx, s); h != (store.HeldSummary{}) {
		t.Fatalf("empty store holds %+v", h)
	}
	b := MakeBatch("gw-1", 1, 3, Offline("gw-1", 1, "w-1", 1500), Offline("gw-1", 2, "w-2", 700))
	b.Syncs = []handoff.Sync{{Account: "w-2", At: Day.Add(3 * time.Second), LSN: 3}}
	ingest(t, ctx, s, b)
	for _, w := range []store.Window{TestWindow, nextWindow} {
		if _, _, err := s.OpenWindow(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing is held before its window is settled.
	if h := held(t, ctx, s); h != (store.HeldSummary{}) {
		t.Fatalf("open windows hold %+v", h)
	}
	settleOrFail(t, ctx, s, TestWindow, []store.Settlement{{Window: TestWindow.ID, Merchant: "STALL-M",
		Totals: store.Totals{Count: 2, Gross: 2200, Payments: 2, Net: 2200}, Held: 1500, Payable: 700}})
	first := Day.Add(time.Second)
	if h := held(t, ctx, s); h.Receipts != 1 || h.Amount != 1500 || !h.Oldest.Equal(first) {
		t.Fatalf("after the first window: %+v, want w-1's 1500 at %v", h, first)
	}
	// The next day: w-3 pays offline and w-1 syncs. w-1's receipt stays
	// held (synced, not paid) until the next window pays it; w-3's is not
	// held before its window is settled.
	r4 := Offline("gw-1", 4, "w-3", 400)
	r4.At = nextWindow.Start.Add(time.Hour)
	next := MakeBatch("gw-1", 4, 5, r4)
	next.Syncs = []handoff.Sync{{Account: "w-1", At: nextWindow.Start.Add(2 * time.Hour), LSN: 5}}
	next.Watermark = next.Syncs[0].At
	ingest(t, ctx, s, next)
	if h := held(t, ctx, s); h.Receipts != 1 || h.Amount != 1500 || !h.Oldest.Equal(first) {
		t.Fatalf("after w-1's sync, before the next window: %+v", h)
	}
	settleOrFail(t, ctx, s, nextWindow, []store.Settlement{{Window: nextWindow.ID, Merchant: "STALL-M",
		Totals: store.Totals{Count: 1, Gross: 400, Payments: 1, Net: 400}, Held: 400, Released: 1500, Payable: 1500}})
	if h := held(t, ctx, s); h.Receipts != 1 || h.Amount != 400 || !h.Oldest.Equal(r4.At) {
		t.Fatalf("after the next window: %+v, want w-3's 400 at %v", h, r4.At)
	}
}

func testSyncsPruned(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	if _, err := s.PruneSyncs(ctx, 0); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("limit 0: %v, want ErrBadQuery", err)
	}
	prune := func(limit int, want int64) {
		t.Helper()
		if n, err := s.PruneSyncs(ctx, limit); err != nil || n != want {
			t.Fatalf("PruneSyncs(%d) = %d, %v, want %d", limit, n, err, want)
		}
	}
	// Two syncs in the first window, one in the next; no receipts yet.
	b := MakeBatch("gw-1", 1, 2)
	b.Syncs = []handoff.Sync{{Account: "w-1", At: Day.Add(time.Second), LSN: 1}, {Account: "w-2", At: Day.Add(2 * time.Second), LSN: 2}}
	ingest(t, ctx, s, b)
	wSync := nextWindow.Start.Add(2 * time.Hour)
	b = MakeBatch("gw-1", 3, 3)
	b.Syncs = []handoff.Sync{{Account: "w-3", At: wSync, LSN: 3}}
	b.Watermark = wSync
	ingest(t, ctx, s, b)
	// No window, or none settled: a receipt may still come before any
	// sync, so none is pruned.
	prune(100, 0)
	for _, w := range []store.Window{TestWindow, nextWindow} {
		if _, _, err := s.OpenWindow(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	prune(100, 0)
	// The first window settled: its syncs can mark only receipts of a
	// settled window, which can no longer come. At most limit per call.
	settleOrFail(t, ctx, s, TestWindow, nil)
	prune(1, 1)
	prune(100, 1)
	prune(100, 0)
	// w-3's sync is kept although w-3 has no receipt stored: another
	// gateway's receipt of the open window, handed off late, is synced by it.
	late := Offline("gw-2", 1, "w-3", 250)
	late.At = nextWindow.Start.Add(time.Hour)
	lb := MakeBatch("gw-2", 1, 1, late)
	lb.Watermark = wSync
	ingest(t, ctx, s, lb)
	got, err := s.Unsynced(ctx, nextWindow)
	if err != nil || len(got) != 1 || got[0].Source != "gw-2" || !got[0].SyncedAt.Equal(wSync) {
		t.Fatalf("late receipt after the prune: %+v, %v; want synced at %v", got, err, wSync)
	}
	// Every window settled: nothing is known about what may still come.
	settleOrFail(t, ctx, s, nextWindow, []store.Settlement{{Window: nextWindow.ID, Merchant: "STALL-M",
		Totals: store.Totals{Count: 1, Gross: 250, Payments: 1, Net: 250}, Payable: 250}})
	prune(100, 0)
}
