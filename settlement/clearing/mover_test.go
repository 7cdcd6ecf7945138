package clearing

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTickMovesRecentRows: the scheduler moves the PostgreSQL store's
// recent rows on its first pass and a window's rows when it closes the
// window; rows of the next window stay where ingest put them, and the
// settlement counts rows from both parts. The mover's counter and the
// recent-rows gauge follow each pass.
func TestTickMovesRecentRows(t *testing.T) {
	ctx := context.Background()
	s, err := pgOpener(t)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cl, err := New(Config{Store: s, Grace: 10 * time.Minute, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	recent := func() int64 {
		t.Helper()
		n, err := s.RecentRows(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	wantMetrics := func(moved, waiting float64) {
		t.Helper()
		if m, w := testutil.ToFloat64(cl.m.recentMoved), testutil.ToFloat64(cl.m.recentRows); m != moved || w != waiting {
			t.Fatalf("rows moved %v, waiting %v; want %v, %v", m, w, moved, waiting)
		}
	}
	b := &batcher{last: map[string]uint64{}}
	b.send(t, s, "gw-1", sh(2026, 3, 1, 22, 0, 0, 0),
		txn(sh(2026, 3, 1, 10, 0, 0, 0), "BUS-CO", "bus", "purchase", 200),
		txn(sh(2026, 3, 1, 11, 0, 0, 0), "BUS-CO", "bus", "purchase", 200))
	if n := recent(); n != 2 {
		t.Fatalf("%d recent rows after ingest, want 2", n)
	}
	if _, err := cl.Tick(ctx, sh(2026, 3, 1, 22, 1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if n := recent(); n != 0 {
		t.Fatalf("%d recent rows after the first pass, want 0", n)
	}
	wantMetrics(2, 0)
	// One row before the cut-off, one after it, and a watermark past the
	// cut-off plus grace.
	b.send(t, s, "gw-1", sh(2026, 3, 1, 23, 20, 0, 0),
		txn(sh(2026, 3, 1, 22, 59, 0, 0), "BUS-CO", "bus", "purchase", 200),
		txn(sh(2026, 3, 1, 23, 5, 0, 0), "BUS-CO", "bus", "purchase", 200))
	res, err := cl.Tick(ctx, sh(2026, 3, 1, 23, 21, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Closed) != 1 || res.Closed[0] != "2026-03-01" {
		t.Fatalf("tick after drain: %+v", res)
	}
	if n := recent(); n != 1 {
		t.Fatalf("%d recent rows after the close, want 1 (the next window's)", n)
	}
	wantMetrics(3, 1)
	st, err := s.Settlement(ctx, "2026-03-01", "BUS-CO")
	if err != nil || st.Count != 3 || st.Net != 600 {
		t.Fatalf("settlement = %+v, %v; want 3 rows, 600 fen", st, err)
	}
	tot, err := s.Totals(ctx, "BUS-CO", time.Time{}, time.Time{})
	if err != nil || tot.Count != 4 {
		t.Fatalf("Totals over both parts = %+v, %v; want 4 rows", tot, err)
	}
}
