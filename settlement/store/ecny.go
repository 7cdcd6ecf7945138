package store

// e-CNY "double offline" receipts held back from payout until the paying
// wallet syncs (DOMAIN.md; handoff.Txn.Unsynced, handoff.Sync).
//
// Ingest, in the same transaction as the rows (migration 0005):
//   - every Unsynced row becomes a receipt in ecny_unsynced (source, lsn,
//     merchant, account, at, amount); if the store already holds a later
//     sync of its wallet (from another source's batch), it is synced at once;
//   - every sync of the batch (Batch.Syncs and the rows for which
//     Txn.SyncsWallet is true) is kept in ecny_syncs and sets synced_at on
//     the wallet's earlier receipts that have none. "Earlier" is (at, source,
//     lsn) order: by time, and by LSN within one source at the same time.
//
// A re-sent batch changes nothing (its id is known); a re-cut batch that
// meets a stored row must agree on it being a receipt (and on the receipt)
// and on its syncs' times, else ErrConflict, as for rows.
//
// SettleWindow, in the same transaction as the window's settlements, marks
// the receipts it pays (released_window): those of the window that have
// synced, and earlier ones that synced since their window held them. It
// checks that the settlements' Held and Released are exactly what it marks,
// so a sync ingested between clearing and settling cannot pay a receipt
// twice or never (the window is then refused with ErrConflict and cleared
// again on the next pass).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/handoff"
)

// UnsyncedPerWindowMax bounds the receipts one Unsynced call returns.
const UnsyncedPerWindowMax = 1_000_000

// UnsyncedReceipt is one e-CNY double-offline payment received by
// Merchant from wallet Account.
type UnsyncedReceipt struct {
	Source         string
	LSN            uint64
	Merchant       string
	Account        string
	At             time.Time
	Amount         int64     // fen, positive
	SyncedAt       time.Time // the wallet's sync the store saw first; zero until then
	ReleasedWindow string    // the window whose payout carried it; "" until then
}

// walletSync is one sync of a batch, from Batch.Syncs or from a row.
type walletSync struct {
	account string
	at      time.Time
	lsn     uint64
}

// batchSyncs lists the syncs of b: its Syncs and its rows that are syncs
// by themselves, in LSN order.
func batchSyncs(b *handoff.Batch) []walletSync {
	var out []walletSync
	j := 0
	for i := range b.Rows {
		r := &b.Rows[i]
		for j < len(b.Syncs) && b.Syncs[j].LSN < r.LSN {
			out = append(out, walletSync{b.Syncs[j].Account, b.Syncs[j].At, b.Syncs[j].LSN})
			j++
		}
		if r.SyncsWallet() {
			out = append(out, walletSync{r.Account, r.At, r.LSN})
		}
	}
	for ; j < len(b.Syncs); j++ {
		out = append(out, walletSync{b.Syncs[j].Account, b.Syncs[j].At, b.Syncs[j].LSN})
	}
	return out
}

func batchHasReceipts(b *handoff.Batch) bool {
	for i := range b.Rows {
		if b.Rows[i].Unsynced {
			return true
		}
	}
	return false
}

func unsyncedConflict(b *handoff.Batch, lsn uint64, what string) error {
	return &Error{Code: CodeConflict, Reason: fmt.Sprintf("batch %s: %s LSN %d was ingested with %s", b.ID, b.Source, lsn, what)}
}

// recutLSNs reads the LSNs of the rows that earlier batches stored in a
// re-cut batch's range (the query's one column); the caller closes rows.
func recutLSNs(rows rowScanner) (map[uint64]bool, error) {
	old := map[uint64]bool{}
	for rows.Next() {
		var lsn int64
		if err := rows.Scan(&lsn); err != nil {
			return nil, fmt.Errorf("settlement store: ingest unsynced: %w", err)
		}
		old[uint64(lsn)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settlement store: ingest unsynced: %w", err)
	}
	return old, nil
}

// checkRecutReceipts compares a re-cut batch's rows with the receipts
// stored for rows ingested by earlier batches (old: their LSNs; receipts:
// those stored in the batch's range).
func checkRecutReceipts(b *handoff.Batch, old map[uint64]bool, receipts []UnsyncedReceipt) error {
	stored := make(map[uint64]UnsyncedReceipt, len(receipts))
	for _, x := range receipts {
		stored[x.LSN] = x
	}
	for i := range b.Rows {
		r := &b.Rows[i]
		if !old[r.LSN] {
			continue
		}
		x, ok := stored[r.LSN]
		switch {
		case ok != r.Unsynced:
			return unsyncedConflict(b, r.LSN, "another unsynced flag")
		case ok && (x.Merchant != r.Merchant || x.Account != r.Account || !x.At.Equal(r.At) || x.Amount != r.Amount):
			return unsyncedConflict(b, r.LSN, "another unsynced receipt")
		}
	}
	return nil
}

// ingestECNYSQLite writes the receipts and syncs of b (rows already
// written in tx; hw is the source's high water before this batch).
func ingestECNYSQLite(ctx context.Context, tx *sql.Tx, b *handoff.Batch, hw uint64) error {
	syncs := batchSyncs(b)
	if b.FirstLSN <= hw {
		if err := recutECNYSQLite(ctx, tx, b, hw); err != nil {
			return err
		}
	}
	if len(syncs) == 0 && !batchHasReceipts(b) {
		return nil
	}
	wrap := func(err error) error { return fmt.Errorf("settlement store: ingest unsynced: %w", err) }
	for i := range b.Rows {
		r := &b.Rows[i]
		if !r.Unsynced {
			continue
		}
		at := r.At.UnixMicro()
		if _, err := tx.ExecContext(ctx, `INSERT INTO ecny_unsynced (source, lsn, merchant, account, at, amount, synced_at)
			VALUES (?, ?, ?, ?, ?, ?, (SELECT min(s.at) FROM ecny_syncs s WHERE s.account = ?
				AND (s.at > ? OR (s.at = ? AND s.source = ? AND s.lsn > ?))))
			ON CONFLICT DO NOTHING`, r.Source, int64(r.LSN), r.Merchant, r.Account, at, r.Amount,
			r.Account, at, at, r.Source, int64(r.LSN)); err != nil {
			return wrap(err)
		}
	}
	for _, sy := range syncs {
		at := sy.at.UnixMicro()
		out, err := tx.ExecContext(ctx, `INSERT INTO ecny_syncs (source, lsn, account, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			b.Source, int64(sy.lsn), sy.account, at)
		if err != nil {
			return wrap(err)
		}
		if n, _ := out.RowsAffected(); n == 0 {
			var old int64
			if err := tx.QueryRowContext(ctx, `SELECT at FROM ecny_syncs WHERE source = ? AND lsn = ? AND account = ?`,
				b.Source, int64(sy.lsn), sy.account).Scan(&old); err != nil {
				return wrap(err)
			}
			if old != at {
				return unsyncedConflict(b, sy.lsn, "another wallet sync time")
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE ecny_unsynced SET synced_at = ? WHERE account = ? AND synced_at IS NULL
			AND (at < ? OR (at = ? AND source = ? AND lsn < ?))`, at, sy.account, at, at, b.Source, int64(sy.lsn)); err != nil {
			return wrap(err)
		}
	}
	return nil
}

// recutECNYSQLite checks a re-cut batch's rows against the receipts of
// rows that earlier batches stored.
func recutECNYSQLite(ctx context.Context, tx *sql.Tx, b *handoff.Batch, hw uint64) error {
	last := int64(min(b.LastLSN, hw))
	rows, err := tx.QueryContext(ctx, `SELECT lsn FROM txns WHERE source = ? AND lsn >= ? AND lsn <= ? AND batch_id <> ?`,
		b.Source, int64(b.FirstLSN), last, b.ID)
	if err != nil {
		return fmt.Errorf("settlement store: ingest unsynced: %w", err)
	}
	old, err := recutLSNs(rows)
	rows.Close()
	if err != nil {
		return err
	}
	stored, err := scanReceiptsSQLite(tx.QueryContext(ctx, `SELECT `+receiptCols+` FROM ecny_unsynced
		WHERE source = ? AND lsn >= ? AND lsn <= ?`, b.Source, int64(b.FirstLSN), last))
	if err != nil {
		return err
	}
	return checkRecutReceipts(b, old, stored)
}

const receiptCols = `source, lsn, merchant, account, at, amount, synced_at, released_window`

func scanReceiptsSQLite(rows *sql.Rows, err error) ([]UnsyncedReceipt, error) {
	if err != nil {
		return nil, fmt.Errorf("settlement store: unsynced: %w", err)
	}
	defer rows.Close()
	var out []UnsyncedReceipt
	for rows.Next() {
		var x UnsyncedReceipt
		var lsn, at int64
		var synced sql.NullInt64
		var released sql.NullString
		if err := rows.Scan(&x.Source, &lsn, &x.Merchant, &x.Account, &at, &x.Amount, &synced, &released); err != nil {
			return nil, fmt.Errorf("settlement store: unsynced: %w", err)
		}
		x.LSN, x.At = uint64(lsn), time.UnixMicro(at).UTC()
		if synced.Valid {
			x.SyncedAt = time.UnixMicro(synced.Int64).UTC()
		}
		x.ReleasedWindow = released.String
		if len(out) >= UnsyncedPerWindowMax {
			return nil, fmt.Errorf("settlement store: unsynced: more than %d receipts", UnsyncedPerWindowMax)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settlement store: unsynced: %w", err)
	}
	return out, nil
}

// unsyncedWhere selects the receipts clearing needs for window :id with
// [:start, :cutoff): all of the window's, and the earlier ones this window
// releases (synced and not yet paid, or paid by this window).
const unsyncedWhere = ` WHERE (at >= :start AND at < :cutoff)
	OR (at < :start AND (released_window = :id OR (released_window IS NULL AND synced_at IS NOT NULL)))
	ORDER BY at, source, lsn`

// Unsynced implements Clearing.
func (s *SQLite) Unsynced(ctx context.Context, w Window) ([]UnsyncedReceipt, error) {
	if err := checkWindow(&w); err != nil {
		return nil, err
	}
	return scanReceiptsSQLite(s.db.QueryContext(ctx, `SELECT `+receiptCols+` FROM ecny_unsynced`+unsyncedWhere,
		sql.Named("start", w.Start.UnixMicro()), sql.Named("cutoff", w.CutOff.UnixMicro()), sql.Named("id", w.ID)))
}

// unsyncedSums are one merchant's held and released fen of a window.
type unsyncedSums struct{ held, released int64 }

// checkUnsyncedSums compares what SettleWindow marked (and left held)
// with the settlements' Held and Released.
func checkUnsyncedSums(id string, ss []Settlement, got map[string]unsyncedSums) error {
	want := map[string]unsyncedSums{}
	for i := range ss {
		if ss[i].Held != 0 || ss[i].Released != 0 {
			want[ss[i].Merchant] = unsyncedSums{ss[i].Held, ss[i].Released}
		}
	}
	for m, g := range got {
		if g == (unsyncedSums{}) {
			delete(got, m)
		}
	}
	if len(got) != len(want) {
		return unsyncedChanged(id)
	}
	for m, g := range got {
		if want[m] != g {
			return unsyncedChanged(id)
		}
	}
	return nil
}

// addHeld reads (merchant, held sum) rows of either backend into got.
func addHeld(rows rowScanner, got map[string]unsyncedSums) error {
	for rows.Next() {
		var m string
		var amt int64
		if err := rows.Scan(&m, &amt); err != nil {
			return err
		}
		g := got[m]
		g.held = amt
		got[m] = g
	}
	return rows.Err()
}

func unsyncedChanged(id string) error {
	return &Error{Code: CodeConflict, Reason: "window " + id +
		": held and released e-CNY receipts differ from the settlements (a wallet synced since clearing); clear again"}
}

// settleUnsyncedSQLite marks the receipts window id pays and checks the
// settlements' Held and Released against them (tx: SettleWindow's).
func settleUnsyncedSQLite(ctx context.Context, tx *sql.Tx, id string, ss []Settlement) error {
	var start, cutoff int64
	if err := tx.QueryRowContext(ctx, `SELECT starts_at, cutoff_at FROM windows WHERE id = ?`, id).Scan(&start, &cutoff); err != nil {
		return err
	}
	got := map[string]unsyncedSums{}
	rows, err := tx.QueryContext(ctx, `UPDATE ecny_unsynced SET released_window = ?
		WHERE at < ? AND synced_at IS NOT NULL AND released_window IS NULL RETURNING merchant, at, amount`, id, cutoff)
	if err != nil {
		return err
	}
	for rows.Next() {
		var m string
		var at, amt int64
		if err := rows.Scan(&m, &at, &amt); err != nil {
			rows.Close()
			return err
		}
		if at < start {
			g := got[m]
			g.released += amt
			got[m] = g
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = tx.QueryContext(ctx, `SELECT merchant, sum(amount) FROM ecny_unsynced
		WHERE at >= ? AND at < ? AND (released_window IS NULL OR released_window <> ?) GROUP BY merchant`, start, cutoff, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	if err := addHeld(rows, got); err != nil {
		return err
	}
	return checkUnsyncedSums(id, ss, got)
}

// ingestECNYPG is ingestECNYSQLite for PostgreSQL: one statement for the
// receipts and two for the syncs, whatever the batch's size.
func ingestECNYPG(ctx context.Context, tx pgx.Tx, b *handoff.Batch, hw uint64) error {
	syncs := batchSyncs(b)
	if b.FirstLSN <= hw {
		if err := recutECNYPG(ctx, tx, b, hw); err != nil {
			return err
		}
	}
	if len(syncs) == 0 && !batchHasReceipts(b) {
		return nil
	}
	wrap := func(err error) error { return fmt.Errorf("settlement store: ingest unsynced: %w", err) }
	if batchHasReceipts(b) {
		var lsns, amts []int64
		var mers, accts []string
		var ats []time.Time
		for i := range b.Rows {
			if r := &b.Rows[i]; r.Unsynced {
				lsns, amts = append(lsns, int64(r.LSN)), append(amts, r.Amount)
				mers, accts, ats = append(mers, r.Merchant), append(accts, r.Account), append(ats, r.At)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ecny_unsynced (source, lsn, merchant, account, at, amount, synced_at)
			SELECT $1, r.lsn, r.merchant, r.account, r.at, r.amount,
				(SELECT min(s.at) FROM ecny_syncs s WHERE s.account = r.account
					AND (s.at > r.at OR (s.at = r.at AND s.source = $1 AND s.lsn > r.lsn)))
			FROM unnest($2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[]) AS r(lsn, merchant, account, at, amount)
			ON CONFLICT (source, lsn) DO NOTHING`, b.Source, lsns, mers, accts, ats, amts); err != nil {
			return wrap(err)
		}
	}
	if len(syncs) == 0 {
		return nil
	}
	lsns := make([]int64, len(syncs))
	accts := make([]string, len(syncs))
	ats := make([]time.Time, len(syncs))
	for i, sy := range syncs {
		lsns[i], accts[i], ats[i] = int64(sy.lsn), sy.account, sy.at
	}
	const batchSyncs = `unnest($2::bigint[], $3::text[], $4::timestamptz[]) AS b(lsn, account, at)`
	var differ int64
	q := &pgx.Batch{}
	q.Queue(`INSERT INTO ecny_syncs (source, lsn, account, at) SELECT $1, b.lsn, b.account, b.at FROM `+batchSyncs+`
		ON CONFLICT DO NOTHING`, b.Source, lsns, accts, ats)
	if b.FirstLSN <= hw {
		q.Queue(`SELECT count(*) FROM `+batchSyncs+` JOIN ecny_syncs s ON s.source = $1 AND s.lsn = b.lsn
			AND s.account = b.account WHERE s.at <> b.at`, b.Source, lsns, accts, ats).
			QueryRow(func(r pgx.Row) error { return r.Scan(&differ) })
	}
	q.Queue(`UPDATE ecny_unsynced u SET synced_at = x.at FROM (
			SELECT u2.source, u2.lsn, min(b.at) AS at FROM `+batchSyncs+`
			JOIN ecny_unsynced u2 ON u2.account = b.account AND u2.synced_at IS NULL
				AND (u2.at < b.at OR (u2.at = b.at AND u2.source = $1 AND u2.lsn < b.lsn))
			GROUP BY u2.source, u2.lsn) x
		WHERE u.source = x.source AND u.lsn = x.lsn`, b.Source, lsns, accts, ats)
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return wrap(err)
	}
	if differ > 0 {
		return &Error{Code: CodeConflict, Reason: fmt.Sprintf("batch %s: %d wallet syncs were ingested with another time", b.ID, differ)}
	}
	return nil
}

// recutECNYPG checks a re-cut batch's rows against the receipts of rows
// that earlier batches stored (called after the rows are written, so rows
// of this batch are told apart by their batch id, as for legs).
func recutECNYPG(ctx context.Context, tx pgx.Tx, b *handoff.Batch, hw uint64) error {
	last := int64(min(b.LastLSN, hw))
	rows, err := tx.Query(ctx, `SELECT lsn FROM `+pgRowsRelation+` WHERE source = $1 AND lsn >= $2 AND lsn <= $3 AND batch_id <> $4`,
		b.Source, int64(b.FirstLSN), last, b.ID)
	if err != nil {
		return fmt.Errorf("settlement store: ingest unsynced: %w", err)
	}
	old, err := recutLSNs(rows)
	rows.Close()
	if err != nil {
		return err
	}
	stored, err := scanReceiptsPG(tx.Query(ctx, `SELECT `+receiptCols+` FROM ecny_unsynced WHERE source = $1 AND lsn >= $2 AND lsn <= $3`,
		b.Source, int64(b.FirstLSN), last))
	if err != nil {
		return err
	}
	return checkRecutReceipts(b, old, stored)
}

func scanReceiptsPG(rows pgx.Rows, err error) ([]UnsyncedReceipt, error) {
	if err != nil {
		return nil, fmt.Errorf("settlement store: unsynced: %w", err)
	}
	defer rows.Close()
	var out []UnsyncedReceipt
	for rows.Next() {
		var x UnsyncedReceipt
		var lsn int64
		var synced *time.Time
		var released *string
		if err := rows.Scan(&x.Source, &lsn, &x.Merchant, &x.Account, &x.At, &x.Amount, &synced, &released); err != nil {
			return nil, fmt.Errorf("settlement store: unsynced: %w", err)
		}
		x.LSN, x.At = uint64(lsn), x.At.UTC()
		if synced != nil {
			x.SyncedAt = synced.UTC()
		}
		if released != nil {
			x.ReleasedWindow = *released
		}
		if len(out) >= UnsyncedPerWindowMax {
			return nil, fmt.Errorf("settlement store: unsynced: more than %d receipts", UnsyncedPerWindowMax)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settlement store: unsynced: %w", err)
	}
	return out, nil
}

// Unsynced implements Clearing.
func (s *Postgres) Unsynced(ctx context.Context, w Window) ([]UnsyncedReceipt, error) {
	if err := checkWindow(&w); err != nil {
		return nil, err
	}
	var out []UnsyncedReceipt
	err := s.with(ctx, "unsynced", func(c *pgx.Conn) error {
		var err error
		out, err = scanReceiptsPG(c.Query(ctx, `SELECT `+receiptCols+` FROM ecny_unsynced WHERE (at >= $1 AND at < $2)
			OR (at < $1 AND (released_window = $3 OR (released_window IS NULL AND synced_at IS NOT NULL)))
			ORDER BY at, source, lsn`, w.Start.UTC(), w.CutOff.UTC(), w.ID))
		return err
	})
	return out, err
}

// settleUnsyncedPG is settleUnsyncedSQLite for PostgreSQL. The UPDATE
// marks exactly the rows it returns, so a sync committed concurrently is
// either marked and counted here or left for the next window.
func settleUnsyncedPG(ctx context.Context, tx pgx.Tx, id string, ss []Settlement) error {
	var start, cutoff time.Time
	if err := tx.QueryRow(ctx, `SELECT starts_at, cutoff_at FROM windows WHERE id = $1`, id).Scan(&start, &cutoff); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("window " + id)
		}
		return err
	}
	got := map[string]unsyncedSums{}
	rows, err := tx.Query(ctx, `UPDATE ecny_unsynced SET released_window = $1
		WHERE at < $2 AND synced_at IS NOT NULL AND released_window IS NULL RETURNING merchant, at, amount`, id, cutoff)
	if err != nil {
		return err
	}
	for rows.Next() {
		var m string
		var at time.Time
		var amt int64
		if err := rows.Scan(&m, &at, &amt); err != nil {
			rows.Close()
			return err
		}
		if at.Before(start) {
			g := got[m]
			g.released += amt
			got[m] = g
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = tx.Query(ctx, `SELECT merchant, sum(amount)::bigint FROM ecny_unsynced
		WHERE at >= $1 AND at < $2 AND released_window IS DISTINCT FROM $3 GROUP BY merchant`, start, cutoff, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	if err := addHeld(rows, got); err != nil {
		return err
	}
	return checkUnsyncedSums(id, ss, got)
}
