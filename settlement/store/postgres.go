package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/handoff"
)

// Postgres is the production store. The schema is chosen by the
// connection's search_path (for example ?search_path=settlement in the
// URL), so several stores can share one database.
type Postgres struct {
	pool *connPool
}

var _ Store = (*Postgres)(nil)

// migrationLockKey serialises migrations of concurrent Opens
// (pg_advisory_xact_lock); the value is arbitrary but fixed.
const migrationLockKey = 0x5e77_1e00

// txnCols is the column order of txns, of the staging table and of COPY.
var txnCols = []string{"source", "lsn", "at", "merchant", "terminal", "scene", "op", "inst_kind",
	"account", "amount", "auth", "txn", "orig", "batch_id"}

// OpenPostgres connects, applies pending migrations and returns the store.
func OpenPostgres(ctx context.Context, connString string) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("settlement store: %w", err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("settlement store: connect: %w", err)
	}
	err = migratePostgres(ctx, c)
	c.Close(context.Background())
	if err != nil {
		return nil, err
	}
	// Each connection gets its own staging table once, outside any
	// ingest transaction: ON COMMIT DELETE ROWS empties it at the end of
	// every transaction, committed or not.
	setup := func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS handoff_stage (LIKE txns) ON COMMIT DELETE ROWS`)
		return err
	}
	return &Postgres{pool: newConnPool(cfg, setup)}, nil
}

func migratePostgres(ctx context.Context, c *pgx.Conn) error {
	ms, err := loadMigrations("postgres")
	if err != nil {
		return err
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockKey)); err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("settlement store: database schema version %d is newer than this binary (%d)", cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("settlement store: migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return fmt.Errorf("settlement store: migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	return nil
}

// Close closes idle connections; connections in use close on release.
func (s *Postgres) Close() error {
	s.pool.close()
	return nil
}

// Ingest implements Store.
//
// The source row is locked FOR UPDATE first, so ingests of one source are
// serial and the high water read under the lock is exact. Two paths:
//   - FirstLSN > high water (the normal case): no stored row of this source
//     can have an LSN in the batch, so the rows are copied straight into
//     the unindexed txns_recent (recent.go; the binary COPY of copybin.go).
//   - FirstLSN <= high water (a re-cut batch overlapping an ingested one):
//     COPY into the per-connection staging table, then insert the rows
//     stored in neither txns nor txns_recent, then check that every skipped
//     row equals the stored one.
//
// The batch row and the high water/watermark update commit with the rows.
func (s *Postgres) Ingest(ctx context.Context, b *handoff.Batch) (IngestResult, error) {
	if err := b.Validate(); err != nil {
		return IngestResult{}, err
	}
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return IngestResult{}, err
	}
	defer s.pool.release(c)
	res, err := s.ingest(ctx, c, b)
	if err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

func (s *Postgres) ingest(ctx context.Context, c *pgx.Conn, b *handoff.Batch) (IngestResult, error) {
	var res IngestResult
	// The digest (SHA-256 over every row) is computed beside the round
	// trips and the COPY rather than before them.
	dgc := make(chan []byte, 1)
	go func() { dgc <- digest(b) }()
	tx, err := c.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("settlement store: begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	// One round trip: create and lock the source row, then look the batch
	// id up. The statements run in order, each with its own snapshot, so
	// the lookup sees every batch committed before the lock was granted.
	var hw int64
	var old []byte
	known := false
	pre := &pgx.Batch{}
	pre.Queue(`INSERT INTO sources (source) VALUES ($1) ON CONFLICT DO NOTHING`, b.Source)
	pre.Queue(`SELECT high_water FROM sources WHERE source = $1 FOR UPDATE`, b.Source).
		QueryRow(func(r pgx.Row) error { return r.Scan(&hw) })
	if !b.WatermarkOnly() {
		pre.Queue(`SELECT digest FROM batches WHERE id = $1`, b.ID).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				known = true
				if err := rows.Scan(&old); err != nil {
					return err
				}
			}
			return rows.Err()
		})
	}
	if err := tx.SendBatch(ctx, pre).Close(); err != nil {
		return res, fmt.Errorf("settlement store: ingest: %w", err)
	}
	setWatermark := func() error {
		_, err := tx.Exec(ctx, `UPDATE sources SET watermark = greatest(watermark, $2) WHERE source = $1`, b.Source, b.Watermark)
		return err
	}
	if b.WatermarkOnly() {
		if err := setWatermark(); err != nil {
			return res, fmt.Errorf("settlement store: ingest: %w", err)
		}
		return res, commitPG(ctx, tx)
	}
	if known {
		if !bytes.Equal(old, <-dgc) {
			return res, &Error{Code: CodeConflict, Reason: "batch " + b.ID + " was ingested with other rows"}
		}
		res.Duplicate = true
		if err := setWatermark(); err != nil {
			return res, fmt.Errorf("settlement store: ingest: %w", err)
		}
		return res, commitPG(ctx, tx)
	}
	if b.FirstLSN > uint64(hw)+1 {
		return res, &Error{Code: CodeGap, Reason: fmt.Sprintf("batch %s starts after high water %d + 1", b.ID, hw)}
	}
	if len(b.Rows) > 0 {
		if b.FirstLSN > uint64(hw) {
			n, err := copyBatch(ctx, tx, "txns_recent", b)
			if err != nil {
				return res, fmt.Errorf("settlement store: ingest copy: %w", err)
			}
			res.Inserted = int(n)
		} else {
			if _, err := tx.Exec(ctx, recutPlan); err != nil {
				return res, fmt.Errorf("settlement store: ingest: %w", err)
			}
			if _, err := copyBatch(ctx, tx, "handoff_stage", b); err != nil {
				return res, fmt.Errorf("settlement store: ingest copy: %w", err)
			}
			tag, err := tx.Exec(ctx, recutInsert, b.Source, int64(b.FirstLSN), hw)
			if err != nil {
				return res, fmt.Errorf("settlement store: ingest: %w", err)
			}
			res.Inserted = int(tag.RowsAffected())
			res.Skipped = len(b.Rows) - res.Inserted
			if res.Skipped > 0 {
				var differ int64
				if err := tx.QueryRow(ctx, recutDiffer, b.Source, int64(b.FirstLSN), hw).Scan(&differ); err != nil {
					return IngestResult{}, fmt.Errorf("settlement store: ingest: %w", err)
				}
				if differ > 0 {
					return IngestResult{}, &Error{Code: CodeConflict,
						Reason: fmt.Sprintf("batch %s: %d LSNs were ingested with other content", b.ID, differ)}
				}
			}
		}
	}
	if len(b.Rows) > 0 {
		// The rows' division legs, right after the rows (legs.go).
		if err := ingestLegsPG(ctx, tx, b, uint64(hw)); err != nil {
			return IngestResult{}, err
		}
	}
	// e-CNY offline receipts and wallet syncs (ecny.go).
	if err := ingestECNYPG(ctx, tx, b, uint64(hw)); err != nil {
		return IngestResult{}, err
	}
	// The batch record and the high water: one round trip.
	post := &pgx.Batch{}
	post.Queue(`INSERT INTO batches (id, source, first_lsn, last_lsn, row_count, digest, watermark)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, b.ID, b.Source, int64(b.FirstLSN), int64(b.LastLSN), len(b.Rows), <-dgc, b.Watermark)
	post.Queue(`UPDATE sources SET high_water = greatest(high_water, $2), watermark = greatest(watermark, $3)
		WHERE source = $1`, b.Source, int64(b.LastLSN), b.Watermark)
	if err := tx.SendBatch(ctx, post).Close(); err != nil {
		return IngestResult{}, fmt.Errorf("settlement store: ingest: %w", err)
	}
	if err := commitPG(ctx, tx); err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

func commitPG(ctx context.Context, tx pgx.Tx) error {
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("settlement store: commit: %w", err)
	}
	return nil
}

// HighWater implements Store.
func (s *Postgres) HighWater(ctx context.Context, source string) (uint64, error) {
	if err := checkSource(source); err != nil {
		return 0, err
	}
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer s.pool.release(c)
	var hw int64
	err = c.QueryRow(ctx, `SELECT high_water FROM sources WHERE source = $1`, source).Scan(&hw)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("settlement store: high water: %w", err)
	}
	return uint64(hw), nil
}

// Watermarks implements Store.
func (s *Postgres) Watermarks(ctx context.Context) ([]Watermark, error) {
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer s.pool.release(c)
	rows, err := c.Query(ctx, `SELECT source, high_water, watermark FROM sources ORDER BY source`)
	if err != nil {
		return nil, fmt.Errorf("settlement store: watermarks: %w", err)
	}
	defer rows.Close()
	var out []Watermark
	for rows.Next() {
		var w Watermark
		var hw int64
		var at *time.Time
		if err := rows.Scan(&w.Source, &hw, &at); err != nil {
			return nil, fmt.Errorf("settlement store: watermarks: %w", err)
		}
		w.HighWater = uint64(hw)
		if at != nil {
			w.At = at.UTC()
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settlement store: watermarks: %w", err)
	}
	return out, nil
}

// Transactions implements Store.
func (s *Postgres) Transactions(ctx context.Context, f Filter) (Page, error) {
	limit, cur, err := checkFilter(&f)
	if err != nil {
		return Page{}, err
	}
	from, to := bounds(f.From, f.To)
	q := `SELECT source, lsn, at, merchant, terminal, scene, op, inst_kind, account, amount, auth, txn, orig
		FROM txns_all WHERE merchant = $1 AND at >= $2 AND at < $3`
	args := []any{f.Merchant, from, to}
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(cond, len(args))
	}
	if f.Scene != "" {
		add(` AND scene = $%d`, f.Scene)
	}
	if f.Terminal != "" {
		add(` AND terminal = $%d`, f.Terminal)
	}
	if f.Op != "" {
		add(` AND op = $%d`, f.Op)
	}
	if cur != nil {
		args = append(args, time.UnixMicro(cur.atMicro).UTC(), cur.source, cur.lsn)
		q += fmt.Sprintf(` AND (at, source, lsn) > ($%d, $%d, $%d)`, len(args)-2, len(args)-1, len(args))
	}
	add(` ORDER BY at, source, lsn LIMIT $%d`, limit+1)
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return Page{}, err
	}
	defer s.pool.release(c)
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return Page{}, fmt.Errorf("settlement store: transactions: %w", err)
	}
	defer rows.Close()
	var out []handoff.Txn
	for rows.Next() {
		var r handoff.Txn
		var lsn, txn, orig int64
		if err := rows.Scan(&r.Source, &lsn, &r.At, &r.Merchant, &r.Terminal, &r.Scene, &r.Op, &r.InstKind,
			&r.Account, &r.Amount, &r.Auth, &txn, &orig); err != nil {
			return Page{}, fmt.Errorf("settlement store: transactions: %w", err)
		}
		r.LSN, r.At, r.Txn, r.Orig = uint64(lsn), r.At.UTC(), uint64(txn), uint64(orig)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("settlement store: transactions: %w", err)
	}
	return page(out, limit), nil
}

// Totals implements Store. sum(bigint) is numeric in PostgreSQL, so the
// sum itself cannot wrap; scanning a value beyond int64 fails instead.
func (s *Postgres) Totals(ctx context.Context, merchant string, from, to time.Time) (Totals, error) {
	if merchant == "" {
		return Totals{}, badQuery("merchant is required")
	}
	from, to = bounds(from, to)
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return Totals{}, err
	}
	defer s.pool.release(c)
	var t Totals
	err = c.QueryRow(ctx, `SELECT count(*),
		coalesce(sum(amount) FILTER (WHERE op IN ('purchase','capture','debt_recovery')), 0)::bigint,
		count(*) FILTER (WHERE op IN ('purchase','capture','debt_recovery')),
		coalesce(sum(amount) FILTER (WHERE op = 'reversal'), 0)::bigint,
		count(*) FILTER (WHERE op = 'reversal'),
		coalesce(sum(amount) FILTER (WHERE op = 'refund'), 0)::bigint,
		count(*) FILTER (WHERE op = 'refund')
		FROM txns_all WHERE merchant = $1 AND at >= $2 AND at < $3`, merchant, from, to).
		Scan(&t.Count, &t.Gross, &t.Payments, &t.Reversals, &t.ReversalCount, &t.Refunds, &t.RefundCount)
	if err != nil {
		return Totals{}, fmt.Errorf("settlement store: totals: %w", err)
	}
	return t.withNet()
}
