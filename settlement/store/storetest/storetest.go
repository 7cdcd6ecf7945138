// Package storetest owns the contract test suite that every settlement
// store implementation must pass. Each store's tests call Run with an
// opener for a fresh, private database; the suite opens it more than once
// to check that migrations are idempotent.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

// Opener opens the same private database each time it is called.
type Opener func(ctx context.Context) (store.Store, error)

// Fresh returns an Opener for a new empty database; cleanup is the
// caller's (t.Cleanup).
type Fresh func(t *testing.T) Opener

// Day is the business day the suite's rows fall on (UTC).
var Day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// Row builds a valid purchase row of source at lsn, at Day + lsn seconds.
func Row(source string, lsn uint64, merchant string, amount int64) handoff.Txn {
	return handoff.Txn{Source: source, LSN: lsn, At: Day.Add(time.Duration(lsn) * time.Second), Merchant: merchant,
		Terminal: "BUS-1", Scene: handoff.SceneBus, Op: handoff.OpPurchase, InstKind: "county",
		Account: fmt.Sprintf("county:C-%d", lsn%7), Amount: amount, Auth: fmt.Sprint(lsn), Txn: lsn}
}

// MakeBatch seals rows (ascending LSN) as the batch covering [first, last].
func MakeBatch(source string, first, last uint64, rows ...handoff.Txn) *handoff.Batch {
	wm := Day.Add(time.Duration(last) * time.Second)
	return &handoff.Batch{ID: handoff.BatchID(source, first, last), Source: source, FirstLSN: first, LastLSN: last,
		Watermark: wm, Rows: rows}
}

// Rows builds one row per LSN in [first, last] for merchant, amount 100.
func Rows(source string, first, last uint64, merchant string) []handoff.Txn {
	var out []handoff.Txn
	for l := first; l <= last; l++ {
		out = append(out, Row(source, l, merchant, 100))
	}
	return out
}

// Run runs the contract suite.
func Run(t *testing.T, fresh Fresh) {
	cases := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, open Opener, s store.Store)
	}{
		{"MigrationsIdempotentOnReopen", testReopen},
		{"ReingestSameBatch", testReingest},
		{"RecutOverlap", testRecut},
		{"HighWaterAndGap", testHighWater},
		{"Watermark", testWatermark},
		{"PaginationWithFilters", testPagination},
		{"MerchantIsolation", testIsolation},
		{"RefusesPANAndMalformed", testRefusals},
		{"FailureHalfwayLeavesNothing", testHalfway},
		{"Totals", testTotals},
		{"ConcurrentResends", testConcurrent},
	}
	cases = append(cases, clearingCases...)
	cases = append(cases, legsCases...)
	cases = append(cases, ecnyCases...)
	cases = append(cases, recentCases...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			open := fresh(t)
			s, err := open(ctx)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			c.fn(t, ctx, open, s)
		})
	}
}

func ingest(t *testing.T, ctx context.Context, s store.Store, b *handoff.Batch) store.IngestResult {
	t.Helper()
	res, err := s.Ingest(ctx, b)
	if err != nil {
		t.Fatalf("Ingest %s: %v", b.ID, err)
	}
	return res
}

// all lists every row of merchant, following cursors.
func all(t *testing.T, ctx context.Context, s store.Store, f store.Filter) []handoff.Txn {
	t.Helper()
	var out []handoff.Txn
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		p, err := s.Transactions(ctx, f)
		if err != nil {
			t.Fatalf("Transactions: %v", err)
		}
		out = append(out, p.Rows...)
		if p.Next == "" {
			return out
		}
		f.Cursor = p.Next
	}
}

func lsns(rows []handoff.Txn) []uint64 {
	out := make([]uint64, len(rows))
	for i := range rows {
		out[i] = rows[i].LSN
	}
	return out
}

func wantLSNs(t *testing.T, rows []handoff.Txn, want ...uint64) {
	t.Helper()
	got := lsns(rows)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("LSNs = %v, want %v", got, want)
	}
}

func wantCode(t *testing.T, err error, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func testReopen(t *testing.T, ctx context.Context, open Opener, s store.Store) {
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 3, Rows("gw-1", 1, 3, "M1")...))
	s.Close()
	for i := 0; i < 2; i++ {
		s2, err := open(ctx)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		hw, err := s2.HighWater(ctx, "gw-1")
		if err != nil || hw != 3 {
			t.Fatalf("HighWater after reopen = %d, %v; want 3", hw, err)
		}
		wantLSNs(t, all(t, ctx, s2, store.Filter{Merchant: "M1"}), 1, 2, 3)
		s2.Close()
	}
}

func testReingest(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	b := MakeBatch("gw-1", 1, 5, Rows("gw-1", 1, 5, "M1")...)
	if res := ingest(t, ctx, s, b); res.Inserted != 5 || res.Duplicate {
		t.Fatalf("first ingest = %+v, want 5 inserted", res)
	}
	before, _ := s.Totals(ctx, "M1", time.Time{}, time.Time{})
	if res := ingest(t, ctx, s, b); !res.Duplicate || res.Inserted != 0 {
		t.Fatalf("re-ingest = %+v, want duplicate with nothing inserted", res)
	}
	after, _ := s.Totals(ctx, "M1", time.Time{}, time.Time{})
	if before != after || after.Count != 5 || after.Gross != 500 {
		t.Fatalf("totals before %+v after %+v, want 5 rows / 500 fen both", before, after)
	}
	// Same id, other rows: a conflict, and the stored rows stand.
	bad := MakeBatch("gw-1", 1, 5, Rows("gw-1", 1, 5, "M1")...)
	bad.Rows[2].Amount = 999
	wantCode(t, func() error { _, err := s.Ingest(ctx, bad); return err }(), store.ErrConflict)
	if got, _ := s.Totals(ctx, "M1", time.Time{}, time.Time{}); got != after {
		t.Fatalf("conflicting batch changed totals: %+v", got)
	}
}

func testRecut(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 10, Rows("gw-1", 1, 10, "M1")...))
	// Re-cut: [6, 15] overlaps [1, 10]; only 11..15 are new.
	res := ingest(t, ctx, s, MakeBatch("gw-1", 6, 15, Rows("gw-1", 6, 15, "M1")...))
	if res.Duplicate || res.Inserted != 5 || res.Skipped != 5 {
		t.Fatalf("re-cut ingest = %+v, want 5 inserted, 5 skipped", res)
	}
	// Entirely inside what is stored: nothing new.
	res = ingest(t, ctx, s, MakeBatch("gw-1", 2, 4, Rows("gw-1", 2, 4, "M1")...))
	if res.Inserted != 0 || res.Skipped != 3 {
		t.Fatalf("contained re-cut = %+v, want 0 inserted, 3 skipped", res)
	}
	rows := all(t, ctx, s, store.Filter{Merchant: "M1"})
	if len(rows) != 15 {
		t.Fatalf("%d rows, want 15", len(rows))
	}
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 15 {
		t.Fatalf("HighWater = %d, want 15", hw)
	}
	// A re-cut row whose content differs from the stored one is refused.
	rc := MakeBatch("gw-1", 14, 16, Rows("gw-1", 14, 16, "M1")...)
	rc.Rows[0].Amount = 101
	wantCode(t, func() error { _, err := s.Ingest(ctx, rc); return err }(), store.ErrConflict)
}

func testHighWater(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	if hw, err := s.HighWater(ctx, "gw-9"); err != nil || hw != 0 {
		t.Fatalf("HighWater of unknown source = %d, %v; want 0", hw, err)
	}
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 4, Rows("gw-1", 1, 2, "M1")...))
	// A range with no settlement rows (declines only) still advances it.
	ingest(t, ctx, s, MakeBatch("gw-1", 5, 9))
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 9 {
		t.Fatalf("HighWater = %d, want 9", hw)
	}
	// A gap (10..11 never sent) is refused: those rows would be lost.
	_, err := s.Ingest(ctx, MakeBatch("gw-1", 12, 13, Rows("gw-1", 12, 13, "M1")...))
	wantCode(t, err, store.ErrGap)
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 9 {
		t.Fatalf("HighWater after refused gap = %d, want 9", hw)
	}
	// Sources are independent.
	ingest(t, ctx, s, MakeBatch("gw-2", 1, 2, Rows("gw-2", 1, 2, "M1")...))
	if hw, _ := s.HighWater(ctx, "gw-2"); hw != 2 {
		t.Fatalf("HighWater gw-2 = %d, want 2", hw)
	}
	// A source's first batch must start at LSN 1.
	_, err = s.Ingest(ctx, MakeBatch("gw-3", 5, 6, Rows("gw-3", 5, 6, "M1")...))
	wantCode(t, err, store.ErrGap)
}

func testWatermark(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 2, Rows("gw-1", 1, 2, "M1")...))
	idle := &handoff.Batch{ID: handoff.BatchID("gw-1", 0, 0), Source: "gw-1", Watermark: Day.Add(time.Hour)}
	ingest(t, ctx, s, idle)
	ingest(t, ctx, s, idle) // idempotent
	// An older watermark never moves it back.
	old := *idle
	old.Watermark = Day.Add(time.Minute)
	ingest(t, ctx, s, &old)
	ws, err := s.Watermarks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Source != "gw-1" || ws[0].HighWater != 2 || !ws[0].At.Equal(Day.Add(time.Hour)) {
		t.Fatalf("Watermarks = %+v, want gw-1 hw 2 at %v", ws, Day.Add(time.Hour))
	}
	if ws[0].At.Location() != time.UTC {
		t.Fatalf("watermark not in UTC: %v", ws[0].At)
	}
}

func testPagination(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	rows := Rows("gw-1", 1, 40, "M1")
	for i := range rows {
		if i%4 == 0 {
			rows[i].Scene, rows[i].Terminal = handoff.SceneStall, "STALL-7"
		}
		if i%10 == 9 {
			rows[i].Op, rows[i].Amount, rows[i].Orig = handoff.OpReversal, -100, rows[i].Txn-1
		}
	}
	// Two sources with rows at the same instant: the keyset order breaks
	// the tie by source, then LSN.
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 40, rows...))
	ingest(t, ctx, s, MakeBatch("gw-2", 1, 3, Rows("gw-2", 1, 3, "M1")...))
	got := all(t, ctx, s, store.Filter{Merchant: "M1", Limit: 7})
	if len(got) != 43 {
		t.Fatalf("%d rows over all pages, want 43", len(got))
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if a.At.After(b.At) || a.At.Equal(b.At) && (a.Source > b.Source || a.Source == b.Source && a.LSN >= b.LSN) {
			t.Fatalf("rows %d and %d out of (at, source, lsn) order", i-1, i)
		}
	}
	if got[0].Source != "gw-1" || got[1].Source != "gw-2" || got[0].At != got[1].At {
		t.Fatalf("tie at the same instant not ordered by source: %v %v", got[0], got[1])
	}
	if !sameTxn(got[0], rows[0]) {
		t.Fatalf("row does not round-trip:\n got %+v\nwant %+v", got[0], rows[0])
	}
	stall := all(t, ctx, s, store.Filter{Merchant: "M1", Scene: handoff.SceneStall, Limit: 3})
	wantLSNs(t, stall, 1, 5, 9, 13, 17, 21, 25, 29, 33, 37)
	term := all(t, ctx, s, store.Filter{Merchant: "M1", Terminal: "STALL-7", Op: handoff.OpPurchase, Limit: 2})
	if len(term) != 10 {
		t.Fatalf("terminal+op filter: %d rows, want 10", len(term))
	}
	rev := all(t, ctx, s, store.Filter{Merchant: "M1", Op: handoff.OpReversal})
	wantLSNs(t, rev, 10, 20, 30, 40)
	// [from, to): LSN 5 is at Day+5s, LSN 9 at Day+9s; to is exclusive.
	win := all(t, ctx, s, store.Filter{Merchant: "M1", From: Day.Add(5 * time.Second), To: Day.Add(9 * time.Second), Limit: 2})
	wantLSNs(t, win, 5, 6, 7, 8) // gw-2's rows are at 1..3 s, outside the window
	for _, bad := range []store.Filter{
		{},
		{Merchant: "M1", Limit: store.PageLimitMax + 1},
		{Merchant: "M1", Limit: -1},
		{Merchant: "M1", Cursor: "%%%"},
		{Merchant: "M1", From: Day, To: Day},
	} {
		if _, err := s.Transactions(ctx, bad); !errors.Is(err, store.ErrBadQuery) {
			t.Fatalf("Transactions(%+v) = %v, want ErrBadQuery", bad, err)
		}
	}
}

// sameTxn compares rows as Transactions lists them (without legs; the
// legs cases check those).
func sameTxn(a, b handoff.Txn) bool {
	eq := a.At.Equal(b.At)
	a.At, b.At = time.Time{}, time.Time{}
	a.Legs, b.Legs = nil, nil
	return eq && reflect.DeepEqual(a, b)
}

func testIsolation(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	rows := Rows("gw-1", 1, 20, "A")
	for i := range rows {
		if i%2 == 1 {
			rows[i].Merchant = "B"
			rows[i].Amount = 7
		}
	}
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 20, rows...))
	for _, m := range []string{"A", "B"} {
		got := all(t, ctx, s, store.Filter{Merchant: m, Limit: 3})
		if len(got) != 10 {
			t.Fatalf("merchant %s: %d rows, want 10", m, len(got))
		}
		for _, r := range got {
			if r.Merchant != m {
				t.Fatalf("query for %s returned a row of %s", m, r.Merchant)
			}
		}
	}
	// A cursor taken from B's listing does not open A's rows to B.
	pa, _ := s.Transactions(ctx, store.Filter{Merchant: "A", Limit: 2})
	pb, err := s.Transactions(ctx, store.Filter{Merchant: "B", Cursor: pa.Next, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range pb.Rows {
		if r.Merchant != "B" {
			t.Fatalf("cursor leaked a row of %s to B", r.Merchant)
		}
	}
	ta, _ := s.Totals(ctx, "A", time.Time{}, time.Time{})
	tb, _ := s.Totals(ctx, "B", time.Time{}, time.Time{})
	if ta.Gross != 1000 || tb.Gross != 70 {
		t.Fatalf("totals A %+v B %+v, want gross 1000 and 70", ta, tb)
	}
	none, _ := s.Totals(ctx, "C", time.Time{}, time.Time{})
	if none != (store.Totals{}) {
		t.Fatalf("unknown merchant totals = %+v, want zero (same as no data)", none)
	}
}

func testRefusals(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	pan := MakeBatch("gw-1", 1, 2, Rows("gw-1", 1, 2, "M1")...)
	pan.Rows[1].Account = "6222021234567890128" // Luhn-valid 19 digits
	_, err := s.Ingest(ctx, pan)
	wantCode(t, err, handoff.ErrPAN)
	wrongID := MakeBatch("gw-1", 1, 2, Rows("gw-1", 1, 2, "M1")...)
	wrongID.ID = "gw-1:1-3"
	_, err = s.Ingest(ctx, wrongID)
	wantCode(t, err, handoff.ErrMalformed)
	outside := MakeBatch("gw-1", 1, 2, Rows("gw-1", 1, 3, "M1")...)
	_, err = s.Ingest(ctx, outside)
	wantCode(t, err, handoff.ErrMalformed)
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 0 {
		t.Fatalf("refused batches moved high water to %d", hw)
	}
	if rows := all(t, ctx, s, store.Filter{Merchant: "M1"}); len(rows) != 0 {
		t.Fatalf("refused batches left %d rows", len(rows))
	}
}

// testHalfway: a re-cut batch whose new rows are written before the
// conflicting row is found; the whole transaction must roll back.
func testHalfway(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	ingest(t, ctx, s, MakeBatch("gw-1", 1, 10, Rows("gw-1", 1, 10, "M1")...))
	rows := Rows("gw-1", 10, 20, "M1")
	rows[0].Amount = 555 // LSN 10 differs from the stored row
	_, err := s.Ingest(ctx, MakeBatch("gw-1", 10, 20, rows...))
	wantCode(t, err, store.ErrConflict)
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 10 {
		t.Fatalf("HighWater after failed ingest = %d, want 10", hw)
	}
	wantLSNs(t, all(t, ctx, s, store.Filter{Merchant: "M1"}), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	ws, _ := s.Watermarks(ctx)
	if len(ws) != 1 || !ws[0].At.Equal(Day.Add(10*time.Second)) {
		t.Fatalf("watermark moved by a failed ingest: %+v", ws)
	}
	// The corrected batch goes through: the failed one burned nothing.
	res := ingest(t, ctx, s, MakeBatch("gw-1", 10, 20, Rows("gw-1", 10, 20, "M1")...))
	if res.Inserted != 10 || res.Skipped != 1 {
		t.Fatalf("corrected batch = %+v, want 10 inserted 1 skipped", res)
	}
	// A cancelled context fails the ingest and leaves nothing either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Ingest(cctx, MakeBatch("gw-1", 21, 30, Rows("gw-1", 21, 30, "M1")...)); err == nil {
		t.Fatal("ingest with a cancelled context succeeded")
	}
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 20 {
		t.Fatalf("HighWater after cancelled ingest = %d, want 20", hw)
	}
}

func testTotals(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	rows := Rows("gw-1", 1, 6, "M1")
	rows[2].Op, rows[2].Amount, rows[2].Orig = handoff.OpReversal, -100, 2
	rows[4].Op, rows[4].Amount, rows[4].Orig = handoff.OpRefund, -30, 4
	rows[5].Scene, rows[5].Op = handoff.SceneKiosk, handoff.OpCapture
	rows[5].At = Day.Add(24 * time.Hour) // next day
	b := MakeBatch("gw-1", 1, 6, rows...)
	b.Watermark = Day.Add(25 * time.Hour)
	ingest(t, ctx, s, b)
	got, err := s.Totals(ctx, "M1", Day, Day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := store.Totals{Count: 5, Gross: 300, Payments: 3, Reversals: -100, ReversalCount: 1, Refunds: -30, RefundCount: 1, Net: 170}
	if got != want {
		t.Fatalf("Totals = %+v, want %+v", got, want)
	}
	if _, err := s.Totals(ctx, "", Day, Day.Add(time.Hour)); !errors.Is(err, store.ErrBadQuery) {
		t.Fatalf("Totals without merchant = %v, want ErrBadQuery", err)
	}
}

// testConcurrent: the same batch and an overlapping re-cut sent at once
// from several goroutines (two gateway goroutines, or a retry racing the
// original) land every row exactly once.
func testConcurrent(t *testing.T, ctx context.Context, _ Opener, s store.Store) {
	const senders = 6
	batches := []*handoff.Batch{
		MakeBatch("gw-1", 1, 200, Rows("gw-1", 1, 200, "M1")...),
		MakeBatch("gw-1", 101, 300, Rows("gw-1", 101, 300, "M1")...),
	}
	var wg sync.WaitGroup
	results := make([]store.IngestResult, senders)
	errs := make([]error, senders)
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Re-cut batches may arrive before the batch they overlap:
			// that is a gap, refused, and the sender retries.
			for try := 0; try < 50; try++ {
				results[i], errs[i] = s.Ingest(ctx, batches[i%2])
				if !errors.Is(errs[i], store.ErrGap) {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}(i)
	}
	wg.Wait()
	inserted := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("sender %d: %v", i, errs[i])
		}
		inserted += results[i].Inserted
	}
	if inserted != 300 {
		t.Fatalf("%d rows inserted over all senders, want 300", inserted)
	}
	tot, err := s.Totals(ctx, "M1", time.Time{}, time.Time{})
	if err != nil || tot.Count != 300 || tot.Gross != 30000 {
		t.Fatalf("Totals = %+v, %v; want 300 rows, 30000 fen", tot, err)
	}
	if hw, _ := s.HighWater(ctx, "gw-1"); hw != 300 {
		t.Fatalf("HighWater = %d, want 300", hw)
	}
}
