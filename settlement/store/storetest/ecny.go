package storetest

// Contract cases for e-CNY double-offline receipts (handoff.Txn.Unsynced)
// and wallet syncs (handoff.Batch.Syncs and rows that are syncs by
// themselves): written with their rows, synced by a later sync of the
// same wallet whatever the order of ingest, part of a batch's content for
// re-sent and re-cut batches, and marked paid by exactly one window.

import (
	"context"
	"errors"
	"testing"
	"time"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

var ecnyCases = []struct {
	name string
	fn   func(t *testing.T, ctx context.Context, open Opener, s store.Store)
}{
	{"UnsyncedSyncedByLaterSync", testUnsyncedSynced},
	{"UnsyncedResendAndRecut", testUnsyncedRecut},
	{"UnsyncedHeldAndReleased", testUnsyncedSettle},
	{"UnsyncedHeldSummary", testHeldSummary},
	{"SyncsPrunedOnceNothingCanCome", testSyncsPruned},
}

// Offline builds an e-CNY double-offline payment row of wallet to STALL-M.
func Offline(source string, lsn uint64, wallet string, amount int64) handoff.Txn {
	r := Row(source, lsn, "STALL-M", amount)
	r.Terminal, r.Scene, r.InstKind, r.Account, r.Unsynced = "STALL-1", handoff.SceneStall, "ecny", wallet, true
	return r
}

// nextWindow is the business day after TestWindow.
var nextWindow = store.Window{ID: "2026-03-02", Start: TestWindow.CutOff, CutOff: TestWindow.CutOff.Add(24 * time.Hour)}

// receipts returns window w's Unsynced answer keyed by LSN (one source).
func receipts(t *testing.T, ctx context.Context, s store.Store, w store.Window) map[uint64]store.UnsyncedReceipt {
	t.Helper()
	list, err := s.Unsynced(ctx, w)
	if err != nil {
		t.Fatalf("Unsynced: %v", err)
	}
	out := map[uint64]store.UnsyncedReceipt{}
	for i, x := range list {
		if i > 0 && x.At.Before(list[i-1].At) {
			t.Fatalf("Unsynced not ordered by time: %+v", list)
		}
		out[x.LSN] = x
	}
	return out
}

func testUnsyncedSynced(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 3, Offline("gw-1", 1, "w-1", 1500), Offline("gw-1", 2, "w-2", 700),
		Offline("gw-1", 3, "w-1", 300)))
	got := receipts(t, ctx, s, TestWindow)
	if len(got) != 3 || got[1].Merchant != "STALL-M" || got[1].Account != "w-1" || got[1].Amount != 1500 ||
		!got[1].At.Equal(Day.Add(time.Second)) || !got[1].SyncedAt.IsZero() || got[1].ReleasedWindow != "" {
		t.Fatalf("receipts after ingest: %+v", got)
	}
	// The rows themselves are ordinary purchases of the merchant.
	if tot, err := s.Totals(ctx, "STALL-M", time.Time{}, time.Time{}); err != nil || tot.Gross != 2500 || tot.Payments != 3 {
		t.Fatalf("Totals = %+v, %v", tot, err)
	}
	// w-1 syncs (a top-up: a Sync of the batch); w-2 does not.
	syncAt := Day.Add(5 * time.Second)
	b := MakeBatch("gw-1", 4, 6)
	b.Syncs = []handoff.Sync{{Account: "w-1", At: syncAt, LSN: 5}}
	ingest(t, ctx, s, b)
	if res := ingest(t, ctx, s, b); !res.Duplicate {
		t.Fatalf("re-sent batch = %+v, want duplicate", res)
	}
	got = receipts(t, ctx, s, TestWindow)
	if !got[1].SyncedAt.Equal(syncAt) || !got[3].SyncedAt.Equal(syncAt) || !got[2].SyncedAt.IsZero() {
		t.Fatalf("after w-1's sync: %+v", got)
	}
	// A later offline payment of w-1 is not synced by the earlier sync;
	// w-2's online stall purchase (a row) syncs w-2.
	online := Row("gw-1", 8, "STALL-M", 90)
	online.Terminal, online.Scene, online.InstKind, online.Account = "STALL-1", handoff.SceneStall, "ecny", "w-2"
	ingest(t, ctx, s, MakeBatch("gw-1", 7, 8, Offline("gw-1", 7, "w-1", 200), online))
	got = receipts(t, ctx, s, TestWindow)
	if !got[7].SyncedAt.IsZero() || !got[2].SyncedAt.Equal(online.At) || !got[1].SyncedAt.Equal(syncAt) {
		t.Fatalf("after w-2's online payment: %+v", got)
	}
	if _, ok := got[8]; ok {
		t.Fatal("an online payment is listed as a receipt")
	}
	// Another source's later sync ingested before the receipt: the receipt
	// is synced as it is written. An earlier sync does not count.
	early := MakeBatch("gw-2", 1, 2)
	early.Syncs = []handoff.Sync{{Account: "w-9", At: Day.Add(4 * time.Second), LSN: 1}, {Account: "w-9", At: Day.Add(100 * time.Second), LSN: 2}}
	early.Watermark = Day.Add(100 * time.Second)
	ingest(t, ctx, s, early)
	ingest(t, ctx, s, MakeBatch("gw-1", 9, 9, Offline("gw-1", 9, "w-9", 400)))
	got = receipts(t, ctx, s, TestWindow)
	if !got[9].SyncedAt.Equal(Day.Add(100 * time.Second)) {
		t.Fatalf("receipt after its wallet's later sync: %+v", got[9])
	}
}

func testUnsyncedRecut(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	b := MakeBatch("gw-1", 1, 3, Row("gw-1", 1, "STALL-M", 100), Offline("gw-1", 2, "w-1", 1500))
	b.Syncs = []handoff.Sync{{Account: "w-5", At: Day.Add(3 * time.Second), LSN: 3}}
	ingest(t, ctx, s, b)
	// The same batch id with another flag or other syncs is a conflict.
	other := MakeBatch("gw-1", 1, 3, Row("gw-1", 1, "STALL-M", 100), Offline("gw-1", 2, "w-1", 1500))
	if _, err := s.Ingest(ctx, other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("re-sent batch without its syncs: %v, want ErrConflict", err)
	}
	other.Syncs = b.Syncs
	other.Rows[1].Unsynced = false
	if _, err := s.Ingest(ctx, other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("re-sent batch without the flag: %v, want ErrConflict", err)
	}
	// A re-cut batch must agree on stored rows being receipts and on syncs.
	recut := func(edit func(b *handoff.Batch)) *handoff.Batch {
		r := MakeBatch("gw-1", 1, 4, Row("gw-1", 1, "STALL-M", 100), Offline("gw-1", 2, "w-1", 1500), Offline("gw-1", 4, "w-1", 50))
		r.Syncs = []handoff.Sync{{Account: "w-5", At: Day.Add(3 * time.Second), LSN: 3}}
		edit(r)
		return r
	}
	for name, edit := range map[string]func(b *handoff.Batch){
		"flag dropped": func(b *handoff.Batch) { b.Rows[1].Unsynced = false },
		"flag added": func(b *handoff.Batch) {
			b.Rows[0].InstKind, b.Rows[0].Account, b.Rows[0].Unsynced = "ecny", "w-1", true
		},
		"other sync time":  func(b *handoff.Batch) { b.Syncs[0].At = Day.Add(2 * time.Second) },
		"other receipt at": func(b *handoff.Batch) { b.Rows[1].Amount = 1400 },
	} {
		if _, err := s.Ingest(ctx, recut(edit)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("re-cut batch, %s: %v, want ErrConflict", name, err)
		}
	}
	if res := ingest(t, ctx, s, recut(func(*handoff.Batch) {})); res.Inserted != 1 || res.Skipped != 2 {
		t.Fatalf("re-cut batch = %+v, want 1 inserted, 2 skipped", res)
	}
	got := receipts(t, ctx, s, TestWindow)
	if len(got) != 2 || got[2].Amount != 1500 || got[4].Amount != 50 {
		t.Fatalf("receipts after the re-cut: %+v", got)
	}
}

func testUnsyncedSettle(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	b := MakeBatch("gw-1", 1, 3, Offline("gw-1", 1, "w-1", 1500), Offline("gw-1", 2, "w-2", 700))
	b.Syncs = []handoff.Sync{{Account: "w-2", At: Day.Add(3 * time.Second), LSN: 3}}
	ingest(t, ctx, s, b)
	for _, w := range []store.Window{TestWindow, nextWindow} {
		if _, _, err := s.OpenWindow(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CloseWindow(ctx, TestWindow.ID, TestWindow.CutOff); err != nil {
		t.Fatal(err)
	}
	settlement := func(window string, held, released int64) []store.Settlement {
		return []store.Settlement{{Window: window, Merchant: "STALL-M", Totals: store.Totals{Count: 2, Gross: 2200, Payments: 2, Net: 2200},
			Held: held, Released: released, Payable: 2200 - held + released}}
	}
	// Settlements that do not hold what is unsynced are refused, and the
	// window stays CLOSED with nothing marked.
	for _, held := range []int64{0, 2200} {
		if _, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, settlement(TestWindow.ID, held, 0)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("settle holding %d: %v, want ErrConflict", held, err)
		}
	}
	if w, err := s.Window(ctx, TestWindow.ID); err != nil || w.State != store.WindowClosed {
		t.Fatalf("window after refused settlements: %+v, %v", w, err)
	}
	if got := receipts(t, ctx, s, TestWindow); got[2].ReleasedWindow != "" {
		t.Fatalf("a refused settlement marked a receipt: %+v", got)
	}
	if _, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, settlement(TestWindow.ID, -1, 0)); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("negative held: %v, want ErrBadQuery", err)
	}
	if ok, err := s.SettleWindow(ctx, TestWindow.ID, TestWindow.CutOff, settlement(TestWindow.ID, 1500, 0)); err != nil || !ok {
		t.Fatalf("settle: %v, %v", ok, err)
	}
	st, err := s.Settlement(ctx, TestWindow.ID, "STALL-M")
	if err != nil || st.Held != 1500 || st.Released != 0 || st.Payable != 700 {
		t.Fatalf("settlement read back: %+v, %v", st, err)
	}
	got := receipts(t, ctx, s, TestWindow)
	if got[1].ReleasedWindow != "" || got[2].ReleasedWindow != TestWindow.ID {
		t.Fatalf("receipts after the first window: %+v", got)
	}
	// Nothing to release while w-1 has not synced.
	if got := receipts(t, ctx, s, nextWindow); len(got) != 0 {
		t.Fatalf("next window before the sync: %+v", got)
	}
	// w-1 syncs the next day: the next window releases its receipt, once.
	sync := MakeBatch("gw-1", 4, 4)
	sync.Syncs = []handoff.Sync{{Account: "w-1", At: nextWindow.Start.Add(10 * time.Hour), LSN: 4}}
	sync.Watermark = sync.Syncs[0].At
	ingest(t, ctx, s, sync)
	got = receipts(t, ctx, s, nextWindow)
	if len(got) != 1 || !got[1].SyncedAt.Equal(sync.Syncs[0].At) || got[1].ReleasedWindow != "" {
		t.Fatalf("next window after the sync: %+v", got)
	}
	if _, err := s.CloseWindow(ctx, nextWindow.ID, nextWindow.CutOff); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SettleWindow(ctx, nextWindow.ID, nextWindow.CutOff, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("settle without releasing: %v, want ErrConflict", err)
	}
	rel := []store.Settlement{{Window: nextWindow.ID, Merchant: "STALL-M", Released: 1500, Payable: 1500}}
	if ok, err := s.SettleWindow(ctx, nextWindow.ID, nextWindow.CutOff, rel); err != nil || !ok {
		t.Fatalf("settle the next window: %v, %v", ok, err)
	}
	if st, err := s.Settlement(ctx, nextWindow.ID, "STALL-M"); err != nil || st.Released != 1500 || st.Held != 0 || st.Payable != 1500 {
		t.Fatalf("next window's settlement: %+v, %v", st, err)
	}
	// Each window still lists what it held and released; a later window
	// lists nothing.
	if got := receipts(t, ctx, s, nextWindow); len(got) != 1 || got[1].ReleasedWindow != nextWindow.ID {
		t.Fatalf("next window after settling: %+v", got)
	}
	later := store.Window{ID: "2026-03-03", Start: nextWindow.CutOff, CutOff: nextWindow.CutOff.Add(24 * time.Hour)}
	if got := receipts(t, ctx, s, later); len(got) != 0 {
		t.Fatalf("a later window lists %+v", got)
	}
}
