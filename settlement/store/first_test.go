package store_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/store"
	"scenepay/settlement/store/pgtest"
	"scenepay/settlement/store/storetest"
)

// TestPostgresFirstTxnAtReadsNoTxns: FirstTxnAt, asked on every scheduler
// pass, plans no read of txns (no index of it leads with at, so a read
// would be the whole table), only txns_first and the recent part.
func TestPostgresFirstTxnAtReadsNoTxns(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t, "first")
	s, err := store.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "EXPLAIN "+store.FirstTxnQuery)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if regexp.MustCompile(`on txns\b`).MatchString(text) || !strings.Contains(text, "on txns_first") ||
		!strings.Contains(text, "on txns_recent") {
		t.Fatalf("FirstTxnAt plan reads txns or misses a part:\n%s", text)
	}
}

// TestPostgresFirstTxnSeededByMigration: migration 0007 takes the earliest
// time of the rows already in txns, so an upgraded store answers as before.
func TestPostgresFirstTxnSeededByMigration(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t, "first")
	s, err := store.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.MakeBatch("gw-1", 1, 9, storetest.Rows("gw-1", 4, 9, "M1")...)
	if _, err := s.Ingest(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MoveRecent(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Back to version 6: the rows are in txns, and nothing records their
	// earliest time.
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `DROP TABLE txns_first; DELETE FROM schema_migrations WHERE version = 7`); err != nil {
		t.Fatal(err)
	}
	s, err = store.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, ok, err := s.FirstTxnAt(ctx)
	if want := storetest.Day.Add(4 * time.Second); err != nil || !ok || !first.Equal(want) {
		t.Fatalf("FirstTxnAt after the upgrade = %v, %v, %v; want %v", first, ok, err, want)
	}
}
