package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"scenepay/settlement/store/pgtest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
	"scenepay/settlement/store/storetest"
)

// Run with:
//
//	make bench-settlement
//
// Figures are reported, never asserted.

const benchBatchRows = 10_000

// benchRows builds rows [first, first+n) of source spread over merchants
// and one day, the shape a gateway seals.
func benchRows(source string, first uint64, n int, merchants int, day time.Time) []handoff.Txn {
	rows := make([]handoff.Txn, n)
	for i := range rows {
		lsn := first + uint64(i)
		rows[i] = handoff.Txn{Source: source, LSN: lsn,
			At:       day.Add(time.Duration(lsn%86_400_000) * time.Millisecond).Truncate(time.Microsecond),
			Merchant: fmt.Sprintf("M%03d", lsn%uint64(merchants)), Terminal: fmt.Sprintf("BUS-%04d", lsn%997),
			Scene: handoff.SceneBus, Op: handoff.OpPurchase, InstKind: "county",
			Account: fmt.Sprintf("county:C-%08d", lsn%100_003), Amount: 200, Auth: fmt.Sprint(lsn), Txn: lsn}
		switch {
		case lsn%53 == 0:
			rows[i].Op, rows[i].Amount, rows[i].Orig = handoff.OpReversal, -200, lsn-1
		case lsn%97 == 0:
			rows[i].Op, rows[i].Amount, rows[i].Orig = handoff.OpRefund, -50, lsn-1
		}
	}
	return rows
}

func benchBatch(source string, first uint64, n, merchants int, day time.Time) *handoff.Batch {
	b := storetest.MakeBatch(source, first, first+uint64(n)-1, benchRows(source, first, n, merchants, day)...)
	b.Watermark = day.Add(48 * time.Hour)
	return b
}

// BenchmarkIngestVsCopy ingests 10k-row batches through Store.Ingest and,
// in the same iteration, copies the same rows with a bare pgx CopyFrom into
// a plain table (same columns, no keys or indexes) and into a table with
// the same keys and indexes as txns, and reports the rates and the ratios.
// ingest/copy is the ratio the target names (ingest lands in the unindexed
// txns_recent; MoveRecent pays the indexes later, BenchmarkMoveRecent);
// ingest/copy_indexed compares with paying them at ingest. The order of
// the three alternates between iterations, and the *_median ratios (the
// median of the per-iteration ratios) are less moved by load from other
// processes than the ratios of the sums.
func BenchmarkIngestVsCopy(b *testing.B) {
	ctx := context.Background()
	url := pgtest.Schema(b, "settle")
	s, err := store.OpenPostgres(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range []string{`CREATE TABLE bare_txns (LIKE txns)`, `CREATE TABLE indexed_txns (LIKE txns INCLUDING ALL)`} {
		if _, err := c.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	batches := make([]*handoff.Batch, b.N)
	for i := range batches {
		batches[i] = benchBatch("gw-bench", uint64(i)*benchBatchRows+1, benchBatchRows, 100, storetest.Day)
	}
	cols := []string{"source", "lsn", "at", "merchant", "terminal", "scene", "op", "inst_kind",
		"account", "amount", "auth", "txn", "orig", "batch_id"}
	bare := func(table string, bt *handoff.Batch) time.Duration {
		t0 := time.Now()
		n, err := c.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(len(bt.Rows), func(j int) ([]any, error) {
			r := &bt.Rows[j]
			return []any{r.Source, int64(r.LSN), r.At, r.Merchant, r.Terminal, r.Scene, r.Op, r.InstKind,
				r.Account, r.Amount, r.Auth, int64(r.Txn), int64(r.Orig), bt.ID}, nil
		}))
		if err != nil || n != benchBatchRows {
			b.Fatalf("bare CopyFrom = %d, %v", n, err)
		}
		return time.Since(t0)
	}
	var ingestD, copyD, indexedD time.Duration
	perCopy, perIndexed := make([]float64, b.N), make([]float64, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bt := batches[i]
		var ci, cc, cx time.Duration
		if i%2 == 1 {
			cc, cx = bare("bare_txns", bt), bare("indexed_txns", bt)
		}
		t0 := time.Now()
		res, err := s.Ingest(ctx, bt)
		if err != nil || res.Inserted != benchBatchRows {
			b.Fatalf("Ingest = %+v, %v", res, err)
		}
		ci = time.Since(t0)
		if i%2 == 0 {
			cc, cx = bare("bare_txns", bt), bare("indexed_txns", bt)
		}
		ingestD, copyD, indexedD = ingestD+ci, copyD+cc, indexedD+cx
		perCopy[i], perIndexed[i] = cc.Seconds()/ci.Seconds(), cx.Seconds()/ci.Seconds()
	}
	b.StopTimer()
	rows := float64(b.N * benchBatchRows)
	ingestRate, copyRate, indexedRate := rows/ingestD.Seconds(), rows/copyD.Seconds(), rows/indexedD.Seconds()
	b.ReportMetric(ingestRate, "ingest_rows/s")
	b.ReportMetric(copyRate, "copy_rows/s")
	b.ReportMetric(indexedRate, "copy_indexed_rows/s")
	b.ReportMetric(ingestRate/copyRate, "ingest/copy")
	b.ReportMetric(ingestRate/indexedRate, "ingest/copy_indexed")
	b.ReportMetric(median(perCopy), "ingest/copy_median")
	b.ReportMetric(median(perIndexed), "ingest/copy_indexed_median")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkIngestRecut measures the overlap path: every batch re-covers
// the second half of the previous one, so half of its rows are staged and
// skipped.
func BenchmarkIngestRecut(b *testing.B) {
	ctx := context.Background()
	s, err := store.OpenPostgres(ctx, pgtest.Schema(b, "settle"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const half = benchBatchRows / 2
	first := benchBatch("gw-bench", 1, half, 100, storetest.Day)
	if _, err := s.Ingest(ctx, first); err != nil {
		b.Fatal(err)
	}
	batches := make([]*handoff.Batch, b.N)
	for i := range batches {
		batches[i] = benchBatch("gw-bench", uint64(i)*half+1, benchBatchRows, 100, storetest.Day)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := s.Ingest(ctx, batches[i])
		if err != nil || res.Inserted != half || res.Skipped != half {
			b.Fatalf("Ingest = %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatchRows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkIngestSQLite is the embedded store's ingest rate, for scale.
func BenchmarkIngestSQLite(b *testing.B) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batches := make([]*handoff.Batch, b.N)
	for i := range batches {
		batches[i] = benchBatch("gw-bench", uint64(i)*benchBatchRows+1, benchBatchRows, 100, storetest.Day)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Ingest(ctx, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatchRows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkTotalsMillion is the statement query (one merchant, one day)
// over 1,000,000 rows: 100 merchants over 10 days, about 1,000 rows per
// merchant and day. The rows are loaded through Store.Ingest and moved into
// the indexed part (the ten days' windows have closed), as the clearing
// scheduler would.
func BenchmarkTotalsMillion(b *testing.B) {
	ctx := context.Background()
	url := pgtest.Schema(b, "settle")
	s, err := store.OpenPostgres(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const total, per, days = 1_000_000, 50_000, 10
	load := time.Now()
	for i := 0; i < total/per; i++ {
		day := storetest.Day.Add(time.Duration(i%days) * 24 * time.Hour)
		if _, err := s.Ingest(ctx, benchBatch("gw-bench", uint64(i*per)+1, per, 100, day)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d rows through Ingest in %v (%.0f rows/s)", total, time.Since(load), total/time.Since(load).Seconds())
	mv := time.Now()
	if n, err := s.MoveRecent(ctx, time.Time{}); err != nil || n != total {
		b.Fatalf("MoveRecent = %d, %v", n, err)
	}
	b.Logf("moved them into the indexed part in %v (%.0f rows/s)", time.Since(mv), total/time.Since(mv).Seconds())
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Exec(ctx, `VACUUM ANALYZE txns`); err != nil {
		b.Fatal(err)
	}
	var recentBytes int64
	if err := c.QueryRow(ctx, `SELECT pg_relation_size('txns_recent')`).Scan(&recentBytes); err != nil {
		b.Fatal(err)
	}
	b.Logf("txns_recent after the move: %d bytes", recentBytes)
	day := storetest.Day.Add(5 * 24 * time.Hour)
	var plan []string
	rows, err := c.Query(ctx, `EXPLAIN (COSTS OFF) SELECT count(*), sum(amount) FILTER (WHERE op = 'refund')
		FROM txns_all WHERE merchant = $1 AND at >= $2 AND at < $3`, "M042", day, day.Add(24*time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			b.Fatal(err)
		}
		plan = append(plan, line)
	}
	b.Logf("plan: %s", strings.Join(plan, " | "))
	c.Close(ctx)
	want, err := s.Totals(ctx, "M042", day, day.Add(24*time.Hour))
	if err != nil || want.Count == 0 {
		b.Fatalf("Totals = %+v, %v", want, err)
	}
	b.Logf("M042 on %s: %+v", day.Format("2006-01-02"), want)
	b.ReportAllocs()
	for b.Loop() { // b.Loop: the million-row load above runs once
		got, err := s.Totals(ctx, "M042", day, day.Add(24*time.Hour))
		if err != nil || got != want {
			b.Fatalf("Totals = %+v, %v", got, err)
		}
	}
}

// BenchmarkMoveRecent is the mover's cost: each iteration ingests 100k rows
// (ten batches, untimed) and moves them into the indexed txns, which grows
// by as much every iteration (the VACUUM of txns_recent included).
func BenchmarkMoveRecent(b *testing.B) {
	ctx := context.Background()
	s, err := store.OpenPostgres(ctx, pgtest.Schema(b, "settle"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const per = 10
	var moveD time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := 0; j < per; j++ {
			first := uint64((i*per+j)*benchBatchRows) + 1
			if _, err := s.Ingest(ctx, benchBatch("gw-bench", first, benchBatchRows, 100, storetest.Day)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		t0 := time.Now()
		n, err := s.MoveRecent(ctx, time.Time{})
		if err != nil || n != per*benchBatchRows {
			b.Fatalf("MoveRecent = %d, %v", n, err)
		}
		moveD += time.Since(t0)
	}
	b.ReportMetric(float64(b.N*per*benchBatchRows)/moveD.Seconds(), "moved_rows/s")
}

// BenchmarkTotalsRecent is "today's takings" before any move: the
// statement query for one merchant and day with store.RecentRowsMax rows
// (one day, 100 merchants) in the unindexed recent part, which the query
// scans whole.
func BenchmarkTotalsRecent(b *testing.B) {
	ctx := context.Background()
	s, err := store.OpenPostgres(ctx, pgtest.Schema(b, "settle"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const per = 50_000
	for i := 0; i < store.RecentRowsMax/per; i++ {
		if _, err := s.Ingest(ctx, benchBatch("gw-bench", uint64(i*per)+1, per, 100, storetest.Day)); err != nil {
			b.Fatal(err)
		}
	}
	want, err := s.Totals(ctx, "M042", storetest.Day, storetest.Day.Add(24*time.Hour))
	if err != nil || want.Count == 0 {
		b.Fatalf("Totals = %+v, %v", want, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.Totals(ctx, "M042", storetest.Day, storetest.Day.Add(24*time.Hour))
		if err != nil || got != want {
			b.Fatalf("Totals = %+v, %v", got, err)
		}
	}
}

// BenchmarkIngestLegs prices the division legs, which stay in the indexed
// txn_legs: in each iteration one 10k-row batch without legs and one whose
// every fourth purchase carries a market fee leg (2,500 legs) are ingested
// (alternating which goes first), and the two rates and their ratio are
// reported.
func BenchmarkIngestLegs(b *testing.B) {
	ctx := context.Background()
	s, err := store.OpenPostgres(ctx, pgtest.Schema(b, "settle"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	plain, legs := make([]*handoff.Batch, b.N), make([]*handoff.Batch, b.N)
	for i := 0; i < b.N; i++ {
		first := uint64(i)*benchBatchRows + 1
		plain[i] = benchBatch("gw-plain", first, benchBatchRows, 100, storetest.Day)
		legs[i] = benchBatch("gw-legs", first, benchBatchRows, 100, storetest.Day)
		for j := range legs[i].Rows {
			if r := &legs[i].Rows[j]; j%4 == 0 && r.Op == handoff.OpPurchase {
				r.Legs = []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-1", Amount: 2}}
			}
		}
	}
	var plainD, legsD time.Duration
	timed := func(bt *handoff.Batch) time.Duration {
		t0 := time.Now()
		if res, err := s.Ingest(ctx, bt); err != nil || res.Inserted != benchBatchRows {
			b.Fatalf("Ingest = %+v, %v", res, err)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			plainD += timed(plain[i])
			legsD += timed(legs[i])
		} else {
			legsD += timed(legs[i])
			plainD += timed(plain[i])
		}
	}
	b.StopTimer()
	rows := float64(b.N * benchBatchRows)
	b.ReportMetric(rows/plainD.Seconds(), "plain_rows/s")
	b.ReportMetric(rows/legsD.Seconds(), "legs_rows/s")
	b.ReportMetric(plainD.Seconds()/legsD.Seconds(), "legs/plain")
}
