package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite"

	"scenepay/settlement/handoff"
)

// SQLite is the embedded store, used when no PostgreSQL is configured.
// One connection: SQLite has one writer anyway, and a single connection
// makes every transaction serial without busy retries.
type SQLite struct {
	db     *sql.DB
	chunks sqliteStmts // Ingest's multi-row INSERTs (sqlite_chunk.go)
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the database file at path and
// applies any pending migrations.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	dsn := "file:" + url.PathEscape(path) +
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("settlement store: open sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	s := &SQLite{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.prepareChunks(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	ms, err := loadMigrations("sqlite")
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`); err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("settlement store: migrate: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("settlement store: database schema version %d is newer than this binary (%d)", cur, len(ms))
	}
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("settlement store: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("settlement store: migration %s: %w", m.name, err)
		}
	}
	return tx.Commit()
}

// Close closes the database.
func (s *SQLite) Close() error { return errors.Join(s.closeChunks(), s.db.Close()) }

// Ingest implements Store.
func (s *SQLite) Ingest(ctx context.Context, b *handoff.Batch) (IngestResult, error) {
	var res IngestResult
	if err := b.Validate(); err != nil {
		return res, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("settlement store: begin: %w", err)
	}
	defer tx.Rollback()
	wm := b.Watermark.UnixMicro()
	if _, err := tx.ExecContext(ctx, `INSERT INTO sources (source) VALUES (?) ON CONFLICT DO NOTHING`, b.Source); err != nil {
		return res, fmt.Errorf("settlement store: ingest: %w", err)
	}
	if b.WatermarkOnly() {
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET watermark = max(watermark, ?) WHERE source = ?`, wm, b.Source); err != nil {
			return res, fmt.Errorf("settlement store: ingest: %w", err)
		}
		return res, commit(tx)
	}
	var hw int64
	if err := tx.QueryRowContext(ctx, `SELECT high_water FROM sources WHERE source = ?`, b.Source).Scan(&hw); err != nil {
		return res, fmt.Errorf("settlement store: ingest: %w", err)
	}
	dg := digest(b)
	var old []byte
	switch err := tx.QueryRowContext(ctx, `SELECT digest FROM batches WHERE id = ?`, b.ID).Scan(&old); {
	case err == nil:
		if !bytes.Equal(old, dg) {
			return res, &Error{Code: CodeConflict, Reason: "batch " + b.ID + " was ingested with other rows"}
		}
		res.Duplicate = true
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET watermark = max(watermark, ?) WHERE source = ?`, wm, b.Source); err != nil {
			return res, fmt.Errorf("settlement store: ingest: %w", err)
		}
		return res, commit(tx)
	case !errors.Is(err, sql.ErrNoRows):
		return res, fmt.Errorf("settlement store: ingest: %w", err)
	}
	if b.FirstLSN > uint64(hw)+1 {
		return res, &Error{Code: CodeGap, Reason: fmt.Sprintf("batch %s starts after high water %d + 1", b.ID, hw)}
	}
	// The rows, and the legs of those it adds, in multi-row chunks
	// (sqlite_chunk.go).
	res, err = s.ingestRowsSQLite(ctx, tx, b)
	if err != nil {
		return IngestResult{}, err
	}
	// e-CNY offline receipts and wallet syncs (ecny.go).
	if err := ingestECNYSQLite(ctx, tx, b, uint64(hw)); err != nil {
		return IngestResult{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO batches (id, source, first_lsn, last_lsn, row_count, digest, watermark, ingested_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, b.ID, b.Source, int64(b.FirstLSN), int64(b.LastLSN), len(b.Rows), dg, wm,
		time.Now().UnixMicro()); err != nil {
		return IngestResult{}, fmt.Errorf("settlement store: ingest: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sources SET high_water = max(high_water, ?), watermark = max(watermark, ?)
		WHERE source = ?`, int64(b.LastLSN), wm, b.Source); err != nil {
		return IngestResult{}, fmt.Errorf("settlement store: ingest: %w", err)
	}
	if err := commit(tx); err != nil {
		return IngestResult{}, err
	}
	return res, nil
}

func commit(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("settlement store: commit: %w", err)
	}
	return nil
}

// HighWater implements Store.
func (s *SQLite) HighWater(ctx context.Context, source string) (uint64, error) {
	if err := checkSource(source); err != nil {
		return 0, err
	}
	var hw int64
	err := s.db.QueryRowContext(ctx, `SELECT high_water FROM sources WHERE source = ?`, source).Scan(&hw)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("settlement store: high water: %w", err)
	}
	return uint64(hw), nil
}

// Watermarks implements Store.
func (s *SQLite) Watermarks(ctx context.Context) ([]Watermark, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, high_water, watermark FROM sources ORDER BY source`)
	if err != nil {
		return nil, fmt.Errorf("settlement store: watermarks: %w", err)
	}
	defer rows.Close()
	var out []Watermark
	for rows.Next() {
		var w Watermark
		var hw, at int64
		if err := rows.Scan(&w.Source, &hw, &at); err != nil {
			return nil, fmt.Errorf("settlement store: watermarks: %w", err)
		}
		w.HighWater = uint64(hw)
		if at != 0 {
			w.At = time.UnixMicro(at).UTC()
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

const sqliteCols = `source, lsn, at, merchant, terminal, scene, op, inst_kind, account, amount, auth, txn, orig`

func scanSQLiteRows(rows *sql.Rows, err error) ([]handoff.Txn, error) {
	if err != nil {
		return nil, fmt.Errorf("settlement store: query: %w", err)
	}
	defer rows.Close()
	var out []handoff.Txn
	for rows.Next() {
		var r handoff.Txn
		var lsn, at, txn, orig int64
		if err := rows.Scan(&r.Source, &lsn, &at, &r.Merchant, &r.Terminal, &r.Scene, &r.Op, &r.InstKind,
			&r.Account, &r.Amount, &r.Auth, &txn, &orig); err != nil {
			return nil, fmt.Errorf("settlement store: query: %w", err)
		}
		r.LSN, r.At, r.Txn, r.Orig = uint64(lsn), time.UnixMicro(at).UTC(), uint64(txn), uint64(orig)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settlement store: query: %w", err)
	}
	return out, nil
}

// Transactions implements Store.
func (s *SQLite) Transactions(ctx context.Context, f Filter) (Page, error) {
	limit, cur, err := checkFilter(&f)
	if err != nil {
		return Page{}, err
	}
	from, to := bounds(f.From, f.To)
	q := `SELECT ` + sqliteCols + ` FROM txns WHERE merchant = ? AND at >= ? AND at < ?`
	args := []any{f.Merchant, from.UnixMicro(), to.UnixMicro()}
	if f.Scene != "" {
		q += ` AND scene = ?`
		args = append(args, f.Scene)
	}
	if f.Terminal != "" {
		q += ` AND terminal = ?`
		args = append(args, f.Terminal)
	}
	if f.Op != "" {
		q += ` AND op = ?`
		args = append(args, f.Op)
	}
	if cur != nil {
		q += ` AND (at, source, lsn) > (?, ?, ?)`
		args = append(args, cur.atMicro, cur.source, cur.lsn)
	}
	q += ` ORDER BY at, source, lsn LIMIT ?`
	args = append(args, limit+1)
	rows, err := scanSQLiteRows(s.db.QueryContext(ctx, q, args...))
	if err != nil {
		return Page{}, err
	}
	return page(rows, limit), nil
}

// page trims the one look-ahead row and sets the cursor if there was one.
func page(rows []handoff.Txn, limit int) Page {
	if len(rows) <= limit {
		return Page{Rows: rows}
	}
	rows = rows[:limit]
	last := &rows[limit-1]
	return Page{Rows: rows, Next: cursor{atMicro: last.At.UnixMicro(), lsn: int64(last.LSN), source: last.Source}.encode()}
}

// Totals implements Store. SQLite's sum() raises an error on integer
// overflow rather than wrapping, which is what we want.
func (s *SQLite) Totals(ctx context.Context, merchant string, from, to time.Time) (Totals, error) {
	if merchant == "" {
		return Totals{}, badQuery("merchant is required")
	}
	from, to = bounds(from, to)
	var t Totals
	err := s.db.QueryRowContext(ctx, `SELECT count(*),
		coalesce(sum(CASE WHEN op IN ('purchase','capture','debt_recovery') THEN amount END), 0),
		count(CASE WHEN op IN ('purchase','capture','debt_recovery') THEN 1 END),
		coalesce(sum(CASE WHEN op = 'reversal' THEN amount END), 0),
		count(CASE WHEN op = 'reversal' THEN 1 END),
		coalesce(sum(CASE WHEN op = 'refund' THEN amount END), 0),
		count(CASE WHEN op = 'refund' THEN 1 END)
		FROM txns WHERE merchant = ? AND at >= ? AND at < ?`, merchant, from.UnixMicro(), to.UnixMicro()).
		Scan(&t.Count, &t.Gross, &t.Payments, &t.Reversals, &t.ReversalCount, &t.Refunds, &t.RefundCount)
	if err != nil {
		return Totals{}, fmt.Errorf("settlement store: totals: %w", err)
	}
	return t.withNet()
}

func (t Totals) withNet() (Totals, error) {
	n := t.Gross + t.Reversals
	if (t.Reversals < 0 && n > t.Gross) || (t.Reversals > 0 && n < t.Gross) {
		return Totals{}, errors.New("settlement store: totals: net overflows int64")
	}
	m := n + t.Refunds
	if (t.Refunds < 0 && m > n) || (t.Refunds > 0 && m < n) {
		return Totals{}, errors.New("settlement store: totals: net overflows int64")
	}
	t.Net = m
	return t, nil
}
