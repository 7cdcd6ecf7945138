package store

// The recent part of the PostgreSQL store (migration 0004). Ingest copies
// rows into txns_recent, a table without keys or indexes, so that a batch
// costs about what a bare COPY costs; the two b-tree indexes of txns (the
// primary key and the merchant index) are paid later, by MoveRecent, off
// the handoff's path. Every read goes through the view txns_all (txns
// UNION ALL txns_recent), so a move changes no answer. The rows' division
// legs follow the same pattern: txn_legs_recent, moved into txn_legs by
// the same move (legs repeat their row's time), read through
// txn_legs_all.
//
// Exactly once without a key on txns_recent:
//   - a batch starting past the source's high water, read under the source
//     row's FOR UPDATE lock, cannot overlap a stored row (the high water
//     moves only with the rows that justify it), and the batches primary
//     key refuses a second copy of the same batch id;
//   - a re-cut batch (FirstLSN <= high water) is staged and compared with
//     both parts in single statements (recutInsert, recutDiffer), so a
//     move committing between two statements is seen whole by each;
//   - a move is one statement (DELETE ... RETURNING feeding INSERT), so it
//     inserts exactly the rows it deletes, and txns' primary key backs it:
//     a duplicate would abort the move, not land twice.

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// RecentRowsMax is how many rows the recent part may hold before the
// clearing scheduler moves them into the indexed part at its next pass
// (besides the move at every window close and on start). Reads of the
// recent part scan it, so this bounds their cost (measured: 7-9 ms for the
// statement query over 100k recent rows, 37 ms over 250k); the move costs
// about the same per row whatever its size.
const RecentRowsMax = 100_000

// moverLockKey serialises concurrent moves (pg_advisory_xact_lock). Two
// moves would still be correct (each inserts only what it deleted); the
// lock only keeps the second from waiting on the first row by row.
const moverLockKey = 0x5e77_1e01

// recutInsert adds the staged rows stored in neither part. $1 source, $2
// FirstLSN, $3 high water: only LSNs in [$2, $3] can be stored, which
// bounds the primary key range read from txns and the rows kept from the
// scan of txns_recent. Both are meant to be hash joins (recutPlan).
const recutInsert = `INSERT INTO txns_recent SELECT * FROM handoff_stage s
	WHERE NOT EXISTS (SELECT 1 FROM txns t WHERE t.source = $1 AND t.lsn >= $2 AND t.lsn <= $3
		AND t.source = s.source AND t.lsn = s.lsn)
	AND NOT EXISTS (SELECT 1 FROM txns_recent r WHERE r.source = $1 AND r.lsn >= $2 AND r.lsn <= $3
		AND r.source = s.source AND r.lsn = s.lsn)`

// recutDiffer counts the staged rows stored in either part with other
// content (same parameters as recutInsert).
var recutDiffer = func() string {
	const differ = `(t.at, t.merchant, t.terminal, t.scene, t.op, t.inst_kind, t.account, t.amount, t.auth, t.txn, t.orig)
		IS DISTINCT FROM (s.at, s.merchant, s.terminal, s.scene, s.op, s.inst_kind, s.account, s.amount, s.auth, s.txn, s.orig)`
	return `SELECT (SELECT count(*) FROM handoff_stage s JOIN txns t USING (source, lsn)
			WHERE t.source = $1 AND t.lsn >= $2 AND t.lsn <= $3 AND ` + differ + `)
		+ (SELECT count(*) FROM handoff_stage s JOIN txns_recent t USING (source, lsn)
			WHERE t.source = $1 AND t.lsn >= $2 AND t.lsn <= $3 AND ` + differ + `)`
}()

// recutPlan keeps the re-cut statements off nested loops for the rest of
// the ingest transaction. txns_recent's statistics lag behind its size (it
// fills and empties between autovacuum's analyses), and an estimate of a
// few rows made the planner rescan it once per staged row: 10k staged rows
// against 150k recent ones took seconds where a hash join takes
// milliseconds. The statements after it in the transaction join nothing.
const recutPlan = `SET LOCAL enable_nestloop = off`

// MoveRecent implements Store: one statement moves the recent rows with
// at < before (all of them for a zero before) into txns and gives their
// earliest time, which lowers txns_first in the same transaction (what
// FirstTxnAt reads instead of txns), then VACUUM
// makes their space in txns_recent reusable. Ingest goes on meanwhile:
// rows it commits after the move's snapshot stay for the next move.
func (s *Postgres) MoveRecent(ctx context.Context, before time.Time) (int64, error) {
	_, before = bounds(time.Time{}, before)
	cols, legs := strings.Join(txnCols, ", "), strings.Join(legCols, ", ")
	var n int64
	err := s.with(ctx, "move recent", func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(moverLockKey)); err != nil {
			return err
		}
		var moved int64
		var first *time.Time
		if err := tx.QueryRow(ctx, `WITH moved AS (DELETE FROM txns_recent WHERE at < $1 RETURNING `+cols+`),
			ins AS (INSERT INTO txns (`+cols+`) SELECT `+cols+` FROM moved)
			SELECT count(*), min(at) FROM moved`, before).Scan(&moved, &first); err != nil {
			return err
		}
		// txns_first (migration 0007) follows the earliest time in txns
		// in the same transaction, so FirstTxnAt never reads txns.
		if first != nil {
			if _, err := tx.Exec(ctx, `UPDATE txns_first SET at = $1 WHERE at IS NULL OR at > $1`, *first); err != nil {
				return err
			}
		}
		// The legs repeat their row's time, so the same bound moves the
		// legs of the moved rows (reads see both parts either way).
		if _, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM txn_legs_recent WHERE at < $1 RETURNING `+legs+`)
			INSERT INTO txn_legs (`+legs+`) SELECT `+legs+` FROM moved`, before); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		n = moved
		if n > 0 {
			_, err = c.Exec(ctx, `VACUUM txns_recent, txn_legs_recent`)
		}
		return err
	})
	return n, err
}

// RecentRows implements Store; its cost is bounded by limit.
func (s *Postgres) RecentRows(ctx context.Context, limit int64) (int64, error) {
	if limit <= 0 {
		return 0, badQuery("limit must be positive")
	}
	var n int64
	err := s.with(ctx, "recent rows", func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM (SELECT FROM txns_recent LIMIT $1) r`, limit).Scan(&n)
	})
	return n, err
}

// MoveRecent implements Store: SQLite writes into its indexed table
// directly and has nothing to move.
func (s *SQLite) MoveRecent(ctx context.Context, before time.Time) (int64, error) { return 0, nil }

// RecentRows implements Store: always 0 for SQLite.
func (s *SQLite) RecentRows(ctx context.Context, limit int64) (int64, error) {
	if limit <= 0 {
		return 0, badQuery("limit must be positive")
	}
	return 0, nil
}
