package storetest

// Contract cases for MoveRecent: PostgreSQL ingests into an unindexed
// recent part and moves rows into the indexed part later; SQLite has one
// part and moves nothing. Either way a move changes no answer, and exactly
// once holds for batches that meet moved rows, unmoved rows or both.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

var recentCases = []struct {
	name string
	fn   func(t *testing.T, ctx context.Context, open Opener, s store.Store)
}{
	{"ReingestAfterMove", testReingestAfterMove},
	{"RecutStraddlesMovedAndUnmoved", testRecutStraddles},
	{"ConflictFoundInBothParts", testConflictBothParts},
	{"MoveBeforeAndKeysetAcrossParts", testMoveBefore},
	{"MoveWhileIngesting", testMoveConcurrent},
	{"LegsAcrossMoves", testLegsAcrossMoves},
	{"FirstTxnAtAcrossMoves", testFirstTxnAcrossMoves},
}

func wantFirst(t *testing.T, ctx context.Context, s store.Store, want time.Time) {
	t.Helper()
	first, ok, err := s.FirstTxnAt(ctx)
	if err != nil || ok != !want.IsZero() || !first.Equal(want) {
		t.Fatalf("FirstTxnAt = %v, %v, %v; want %v", first, ok, err, want)
	}
}

// testFirstTxnAcrossMoves: FirstTxnAt is the earliest row whichever part
// holds it: on an empty store none, then rows only moved, rows earlier
// than every moved one still waiting, a move of part of them, and after a
// reopen.
func testFirstTxnAcrossMoves(t *testing.T, ctx context.Context, open Opener, s store.Store) {
	wantFirst(t, ctx, s, time.Time{})
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 20, Rows("gw-1", 10, 20, "M1")...))
	wantFirst(t, ctx, s, Day.Add(10*time.Second))
	move(t, ctx, s, time.Time{})
	wantFirst(t, ctx, s, Day.Add(10*time.Second))
	// A later move of later rows leaves the earliest alone.
	ingest(t, ctx, s, MakeBatch("gw-1", 21, 30, Rows("gw-1", 21, 30, "M1")...))
	move(t, ctx, s, time.Time{})
	wantFirst(t, ctx, s, Day.Add(10*time.Second))
	// Earlier rows of another source wait in the recent part.
	ingest(t, ctx, s, MakeBatch("gw-2", 1, 5, Rows("gw-2", 3, 5, "M2")...))
	wantFirst(t, ctx, s, Day.Add(3*time.Second))
	if n := move(t, ctx, s, Day.Add(4*time.Second)); n != 0 && n != 1 {
		t.Fatalf("moved %d rows before the 4th second, want 1 (or none: one part)", n)
	}
	wantFirst(t, ctx, s, Day.Add(3*time.Second))
	ingest(t, ctx, s, MakeBatch("gw-3", 1, 1, Row("gw-3", 1, "M3", 100)))
	wantFirst(t, ctx, s, Day.Add(time.Second))
	move(t, ctx, s, time.Time{})
	wantFirst(t, ctx, s, Day.Add(time.Second))
	s2, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	wantFirst(t, ctx, s2, Day.Add(time.Second))
}

func move(t *testing.T, ctx context.Context, s store.Store, before time.Time) int64 {
	t.Helper()
	n, err := s.MoveRecent(ctx, before)
	if err != nil {
		t.Fatalf("MoveRecent(%v): %v", before, err)
	}
	return n
}

func recentRows(t *testing.T, ctx context.Context, s store.Store) int64 {
	t.Helper()
	n, err := s.RecentRows(ctx, 1_000_000)
	if err != nil {
		t.Fatalf("RecentRows: %v", err)
	}
	return n
}

func wantTotals(t *testing.T, ctx context.Context, s store.Store, merchant string, count, gross int64) {
	t.Helper()
	got, err := s.Totals(ctx, merchant, time.Time{}, time.Time{})
	if err != nil || got.Count != count || got.Gross != gross {
		t.Fatalf("Totals(%s) = %+v, %v; want count %d gross %d", merchant, got, err, count, gross)
	}
}

func testReingestAfterMove(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	b := MakeBatch("gw-1", 1, 10, Rows("gw-1", 1, 10, "M1")...)
	ingest(t, ctx, s, b)
	if n := recentRows(t, ctx, s); n != 0 && n != 10 {
		t.Fatalf("RecentRows after ingest = %d, want 10 (or 0: one part)", n)
	}
	moved := move(t, ctx, s, time.Time{})
	if n := recentRows(t, ctx, s); n != 0 {
		t.Fatalf("RecentRows after moving all = %d, want 0", n)
	}
	if moved != 0 && moved != 10 {
		t.Fatalf("moved %d rows, want 10 (or 0: one part)", moved)
	}
	if again := move(t, ctx, s, time.Time{}); again != 0 {
		t.Fatalf("second move moved %d rows", again)
	}
	// The same batch again: a duplicate, nothing lands twice.
	if res := ingest(t, ctx, s, b); !res.Duplicate || res.Inserted != 0 {
		t.Fatalf("re-ingest after the move = %+v, want a duplicate", res)
	}
	// A re-cut entirely inside the moved rows: all skipped.
	if res := ingest(t, ctx, s, MakeBatch("gw-1", 3, 7, Rows("gw-1", 3, 7, "M1")...)); res.Inserted != 0 || res.Skipped != 5 {
		t.Fatalf("contained re-cut after the move = %+v, want 5 skipped", res)
	}
	// Same id, other rows: still a conflict after the move.
	bad := MakeBatch("gw-1", 1, 10, Rows("gw-1", 1, 10, "M1")...)
	bad.Rows[4].Amount = 7
	wantCode(t, func() error { _, err := s.Ingest(ctx, bad); return err }(), store.ErrConflict)
	wantLSNs(t, all(t, ctx, s, store.Filter{Merchant: "M1", Limit: 3}), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	wantTotals(t, ctx, s, "M1", 10, 1000)
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 10 {
		t.Fatalf("HighWater = %d, want 10", hw)
	}
	if _, err := s.RecentRows(ctx, 0); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("RecentRows(0) = %v, want ErrBadQuery", err)
	}
}

// straddle leaves gw-1 with LSNs 1..10 moved and 11..20 in the recent part.
func straddle(t *testing.T, ctx context.Context, s store.Store) {
	t.Helper()
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 10, Rows("gw-1", 1, 10, "M1")...))
	move(t, ctx, s, time.Time{})
	ingest(t, ctx, s, MakeBatch("gw-1", 11, 20, Rows("gw-1", 11, 20, "M1")...))
}

func testRecutStraddles(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	straddle(t, ctx, s)
	// [5, 25]: 5..10 moved, 11..20 recent, 21..25 new.
	res := ingest(t, ctx, s, MakeBatch("gw-1", 5, 25, Rows("gw-1", 5, 25, "M1")...))
	if res.Duplicate || res.Inserted != 5 || res.Skipped != 16 {
		t.Fatalf("straddling re-cut = %+v, want 5 inserted, 16 skipped", res)
	}
	want := make([]uint64, 25)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	wantLSNs(t, all(t, ctx, s, store.Filter{Merchant: "M1", Limit: 4}), want...)
	wantTotals(t, ctx, s, "M1", 25, 2500)
	// Moved again, the same re-cut is still a duplicate and a wider one
	// still adds only what is new.
	move(t, ctx, s, time.Time{})
	if res := ingest(t, ctx, s, MakeBatch("gw-1", 5, 25, Rows("gw-1", 5, 25, "M1")...)); !res.Duplicate {
		t.Fatalf("re-sent re-cut after a move = %+v, want a duplicate", res)
	}
	if res := ingest(t, ctx, s, MakeBatch("gw-1", 1, 30, Rows("gw-1", 1, 30, "M1")...)); res.Inserted != 5 || res.Skipped != 25 {
		t.Fatalf("wider re-cut = %+v, want 5 inserted, 25 skipped", res)
	}
	wantTotals(t, ctx, s, "M1", 30, 3000)
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 30 {
		t.Fatalf("HighWater = %d, want 30", hw)
	}
}

func testConflictBothParts(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	straddle(t, ctx, s)
	for _, lsn := range []uint64{8, 15} { // 8 was moved, 15 was not
		rows := Rows("gw-1", 5, 25, "M1")
		rows[lsn-5].Amount = 555
		_, err := s.Ingest(ctx, MakeBatch("gw-1", 5, 25, rows...))
		wantCode(t, err, store.ErrConflict)
		rows = Rows("gw-1", 5, 25, "M1")
		rows[lsn-5].Merchant = "M2"
		_, err = s.Ingest(ctx, MakeBatch("gw-1", 5, 25, rows...))
		wantCode(t, err, store.ErrConflict)
	}
	// Nothing of the refused batches stayed: 21..25 are not there, the
	// high water did not move, M2 has nothing.
	wantTotals(t, ctx, s, "M1", 20, 2000)
	wantTotals(t, ctx, s, "M2", 0, 0)
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 20 {
		t.Fatalf("HighWater after refused re-cuts = %d, want 20", hw)
	}
	if res := ingest(t, ctx, s, MakeBatch("gw-1", 5, 25, Rows("gw-1", 5, 25, "M1")...)); res.Inserted != 5 || res.Skipped != 16 {
		t.Fatalf("the corrected re-cut = %+v, want 5 inserted, 16 skipped", res)
	}
}

func testMoveBefore(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	// gw-1 and gw-2 have rows at the same instants (LSN l at Day + l s).
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 20, Rows("gw-1", 1, 20, "M1")...))
	ingest(t, ctx, s, MakeBatch("gw-2", 1, 20, Rows("gw-2", 1, 20, "M1")...))
	before := recentRows(t, ctx, s)
	// Rows before Day + 8 s: LSNs 1..7 of each source.
	moved := move(t, ctx, s, Day.Add(8*time.Second))
	if after := recentRows(t, ctx, s); after+moved != before || moved != 0 && moved != 14 {
		t.Fatalf("moved %d of %d recent rows, %d left; want 14 moved (or none: one part)", moved, before, after)
	}
	// gw-2 hands off more; the listing interleaves rows of both parts at
	// the same instants.
	ingest(t, ctx, s, MakeBatch("gw-2", 21, 30, Rows("gw-2", 21, 30, "M1")...))
	got := all(t, ctx, s, store.Filter{Merchant: "M1", Limit: 3})
	if len(got) != 50 {
		t.Fatalf("%d rows over all pages, want 50", len(got))
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if a.At.After(b.At) || a.At.Equal(b.At) && (a.Source > b.Source || a.Source == b.Source && a.LSN >= b.LSN) {
			t.Fatalf("rows %d (%s %d) and %d (%s %d) out of (at, source, lsn) order", i-1, a.Source, a.LSN, i, b.Source, b.LSN)
		}
	}
	win := all(t, ctx, s, store.Filter{Merchant: "M1", From: Day.Add(6 * time.Second), To: Day.Add(9 * time.Second), Limit: 2})
	if fmt.Sprint(lsns(win)) != "[6 6 7 7 8 8]" || win[0].Source != "gw-1" || win[1].Source != "gw-2" {
		t.Fatalf("window across the move point = %v", win)
	}
	tot, err := s.Totals(ctx, "M1", Day.Add(6*time.Second), Day.Add(9*time.Second))
	if err != nil || tot.Count != 6 || tot.Gross != 600 {
		t.Fatalf("Totals across the move point = %+v, %v", tot, err)
	}
	sc, err := s.SceneTotals(ctx, Day, Day.Add(time.Hour))
	if err != nil || len(sc) != 1 || sc[0].Count != 50 || sc[0].Net != 5000 {
		t.Fatalf("SceneTotals across both parts = %+v, %v", sc, err)
	}
	if first, ok, err := s.FirstTxnAt(ctx); err != nil || !ok || !first.Equal(Day.Add(time.Second)) {
		t.Fatalf("FirstTxnAt = %v, %v, %v", first, ok, err)
	}
	move(t, ctx, s, time.Time{})
	if again := all(t, ctx, s, store.Filter{Merchant: "M1", Limit: 7}); fmt.Sprint(lsns(again)) != fmt.Sprint(lsns(got)) {
		t.Fatalf("listing changed by the move:\n%v\n%v", lsns(again), lsns(got))
	}
}

// testMoveConcurrent: sources hand off (in order, with re-sends and
// re-cuts) while moves run; every LSN lands exactly once.
func testMoveConcurrent(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	const sources, batches, per = 3, 12, 25
	stop := make(chan struct{})
	var moves sync.WaitGroup
	moves.Add(1)
	moveErr := make(chan error, 1)
	go func() {
		defer moves.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.MoveRecent(ctx, time.Time{}); err != nil {
				moveErr <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, sources)
	for g := 0; g < sources; g++ {
		wg.Add(1)
		go func(src string) {
			defer wg.Done()
			for i := 0; i < batches; i++ {
				first, last := uint64(i*per+1), uint64((i+1)*per)
				b := MakeBatch(src, first, last, Rows(src, first, last, "M1")...)
				if _, err := s.Ingest(ctx, b); err != nil {
					errs <- err
					return
				}
				if _, err := s.Ingest(ctx, b); err != nil { // a re-send
					errs <- err
					return
				}
				if i > 0 { // a re-cut over the previous batch and this one
					p := uint64((i-1)*per + 1)
					if _, err := s.Ingest(ctx, MakeBatch(src, p, last, Rows(src, p, last, "M1")...)); err != nil {
						errs <- err
						return
					}
				}
			}
		}(fmt.Sprintf("gw-%d", g))
	}
	wg.Wait()
	close(stop)
	moves.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ingest: %v", err)
	}
	select {
	case err := <-moveErr:
		t.Fatalf("move: %v", err)
	default:
	}
	rows := all(t, ctx, s, store.Filter{Merchant: "M1", Limit: store.PageLimitMax})
	seen := map[string]bool{}
	for _, r := range rows {
		k := fmt.Sprintf("%s/%d", r.Source, r.LSN)
		if seen[k] {
			t.Fatalf("%s listed twice", k)
		}
		seen[k] = true
	}
	if len(rows) != sources*batches*per {
		t.Fatalf("%d rows, want %d", len(rows), sources*batches*per)
	}
	wantTotals(t, ctx, s, "M1", sources*batches*per, sources*batches*per*100)
}

// testLegsAcrossMoves: legs move with their rows' time; the window's legs,
// a re-cut over moved and unmoved rows and a leg conflict in either part
// read the same before and after.
func testLegsAcrossMoves(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	rows := legRows() // LSNs 1..5 at Day + 1..5 s
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 5, rows...))
	want, err := s.Legs(ctx, TestWindow)
	if err != nil || len(want) != 2 {
		t.Fatalf("Legs = %+v, %v", want, err)
	}
	// LSNs 1 and 2 (and their legs) move; 3..5 stay.
	move(t, ctx, s, Day.Add(3*time.Second))
	wantLegs(t, ctx, s, TestWindow, want)
	if res := ingest(t, ctx, s, MakeBatch("gw-1", 1, 5, legRows()...)); !res.Duplicate {
		t.Fatalf("re-sent batch after a partial move = %+v, want a duplicate", res)
	}
	more := Row("gw-1", 6, "STALL-M", 900)
	more.Terminal, more.Scene = "STALL-1", handoff.SceneStall
	more.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-OP", Amount: 9}}
	if res := ingest(t, ctx, s, MakeBatch("gw-1", 2, 6, append(legRows()[1:], more)...)); res.Inserted != 1 || res.Skipped != 4 {
		t.Fatalf("re-cut over moved and unmoved rows = %+v, want 1 inserted, 4 skipped", res)
	}
	for i := range want["STALL-M"] {
		if d := &want["STALL-M"][i]; d.Payee == "MKT-OP" {
			d.Amount += 9
		}
	}
	wantLegs(t, ctx, s, TestWindow, want)
	for _, i := range []int{1, 3} { // LSN 2 was moved, LSN 4 was not
		rc := legRows()
		rc[i].Legs[0].Amount--
		wantCode(t, func() error { _, err := s.Ingest(ctx, MakeBatch("gw-1", 1, 5, rc...)); return err }(), store.ErrConflict)
	}
	move(t, ctx, s, time.Time{})
	wantLegs(t, ctx, s, TestWindow, want)
	wantTotals(t, ctx, s, "STALL-M", 5, 1550+1000+80+900)
}
