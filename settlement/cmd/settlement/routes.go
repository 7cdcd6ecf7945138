package main

import (
	"context"
	"fmt"
	"strings"

	"scenepay/settlement/merchant"
)

// openKeys opens the merchant key table beside the store (same SQLite file
// or PostgreSQL database).
func openKeys(ctx context.Context, db string) (*merchant.Keys, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return merchant.OpenKeysPostgres(ctx, db)
	}
	return merchant.OpenKeysSQLite(ctx, db)
}

// registerRoutes mounts the handlers beyond the operational endpoints: the
// merchant API and pages under /m/. /metrics, /healthz and /readyz are
// mounted before it and take precedence.
func registerRoutes(mux *Mux, d Deps) error {
	keys, err := openKeys(context.Background(), d.DB)
	if err != nil {
		return fmt.Errorf("merchant keys: %w", err)
	}
	h, err := merchant.New(merchant.Config{Store: d.Store, Keys: keys, Clock: d.Clock, Logger: d.Logger, Registerer: d.Registerer})
	if err != nil {
		return err
	}
	mux.Handle("/m/", h.Handle)
	return nil
}
