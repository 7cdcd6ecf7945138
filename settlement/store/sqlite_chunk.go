package store

// Chunked writes of the embedded store's Ingest. One multi-row INSERT
// writes up to sqliteChunk rows (or legs): the cost of a statement
// execution through database/sql and the driver (argument conversion, the
// context watcher, the result) is paid once per chunk instead of once per
// row. The statements are prepared once per store, for chunks of
// sqliteChunk and of every smaller power of two, so that any count is
// written with cached statements: full chunks, then the remainder's
// binary digits (80 rows: 64 + 16).
//
// The statements are INSERT OR FAIL: a constraint error ends the statement
// without undoing its earlier rows, so SQLite keeps no statement journal
// for it (with the default, ABORT, a multi-row INSERT copies every page it
// changes into one, which cost more than the chunking saved). Nothing is
// lost by that: any error ends Ingest, which rolls back the whole
// transaction.
//
// A chunk's INSERT INTO txns skips (ON CONFLICT DO NOTHING) the rows
// already stored under the same (source, LSN), as the single-row INSERT
// did; when it writes fewer rows than it was given, the stored ones are
// read back in one query and compared with the batch's, row by row in
// batch order, exactly as before. The rows this Ingest wrote are told
// apart by their batch id: the batch id is not in batches (Ingest checked
// that in the same transaction), and txns rows are written only by Ingest,
// in the transaction that records their batch.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"strings"
	"time"

	"scenepay/settlement/handoff"
)

// sqliteChunk is the most rows, or legs, one INSERT writes: 128 rows bind
// 1,792 values and 128 legs 896, far below SQLite's limit of 32,766 bound
// variables. It must be a power of two.
const sqliteChunk = 128

// sqliteChunkSizes is the number of cached statement sizes: 1, 2, 4, ...,
// sqliteChunk.
const sqliteChunkSizes = 8

// A compile-time check that sqliteChunk is 1 << (sqliteChunkSizes-1).
var _ [0]struct{} = [sqliteChunk ^ 1<<(sqliteChunkSizes-1)]struct{}{}

const (
	sqliteRowCols = 14
	sqliteLegCols = 7
)

// sqliteStmts are the cached multi-row INSERT statements of one store,
// indexed by log2 of the number of rows or legs they write.
type sqliteStmts struct {
	rows [sqliteChunkSizes]*sql.Stmt
	legs [sqliteChunkSizes]*sql.Stmt
}

// sqliteValues is "VALUES (?, ...), ..." for n tuples of cols values.
func sqliteValues(n, cols int) string {
	tuple := "(" + strings.Repeat("?, ", cols-1) + "?)"
	return "VALUES " + strings.Repeat(tuple+", ", n-1) + tuple
}

// prepareChunks prepares the chunk statements on the store's database. It
// must run outside any transaction: the store has one connection.
func (s *SQLite) prepareChunks(ctx context.Context) error {
	for k := range sqliteChunkSizes {
		n := 1 << k
		var err error
		s.chunks.rows[k], err = s.db.PrepareContext(ctx, `INSERT OR FAIL INTO txns (source, lsn, at, merchant, terminal, scene, op,
			inst_kind, account, amount, auth, txn, orig, batch_id) `+sqliteValues(n, sqliteRowCols)+` ON CONFLICT DO NOTHING`)
		if err != nil {
			return fmt.Errorf("settlement store: prepare: %w", err)
		}
		s.chunks.legs[k], err = s.db.PrepareContext(ctx, `INSERT OR FAIL INTO txn_legs (source, lsn, kind, payee, amount, merchant, at) `+
			sqliteValues(n, sqliteLegCols))
		if err != nil {
			return fmt.Errorf("settlement store: prepare: %w", err)
		}
	}
	return nil
}

// closeChunks closes the prepared chunk statements.
func (s *SQLite) closeChunks() error {
	var errs []error
	for _, sts := range [][sqliteChunkSizes]*sql.Stmt{s.chunks.rows, s.chunks.legs} {
		for _, st := range sts {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// chunkLen is how many of n items the next statement writes: a full
// chunk, else the largest power of two not above n.
func chunkLen(n int) int {
	if n >= sqliteChunk {
		return sqliteChunk
	}
	return 1 << (bits.Len(uint(n)) - 1)
}

type chunkPauseKey struct{}

// WithChunkPause returns ctx carrying pause, which the embedded store's
// Ingest calls after each of its multi-row chunks (the last one too, before
// the commit) with the time the chunk took, instead of only yielding the
// processor. The gateway's handoff rests
// there, so that the settlement feed, which runs in the gateway's process,
// leaves the machine's cores to the goroutines answering terminals.
func WithChunkPause(ctx context.Context, pause func(took time.Duration)) context.Context {
	return context.WithValue(ctx, chunkPauseKey{}, pause)
}

// pendingLeg is a leg of a row this Ingest wrote, not yet written.
type pendingLeg struct {
	r *handoff.Txn
	l *handoff.Leg
}

// sqliteIngest writes one batch's rows and legs in an Ingest transaction.
type sqliteIngest struct {
	ctx     context.Context
	tx      *sql.Tx
	b       *handoff.Batch
	cached  *sqliteStmts
	rows    [sqliteChunkSizes]*sql.Stmt // cached statements bound to tx, on first use
	legs    [sqliteChunkSizes]*sql.Stmt
	source  any // the batch's source (every row's) and id, converted once
	batchID any
	args    []any
	pending []pendingLeg
	res     IngestResult
}

// ingestRowsSQLite writes b's rows and the legs of the rows it adds, and
// checks the rows already stored against b's (ErrConflict if one
// differs). It counts what it wrote and skipped in the result.
func (s *SQLite) ingestRowsSQLite(ctx context.Context, tx *sql.Tx, b *handoff.Batch) (IngestResult, error) {
	w := &sqliteIngest{ctx: ctx, tx: tx, b: b, cached: &s.chunks, source: b.Source, batchID: b.ID,
		args: make([]any, 0, sqliteChunk*sqliteRowCols)}
	pause, _ := ctx.Value(chunkPauseKey{}).(func(time.Duration))
	for rows := b.Rows; len(rows) > 0; {
		n := chunkLen(len(rows))
		start := time.Now()
		if err := w.chunk(rows[:n]); err != nil {
			return IngestResult{}, err
		}
		rows = rows[n:]
		// A chunk is about a millisecond of CPU; a batch of thousands of
		// rows is tens. Yield between chunks so that, in the gateway's
		// process (the embedded store is written by the handoff there),
		// goroutines answering terminals that became runnable meanwhile
		// run now instead of waiting for the scheduler's 10 ms preemption.
		if pause != nil {
			pause(time.Since(start))
		} else {
			runtime.Gosched()
		}
	}
	if err := w.flushLegs(); err != nil {
		return IngestResult{}, err
	}
	return w.res, nil
}

// stmt is the cached statement for n items (a power of two) bound to the
// transaction.
func (w *sqliteIngest) stmt(bound, cached *[sqliteChunkSizes]*sql.Stmt, n int) *sql.Stmt {
	k := bits.TrailingZeros(uint(n))
	if bound[k] == nil {
		bound[k] = w.tx.StmtContext(w.ctx, cached[k])
	}
	return bound[k]
}

// chunk writes one chunk of rows (len a power of two, at most sqliteChunk).
func (w *sqliteIngest) chunk(rows []handoff.Txn) error {
	args := w.args[:0]
	for i := range rows {
		r := &rows[i]
		args = append(args, w.source, int64(r.LSN), r.At.UnixMicro(), r.Merchant, r.Terminal, r.Scene, r.Op,
			r.InstKind, r.Account, r.Amount, r.Auth, int64(r.Txn), int64(r.Orig), w.batchID)
	}
	out, err := w.stmt(&w.rows, &w.cached.rows, len(rows)).ExecContext(w.ctx, args...)
	clear(args)
	if err != nil {
		return fmt.Errorf("settlement store: ingest: %w", err)
	}
	added, err := out.RowsAffected()
	if err != nil {
		return fmt.Errorf("settlement store: ingest: %w", err)
	}
	var stored []handoff.Txn // rows of this chunk stored before, ascending LSN
	if int(added) < len(rows) {
		if stored, err = w.storedRows(rows); err != nil {
			return err
		}
		if len(stored)+int(added) != len(rows) {
			return fmt.Errorf("settlement store: ingest: %s LSNs %d..%d: %d rows written and %d found stored of %d",
				w.b.Source, rows[0].LSN, rows[len(rows)-1].LSN, added, len(stored), len(rows))
		}
	}
	var storedLegs map[uint64][]handoff.Leg
	for i := range rows {
		r := &rows[i]
		if len(stored) == 0 || stored[0].LSN != r.LSN {
			if err := w.addLegs(r); err != nil {
				return err
			}
			w.res.Inserted++
			continue
		}
		old := &stored[0]
		stored = stored[1:]
		// The legs of the rows before this one are written before it is
		// compared, as when each row's legs followed it.
		if err := w.flushLegs(); err != nil {
			return err
		}
		if !sameRow(old, r) {
			return &Error{Code: CodeConflict, Reason: fmt.Sprintf("%s LSN %d was ingested with other content", r.Source, r.LSN)}
		}
		if storedLegs == nil {
			if storedLegs, err = w.storedLegs(rows); err != nil {
				return err
			}
		}
		if !sameLegs(storedLegs[r.LSN], r.Legs) {
			return &Error{Code: CodeConflict, Reason: fmt.Sprintf("%s LSN %d was ingested with other legs", r.Source, r.LSN)}
		}
		w.res.Skipped++
	}
	return nil
}

// storedRows reads the rows in the LSN range of rows that an earlier batch
// stored, ascending by LSN, keeping those whose LSN is one of rows' (a
// batch need not carry every LSN of its range).
func (w *sqliteIngest) storedRows(rows []handoff.Txn) ([]handoff.Txn, error) {
	got, err := scanSQLiteRows(w.tx.QueryContext(w.ctx, `SELECT `+sqliteCols+` FROM txns
		WHERE source = ? AND lsn >= ? AND lsn <= ? AND batch_id <> ? ORDER BY lsn`,
		w.b.Source, int64(rows[0].LSN), int64(rows[len(rows)-1].LSN), w.b.ID))
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(got, func(t handoff.Txn) bool {
		_, found := slices.BinarySearchFunc(rows, t.LSN, func(r handoff.Txn, lsn uint64) int {
			switch {
			case r.LSN < lsn:
				return -1
			case r.LSN > lsn:
				return 1
			}
			return 0
		})
		return !found
	}), nil
}

// storedLegs reads the stored legs in the LSN range of rows, by LSN. Only
// the entries of rows stored before this Ingest are looked at.
func (w *sqliteIngest) storedLegs(rows []handoff.Txn) (map[uint64][]handoff.Leg, error) {
	q, err := w.tx.QueryContext(w.ctx, `SELECT lsn, kind, payee, amount FROM txn_legs WHERE source = ? AND lsn >= ? AND lsn <= ?`,
		w.b.Source, int64(rows[0].LSN), int64(rows[len(rows)-1].LSN))
	if err != nil {
		return nil, fmt.Errorf("settlement store: ingest legs: %w", err)
	}
	defer q.Close()
	out := map[uint64][]handoff.Leg{}
	for q.Next() {
		var lsn int64
		var l handoff.Leg
		if err := q.Scan(&lsn, &l.Kind, &l.Payee, &l.Amount); err != nil {
			return nil, fmt.Errorf("settlement store: ingest legs: %w", err)
		}
		out[uint64(lsn)] = append(out[uint64(lsn)], l)
	}
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("settlement store: ingest legs: %w", err)
	}
	return out, nil
}

// addLegs queues the legs of a row this Ingest wrote, writing a full chunk.
func (w *sqliteIngest) addLegs(r *handoff.Txn) error {
	for j := range r.Legs {
		w.pending = append(w.pending, pendingLeg{r: r, l: &r.Legs[j]})
		if len(w.pending) == sqliteChunk {
			if err := w.flushLegs(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushLegs writes the queued legs.
func (w *sqliteIngest) flushLegs() error {
	for legs := w.pending; len(legs) > 0; {
		n := chunkLen(len(legs))
		args := w.args[:0]
		for _, p := range legs[:n] {
			args = append(args, w.source, int64(p.r.LSN), p.l.Kind, p.l.Payee, p.l.Amount, p.r.Merchant, p.r.At.UnixMicro())
		}
		_, err := w.stmt(&w.legs, &w.cached.legs, n).ExecContext(w.ctx, args...)
		clear(args)
		if err != nil {
			return fmt.Errorf("settlement store: ingest legs: %w", err)
		}
		legs = legs[n:]
	}
	w.pending = w.pending[:0]
	return nil
}
