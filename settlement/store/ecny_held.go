package store

// What the scheduler reads and trims of the e-CNY receipts on every pass
// (migration 0006 indexes both queries):
//
//   - HeldUnsynced: the receipts held back from payout right now, for the
//     operators' gauges: a receipt of a SETTLED window that no window has
//     paid (released_window NULL). A receipt of a window not settled yet
//     is not held yet: its window has not paid anyone.
//
//   - PruneSyncs: ecny_syncs only serves receipts ingested after the sync
//     (the sync itself marked the receipts stored before it, in its own
//     ingest transaction), and a sync marks only receipts before it. A
//     receipt can still be ingested only into a window that is not
//     settled: a window closes once every source's watermark is past its
//     cut-off plus grace (settlement/clearing). So a sync older than the
//     start of the oldest window not SETTLED can mark nothing that may
//     still come, and is deleted. The syncs of a wallet whose stored
//     receipts are all synced are not deleted for that alone: a receipt
//     of another gateway, handed off late within an open window, may
//     still need them.

import (
	"context"
	"database/sql"
	"time"

	"github.com/jackc/pgx/v5"
)

// SyncsPruneMax bounds the syncs one PruneSyncs call deletes.
const SyncsPruneMax = 100_000

// HeldSummary sums the e-CNY offline receipts held back from payout.
type HeldSummary struct {
	Receipts int64
	Amount   int64     // fen
	Oldest   time.Time // time (at) of the oldest held receipt; zero when none
}

const heldWhere = ` WHERE u.released_window IS NULL AND EXISTS (SELECT 1 FROM windows w
	WHERE w.state = 'SETTLED' AND u.at >= w.starts_at AND u.at < w.cutoff_at)`

// HeldUnsynced implements Clearing. A sum beyond int64 is an error.
func (s *SQLite) HeldUnsynced(ctx context.Context) (HeldSummary, error) {
	var h HeldSummary
	var oldest sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(u.amount), 0), min(u.at) FROM ecny_unsynced u`+heldWhere).
		Scan(&h.Receipts, &h.Amount, &oldest); err != nil {
		return HeldSummary{}, wrapSQLite("held receipts", err)
	}
	if oldest.Valid {
		h.Oldest = time.UnixMicro(oldest.Int64).UTC()
	}
	return h, nil
}

// HeldUnsynced implements Clearing. A sum beyond int64 is an error (the
// cast of the numeric sum refuses it).
func (s *Postgres) HeldUnsynced(ctx context.Context) (HeldSummary, error) {
	var h HeldSummary
	err := s.with(ctx, "held receipts", func(c *pgx.Conn) error {
		var oldest *time.Time
		if err := c.QueryRow(ctx, `SELECT count(*), coalesce(sum(u.amount), 0)::bigint, min(u.at) FROM ecny_unsynced u`+heldWhere).
			Scan(&h.Receipts, &h.Amount, &oldest); err != nil {
			return err
		}
		if oldest != nil {
			h.Oldest = oldest.UTC()
		}
		return nil
	})
	return h, err
}

func checkPruneLimit(limit int) error {
	if limit < 1 || limit > SyncsPruneMax {
		return badQuery("prune limit must be 1..100000")
	}
	return nil
}

// pruneHorizon is the start of the oldest window not SETTLED: NULL (no
// pruning) when there is none.
const pruneHorizon = `(SELECT min(starts_at) FROM windows WHERE state <> 'SETTLED')`

// PruneSyncs implements Clearing.
func (s *SQLite) PruneSyncs(ctx context.Context, limit int) (int64, error) {
	if err := checkPruneLimit(limit); err != nil {
		return 0, err
	}
	out, err := s.db.ExecContext(ctx, `DELETE FROM ecny_syncs WHERE rowid IN (
		SELECT rowid FROM ecny_syncs WHERE at < `+pruneHorizon+` ORDER BY at LIMIT ?)`, limit)
	if err != nil {
		return 0, wrapSQLite("prune syncs", err)
	}
	n, err := out.RowsAffected()
	return n, wrapSQLite("prune syncs", err)
}

// PruneSyncs implements Clearing.
func (s *Postgres) PruneSyncs(ctx context.Context, limit int) (int64, error) {
	if err := checkPruneLimit(limit); err != nil {
		return 0, err
	}
	var n int64
	err := s.with(ctx, "prune syncs", func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `DELETE FROM ecny_syncs WHERE (source, lsn, account) IN (
			SELECT source, lsn, account FROM ecny_syncs WHERE at < `+pruneHorizon+` ORDER BY at LIMIT $1)`, limit)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}
