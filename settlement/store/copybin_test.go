package store_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
	"scenepay/settlement/store/pgtest"
	"scenepay/settlement/store/storetest"
	"scenepay/terminals"
)

// TestPostgresCopyEncoding: rows at the edges of every field's range,
// ingested through the store's own binary COPY encoder, are stored exactly
// as pgx's generic CopyFrom stores the same values, and read back equal.
func TestPostgresCopyEncoding(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t, "settle")
	s, err := store.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const src = "gw.edge_1-X"
	last := uint64(math.MaxInt64)
	first := last - 5
	long := func(c byte, n int) string { return strings.Repeat(string(c), n) }
	rows := []handoff.Txn{
		storetest.Row(src, first, "M1", 1),
		storetest.Row(src, first+1, long('m', handoff.MerchantLenMax), terminals.MaxAmount),
		storetest.Row(src, first+2, "M~!", 1),
		storetest.Row(src, first+3, "M1", 1),
		storetest.Row(src, last, "M1", 1),
	}
	// 2000-01-01 00:00:00.000001 in Shanghai is 1999 in UTC: a negative
	// offset from PostgreSQL's epoch.
	rows[0].At = time.Date(2000, 1, 1, 0, 0, 0, 1000, time.FixedZone("CST", 8*3600))
	rows[1].At = time.Date(9999, 12, 30, 23, 59, 59, 999999000, time.UTC)
	rows[1].Terminal, rows[1].Account, rows[1].Auth = long('t', 32), "county:"+long('a', 57), long('9', 3)+long('x', 61)
	rows[2].Op, rows[2].Amount, rows[2].Orig, rows[2].Txn = handoff.OpRefund, -1, math.MaxInt64, math.MaxInt64
	rows[2].Scene, rows[2].InstKind, rows[2].Auth = handoff.SceneKiosk, "ecny", ""
	rows[3].At = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	// LSNs below first settle nothing (declines): one empty range.
	if _, err := s.Ingest(ctx, storetest.MakeBatch(src, 1, first-1)); err != nil {
		t.Fatal(err)
	}
	b := storetest.MakeBatch(src, first, last, rows...)
	b.Watermark = rows[1].At
	if res, err := s.Ingest(ctx, b); err != nil || res.Inserted != len(rows) {
		t.Fatalf("Ingest = %+v, %v", res, err)
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE TABLE ref (LIKE txns)`); err != nil {
		t.Fatal(err)
	}
	cols := []string{"source", "lsn", "at", "merchant", "terminal", "scene", "op", "inst_kind",
		"account", "amount", "auth", "txn", "orig", "batch_id"}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"ref"}, cols, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		r := &rows[i]
		return []any{r.Source, int64(r.LSN), r.At, r.Merchant, r.Terminal, r.Scene, r.Op, r.InstKind,
			r.Account, r.Amount, r.Auth, int64(r.Txn), int64(r.Orig), b.ID}, nil
	})); err != nil {
		t.Fatal(err)
	}
	var differ int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM ((SELECT * FROM txns_recent EXCEPT ALL SELECT * FROM ref)
		UNION ALL (SELECT * FROM ref EXCEPT ALL SELECT * FROM txns_recent)) d`).Scan(&differ); err != nil {
		t.Fatal(err)
	}
	if differ != 0 {
		t.Fatalf("%d rows differ between the store's COPY and pgx's CopyFrom", differ)
	}
	seen := 0
	for _, m := range []string{"M1", rows[1].Merchant, "M~!"} {
		p, err := s.Transactions(ctx, store.Filter{Merchant: m, Limit: store.PageLimitMax})
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range p.Rows {
			for _, want := range rows {
				if got.LSN != want.LSN {
					continue
				}
				seen++
				if !got.At.Equal(want.At) || got.At.Location() != time.UTC {
					t.Fatalf("LSN %d: at %v, want %v in UTC", got.LSN, got.At, want.At)
				}
				got.At, want.At = time.Time{}, time.Time{}
				if !sameFields(got, want) {
					t.Fatalf("LSN %d read back as\n%+v\nwant\n%+v", got.LSN, got, want)
				}
			}
		}
	}
	if seen != len(rows) {
		t.Fatalf("read back %d rows, want %d", seen, len(rows))
	}
}

func sameFields(a, b handoff.Txn) bool {
	return a.Source == b.Source && a.LSN == b.LSN && a.Merchant == b.Merchant && a.Terminal == b.Terminal &&
		a.Scene == b.Scene && a.Op == b.Op && a.InstKind == b.InstKind && a.Account == b.Account &&
		a.Amount == b.Amount && a.Auth == b.Auth && a.Txn == b.Txn && a.Orig == b.Orig
}
