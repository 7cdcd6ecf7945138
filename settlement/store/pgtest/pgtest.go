// Package pgtest owns the PostgreSQL test fixture every settlement-facing
// test shares: the machine's server (SCENEPAY_TEST_PG overrides it) and a
// schema private to one test, created on demand and dropped when the test
// ends, so that parallel test processes never see each other's tables.
// Import it only from _test files.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// URL is the test database.
func URL() string {
	if u := os.Getenv("SCENEPAY_TEST_PG"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Schema creates a schema named prefix_<random>, drops it when t ends, and
// returns a connection string whose search_path points at it.
func Schema(t testing.TB, prefix string) string {
	t.Helper()
	ctx := context.Background()
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := prefix + "_" + hex.EncodeToString(rnd[:])
	c, err := pgx.Connect(ctx, URL())
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", URL(), err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, URL())
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
	if strings.Contains(URL(), "?") {
		sep = "&"
	}
	return URL() + sep + "search_path=" + schema
}
