package store_test

import (
	"context"
	"path/filepath"
	"scenepay/settlement/store/pgtest"
	"testing"

	"scenepay/settlement/store"
	"scenepay/settlement/store/storetest"
)

func TestSQLiteContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "settlement.db")
		return func(ctx context.Context) (store.Store, error) { return store.OpenSQLite(ctx, path) }
	})
}

func TestPostgresContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		url := pgtest.Schema(t, "settle")
		return func(ctx context.Context) (store.Store, error) { return store.OpenPostgres(ctx, url) }
	})
}
