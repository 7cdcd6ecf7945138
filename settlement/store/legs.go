package store

// Per-payment division legs (handoff.Txn.Legs) in both stores: written by
// Ingest in the same transaction as their row, compared as part of the row
// when a re-cut batch meets a stored row, and summed per merchant, kind and
// payee for clearing (Legs). Table txn_legs (migration 0003) repeats the
// row's merchant and time so that the clearing query reads it alone.
// PostgreSQL copies legs into txn_legs_recent and reads txn_legs_all, like
// the rows (recent.go, migration 0004).

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/handoff"
)

// divisionKind maps a leg kind to the Division kind clearing reports.
func divisionKind(legKind string) (string, error) {
	switch legKind {
	case handoff.LegMarketFee:
		return DivisionMarketFee, nil
	case handoff.LegInsPooled:
		return DivisionInsurancePooled, nil
	case handoff.LegInsPersonal:
		return DivisionInsurancePersonal, nil
	}
	return "", fmt.Errorf("settlement store: unknown leg kind %q stored", legKind)
}

// sameLegs compares two rows' legs as sets (a kind appears at most once).
func sameLegs(a, b []handoff.Leg) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	byKind := func(p, q handoff.Leg) int { return strings.Compare(p.Kind, q.Kind) }
	slices.SortFunc(x, byKind)
	slices.SortFunc(y, byKind)
	return slices.Equal(x, y)
}

// legSums collects the rows of a legs query (merchant, kind, payee, sum)
// into Legs' answer.
type legSums map[string][]Division

func (m legSums) add(merchant, kind, payee string, amount int64) error {
	k, err := divisionKind(kind)
	if err != nil {
		return err
	}
	m[merchant] = append(m[merchant], Division{Kind: k, Payee: payee, Amount: amount})
	return nil
}

// sort orders each merchant's list by Division kind and payee (the query
// orders by leg kind, whose order differs).
func (m legSums) sort() {
	for _, ds := range m {
		slices.SortFunc(ds, func(a, b Division) int {
			if c := strings.Compare(a.Kind, b.Kind); c != 0 {
				return c
			}
			return strings.Compare(a.Payee, b.Payee)
		})
	}
}

func checkLegsWindow(w Window) error {
	if w.Start.IsZero() || !w.Start.Before(w.CutOff) {
		return badQuery("window must start before its cut-off")
	}
	return nil
}

// legCols is the column order of txn_legs for COPY.
var legCols = []string{"source", "lsn", "kind", "payee", "amount", "merchant", "at"}

// copyLegs feeds the legs of a batch's rows (all of them, or those
// where keep(i) is true) to CopyFrom.
type copyLegs struct {
	b    *handoff.Batch
	keep func(i int) bool
	i, j int
	vals [7]any
}

func newCopyLegs(b *handoff.Batch, keep func(int) bool) *copyLegs {
	return &copyLegs{b: b, keep: keep, i: 0, j: -1}
}

func (c *copyLegs) Next() bool {
	c.j++
	for c.i < len(c.b.Rows) {
		if c.j < len(c.b.Rows[c.i].Legs) && (c.keep == nil || c.keep(c.i)) {
			return true
		}
		c.i, c.j = c.i+1, 0
	}
	return false
}

func (c *copyLegs) Values() ([]any, error) {
	r := &c.b.Rows[c.i]
	l := &r.Legs[c.j]
	c.vals = [7]any{r.Source, int64(r.LSN), l.Kind, l.Payee, l.Amount, r.Merchant, r.At}
	return c.vals[:], nil
}

func (c *copyLegs) Err() error { return nil }

func batchHasLegs(b *handoff.Batch) bool {
	for i := range b.Rows {
		if len(b.Rows[i].Legs) > 0 {
			return true
		}
	}
	return false
}

// ingestLegsPG writes the legs of a batch whose rows were just written by
// ingest (tx still open), with hw the source's high water read under the
// lock. A batch past the high water has only new rows: one COPY. A re-cut
// batch (rare) may meet stored rows: their stored legs must equal the
// batch's (else ErrConflict); the legs of the rows it added are copied.
// Rows this batch added are told apart by their batch id.
func ingestLegsPG(ctx context.Context, tx pgx.Tx, b *handoff.Batch, hw uint64) error {
	if b.FirstLSN > hw {
		if !batchHasLegs(b) {
			return nil
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{pgLegsTarget}, legCols, newCopyLegs(b, nil)); err != nil {
			return fmt.Errorf("settlement store: ingest legs copy: %w", err)
		}
		return nil
	}
	last := min(b.LastLSN, hw)
	rows, err := tx.Query(ctx, `SELECT lsn FROM `+pgRowsRelation+` WHERE source = $1 AND lsn >= $2 AND lsn <= $3 AND batch_id <> $4`,
		b.Source, int64(b.FirstLSN), int64(last), b.ID)
	if err != nil {
		return fmt.Errorf("settlement store: ingest legs: %w", err)
	}
	old := map[uint64]bool{}
	for rows.Next() {
		var lsn int64
		if err := rows.Scan(&lsn); err != nil {
			rows.Close()
			return fmt.Errorf("settlement store: ingest legs: %w", err)
		}
		old[uint64(lsn)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("settlement store: ingest legs: %w", err)
	}
	stored := map[uint64][]handoff.Leg{}
	if len(old) > 0 {
		rows, err := tx.Query(ctx, `SELECT lsn, kind, payee, amount FROM txn_legs_all WHERE source = $1 AND lsn >= $2 AND lsn <= $3`,
			b.Source, int64(b.FirstLSN), int64(last))
		if err != nil {
			return fmt.Errorf("settlement store: ingest legs: %w", err)
		}
		for rows.Next() {
			var lsn int64
			var l handoff.Leg
			if err := rows.Scan(&lsn, &l.Kind, &l.Payee, &l.Amount); err != nil {
				rows.Close()
				return fmt.Errorf("settlement store: ingest legs: %w", err)
			}
			stored[uint64(lsn)] = append(stored[uint64(lsn)], l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("settlement store: ingest legs: %w", err)
		}
	}
	differ := 0
	for i := range b.Rows {
		r := &b.Rows[i]
		if old[r.LSN] && !sameLegs(stored[r.LSN], r.Legs) {
			differ++
		}
	}
	if differ > 0 {
		return &Error{Code: CodeConflict, Reason: fmt.Sprintf("batch %s: %d LSNs were ingested with other legs", b.ID, differ)}
	}
	keep := func(i int) bool { return !old[b.Rows[i].LSN] }
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{pgLegsTarget}, legCols, newCopyLegs(b, keep)); err != nil {
		return fmt.Errorf("settlement store: ingest legs copy: %w", err)
	}
	return nil
}

// pgRowsRelation is the relation ingestLegsPG reads stored rows from;
// pgLegsTarget is the table it copies legs into (both recent.go).
const (
	pgRowsRelation = "txns_all"
	pgLegsTarget   = "txn_legs_recent"
)

// Legs implements Clearing.
func (s *Postgres) Legs(ctx context.Context, w Window) (map[string][]Division, error) {
	if err := checkLegsWindow(w); err != nil {
		return nil, err
	}
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer s.pool.release(c)
	rows, err := c.Query(ctx, `SELECT merchant, kind, payee, sum(amount)::bigint FROM txn_legs_all
		WHERE at >= $1 AND at < $2 GROUP BY merchant, kind, payee ORDER BY merchant, kind, payee`, w.Start.UTC(), w.CutOff.UTC())
	if err != nil {
		return nil, fmt.Errorf("settlement store: legs: %w", err)
	}
	defer rows.Close()
	return collectLegs(rows)
}

// Legs implements Clearing. SQLite's sum() raises an error on overflow.
func (s *SQLite) Legs(ctx context.Context, w Window) (map[string][]Division, error) {
	if err := checkLegsWindow(w); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT merchant, kind, payee, sum(amount) FROM txn_legs
		WHERE at >= ? AND at < ? GROUP BY merchant, kind, payee ORDER BY merchant, kind, payee`,
		w.Start.UnixMicro(), w.CutOff.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("settlement store: legs: %w", err)
	}
	defer rows.Close()
	return collectLegs(rows)
}

// rowScanner is what pgx.Rows and *sql.Rows have in common.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// collectLegs reads (merchant, kind, payee, sum) rows of either backend's
// Legs query into divisions per merchant, in a stable order.
func collectLegs(rows rowScanner) (map[string][]Division, error) {
	out := legSums{}
	for rows.Next() {
		var m, k, p string
		var amt int64
		if err := rows.Scan(&m, &k, &p, &amt); err != nil {
			return nil, fmt.Errorf("settlement store: legs: %w", err)
		}
		if err := out.add(m, k, p, amt); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settlement store: legs: %w", err)
	}
	out.sort()
	return out, nil
}
