package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/store"
	"scenepay/settlement/store/storetest"
)

func TestSQLiteContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "settlement.db")
		return func(ctx context.Context) (store.Store, error) { return store.OpenSQLite(ctx, path) }
	})
}

// pgURL is the test database; SCENEPAY_TEST_PG overrides it.
func pgURL() string {
	if u := os.Getenv("SCENEPAY_TEST_PG"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// pgSchema creates a uniquely named schema, drops it when the test ends,
// and returns a connection string whose search_path points at it, so that
// parallel runs never see each other's tables.
func pgSchema(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := "settle_" + hex.EncodeToString(rnd[:])
	c, err := pgx.Connect(ctx, pgURL())
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", pgURL(), err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, pgURL())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(pgURL(), "?") {
		sep = "&"
	}
	return pgURL() + sep + "search_path=" + schema
}

func TestPostgresContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		url := pgSchema(t)
		return func(ctx context.Context) (store.Store, error) { return store.OpenPostgres(ctx, url) }
	})
}
