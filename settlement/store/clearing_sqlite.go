package store

// SQLite implementation of Clearing. Times are Unix microseconds, 0 for
// "not yet".

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

var _ Clearing = (*SQLite)(nil)

func wrapSQLite(what string, err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("settlement store: %s: %w", what, err)
}

func microOrZero(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

const sqliteWindowCols = `id, starts_at, cutoff_at, state, closed_at, settled_at`

type scanner interface{ Scan(...any) error }

func scanSQLiteWindow(row scanner) (Window, error) {
	var w Window
	var start, cut, closed, settled int64
	if err := row.Scan(&w.ID, &start, &cut, &w.State, &closed, &settled); err != nil {
		return Window{}, err
	}
	w.Start, w.CutOff = time.UnixMicro(start).UTC(), time.UnixMicro(cut).UTC()
	w.ClosedAt, w.SettledAt = microOrZero(closed), microOrZero(settled)
	return w, nil
}

func (s *SQLite) windows(ctx context.Context, q string, args ...any) ([]Window, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrapSQLite("windows", err)
	}
	defer rows.Close()
	var out []Window
	for rows.Next() {
		w, err := scanSQLiteWindow(rows)
		if err != nil {
			return nil, wrapSQLite("windows", err)
		}
		out = append(out, w)
	}
	return out, wrapSQLite("windows", rows.Err())
}

// OpenWindow implements Clearing.
func (s *SQLite) OpenWindow(ctx context.Context, w Window) (Window, bool, error) {
	if err := checkWindow(&w); err != nil {
		return Window{}, false, err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO windows (id, starts_at, cutoff_at, state) VALUES (?, ?, ?, 'OPEN')
		ON CONFLICT (id) DO NOTHING`, w.ID, w.Start.UnixMicro(), w.CutOff.UnixMicro())
	if err != nil {
		return Window{}, false, wrapSQLite("open window", err)
	}
	n, _ := res.RowsAffected()
	out, err := s.Window(ctx, w.ID)
	return out, n == 1, err
}

// Window implements Clearing.
func (s *SQLite) Window(ctx context.Context, id string) (Window, error) {
	if err := checkWindowID(id); err != nil {
		return Window{}, err
	}
	w, err := scanSQLiteWindow(s.db.QueryRowContext(ctx, `SELECT `+sqliteWindowCols+` FROM windows WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Window{}, notFound("window " + id)
	}
	return w, wrapSQLite("window", err)
}

// Windows implements Clearing.
func (s *SQLite) Windows(ctx context.Context, from, to string) ([]Window, error) {
	if to == "" {
		to = "9999-99-99"
	}
	return s.windows(ctx, `SELECT `+sqliteWindowCols+` FROM windows WHERE id >= ? AND id <= ? ORDER BY id LIMIT ?`,
		from, to, WindowsListMax)
}

// UnsettledWindows implements Clearing.
func (s *SQLite) UnsettledWindows(ctx context.Context) ([]Window, error) {
	return s.windows(ctx, `SELECT `+sqliteWindowCols+` FROM windows WHERE state <> 'SETTLED' ORDER BY id LIMIT ?`,
		WindowsListMax)
}

// LatestWindow implements Clearing.
func (s *SQLite) LatestWindow(ctx context.Context) (Window, bool, error) {
	out, err := s.windows(ctx, `SELECT `+sqliteWindowCols+` FROM windows ORDER BY id DESC LIMIT 1`)
	if err != nil || len(out) == 0 {
		return Window{}, false, err
	}
	return out[0], true, nil
}

// CloseWindow implements Clearing.
func (s *SQLite) CloseWindow(ctx context.Context, id string, at time.Time) (bool, error) {
	if err := checkWindowID(id); err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE windows SET state = 'CLOSED', closed_at = ? WHERE id = ? AND state = 'OPEN'`,
		at.UnixMicro(), id)
	if err != nil {
		return false, wrapSQLite("close window", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, nil
	}
	_, err = s.Window(ctx, id)
	return false, err
}

// SettleWindow implements Clearing.
func (s *SQLite) SettleWindow(ctx context.Context, id string, at time.Time, ss []Settlement) (bool, error) {
	if err := checkWindowID(id); err != nil {
		return false, err
	}
	if err := checkSettlements(id, ss); err != nil {
		return false, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, wrapSQLite("settle window", err)
	}
	defer tx.Rollback()
	var state WindowState
	err = tx.QueryRowContext(ctx, `SELECT state FROM windows WHERE id = ?`, id).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return false, notFound("window " + id)
	}
	if err != nil {
		return false, wrapSQLite("settle window", err)
	}
	switch state {
	case WindowSettled:
		return false, nil
	case WindowOpen:
		return false, &Error{Code: CodeState, Reason: "window " + id + " is OPEN; close it first"}
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO merchant_settlements (window_id, merchant, txn_count, gross, payments,
		reversals, reversal_count, refunds, refund_count, net, fee, payable, held, released)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return false, wrapSQLite("settle window", err)
	}
	defer ins.Close()
	insDiv, err := tx.PrepareContext(ctx, `INSERT INTO settlement_divisions (window_id, merchant, kind, payee, amount)
		VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return false, wrapSQLite("settle window", err)
	}
	defer insDiv.Close()
	for i := range ss {
		x := &ss[i]
		if _, err := ins.ExecContext(ctx, id, x.Merchant, x.Count, x.Gross, x.Payments, x.Reversals, x.ReversalCount,
			x.Refunds, x.RefundCount, x.Net, x.Fee, x.Payable, x.Held, x.Released); err != nil {
			return false, wrapSQLite("settle window", err)
		}
		for _, d := range x.Divisions {
			if _, err := insDiv.ExecContext(ctx, id, x.Merchant, d.Kind, d.Payee, d.Amount); err != nil {
				return false, wrapSQLite("settle window", err)
			}
		}
	}
	if err := settleUnsyncedSQLite(ctx, tx, id, ss); err != nil {
		return false, wrapSQLite("settle window", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE windows SET state = 'SETTLED', settled_at = ? WHERE id = ?`, at.UnixMicro(), id); err != nil {
		return false, wrapSQLite("settle window", err)
	}
	if err := commit(tx); err != nil {
		return false, err
	}
	return true, nil
}

func (s *SQLite) settlements(ctx context.Context, window, merchant string) ([]Settlement, error) {
	if err := checkWindowID(window); err != nil {
		return nil, err
	}
	q := `SELECT merchant, txn_count, gross, payments, reversals, reversal_count, refunds, refund_count, net, fee, payable,
		held, released FROM merchant_settlements WHERE window_id = ?`
	dq := `SELECT merchant, kind, payee, amount FROM settlement_divisions WHERE window_id = ?`
	args := []any{window}
	if merchant != "" {
		q += ` AND merchant = ?`
		dq += ` AND merchant = ?`
		args = append(args, merchant)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY merchant LIMIT `+fmt.Sprint(SettlementsPerWindowMax), args...)
	if err != nil {
		return nil, wrapSQLite("settlements", err)
	}
	var out []Settlement
	idx := map[string]int{}
	for rows.Next() {
		x := Settlement{Window: window}
		if err := rows.Scan(&x.Merchant, &x.Count, &x.Gross, &x.Payments, &x.Reversals, &x.ReversalCount,
			&x.Refunds, &x.RefundCount, &x.Net, &x.Fee, &x.Payable, &x.Held, &x.Released); err != nil {
			rows.Close()
			return nil, wrapSQLite("settlements", err)
		}
		idx[x.Merchant] = len(out)
		out = append(out, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrapSQLite("settlements", err)
	}
	rows, err = s.db.QueryContext(ctx, dq+` ORDER BY merchant, kind, payee`, args...)
	if err != nil {
		return nil, wrapSQLite("settlements", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m string
		var d Division
		if err := rows.Scan(&m, &d.Kind, &d.Payee, &d.Amount); err != nil {
			return nil, wrapSQLite("settlements", err)
		}
		if i, ok := idx[m]; ok {
			out[i].Divisions = append(out[i].Divisions, d)
		}
	}
	return out, wrapSQLite("settlements", rows.Err())
}

// Settlements implements Clearing.
func (s *SQLite) Settlements(ctx context.Context, window string) ([]Settlement, error) {
	return s.settlements(ctx, window, "")
}

// Settlement implements Clearing.
func (s *SQLite) Settlement(ctx context.Context, window, merchant string) (Settlement, error) {
	return oneSettlement(ctx, s.settlements, window, merchant)
}

// SceneTotals implements Clearing. SQLite's sum() fails on overflow.
func (s *SQLite) SceneTotals(ctx context.Context, from, to time.Time) ([]SceneTotals, error) {
	from, to = bounds(from, to)
	rows, err := s.db.QueryContext(ctx, `SELECT merchant, scene, count(*),
		coalesce(sum(CASE WHEN op IN ('purchase','capture','debt_recovery') THEN amount END), 0),
		count(CASE WHEN op IN ('purchase','capture','debt_recovery') THEN 1 END),
		coalesce(sum(CASE WHEN op = 'reversal' THEN amount END), 0),
		count(CASE WHEN op = 'reversal' THEN 1 END),
		coalesce(sum(CASE WHEN op = 'refund' THEN amount END), 0),
		count(CASE WHEN op = 'refund' THEN 1 END)
		FROM txns WHERE at >= ? AND at < ? GROUP BY merchant, scene ORDER BY merchant, scene`, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return nil, wrapSQLite("scene totals", err)
	}
	defer rows.Close()
	var out []SceneTotals
	for rows.Next() {
		if len(out) >= SettlementsPerWindowMax {
			return nil, badQuery("more merchant scenes in the period than SettlementsPerWindowMax")
		}
		var t SceneTotals
		if err := rows.Scan(&t.Merchant, &t.Scene, &t.Count, &t.Gross, &t.Payments, &t.Reversals, &t.ReversalCount,
			&t.Refunds, &t.RefundCount); err != nil {
			return nil, wrapSQLite("scene totals", err)
		}
		if t.Totals, err = t.Totals.withNet(); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, wrapSQLite("scene totals", rows.Err())
}

// FirstTxnAt implements Clearing.
func (s *SQLite) FirstTxnAt(ctx context.Context) (time.Time, bool, error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(at) FROM txns`).Scan(&at); err != nil {
		return time.Time{}, false, wrapSQLite("first txn", err)
	}
	if !at.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMicro(at.Int64).UTC(), true, nil
}

// PutFeeRate implements Clearing.
func (s *SQLite) PutFeeRate(ctx context.Context, r FeeRate) error {
	if err := checkFeeRate(&r); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO fee_rates (merchant, scene, rate) VALUES (?, ?, ?)
		ON CONFLICT (merchant, scene) DO UPDATE SET rate = excluded.rate`, r.Merchant, r.Scene, r.Rate)
	return wrapSQLite("fee rate", err)
}

// FeeRates implements Clearing.
func (s *SQLite) FeeRates(ctx context.Context) ([]FeeRate, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT merchant, scene, rate FROM fee_rates ORDER BY merchant, scene LIMIT ?`, FeeRatesMax)
	if err != nil {
		return nil, wrapSQLite("fee rates", err)
	}
	defer rows.Close()
	var out []FeeRate
	for rows.Next() {
		var r FeeRate
		if err := rows.Scan(&r.Merchant, &r.Scene, &r.Rate); err != nil {
			return nil, wrapSQLite("fee rates", err)
		}
		out = append(out, r)
	}
	return out, wrapSQLite("fee rates", rows.Err())
}

// PutMerchant implements Clearing.
func (s *SQLite) PutMerchant(ctx context.Context, m Merchant) error {
	if err := checkMerchant(&m); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO merchants (id, name, payee_account, market_operator, market_fee_rate)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name,
		payee_account = excluded.payee_account, market_operator = excluded.market_operator,
		market_fee_rate = excluded.market_fee_rate`, m.ID, m.Name, m.PayeeAccount, m.MarketOperator, m.MarketFeeRate)
	return wrapSQLite("merchant", err)
}

func (s *SQLite) merchants(ctx context.Context, id string) ([]Merchant, error) {
	q := `SELECT id, name, payee_account, market_operator, market_fee_rate FROM merchants`
	var args []any
	if id != "" {
		q += ` WHERE id = ?`
		args = append(args, id)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY id LIMIT `+fmt.Sprint(MerchantsMax), args...)
	if err != nil {
		return nil, wrapSQLite("merchants", err)
	}
	defer rows.Close()
	var out []Merchant
	for rows.Next() {
		var m Merchant
		if err := rows.Scan(&m.ID, &m.Name, &m.PayeeAccount, &m.MarketOperator, &m.MarketFeeRate); err != nil {
			return nil, wrapSQLite("merchants", err)
		}
		out = append(out, m)
	}
	return out, wrapSQLite("merchants", rows.Err())
}

// Merchant implements Clearing.
func (s *SQLite) Merchant(ctx context.Context, id string) (Merchant, error) {
	if id == "" {
		return Merchant{}, badQuery("merchant id is required")
	}
	ms, err := s.merchants(ctx, id)
	if err != nil {
		return Merchant{}, err
	}
	if len(ms) == 0 {
		return Merchant{}, notFound("merchant")
	}
	return ms[0], nil
}

// Merchants implements Clearing.
func (s *SQLite) Merchants(ctx context.Context) ([]Merchant, error) { return s.merchants(ctx, "") }

// RecordDifference implements Clearing.
func (s *SQLite) RecordDifference(ctx context.Context, d Difference) (bool, error) {
	if err := checkDifference(&d); err != nil {
		return false, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, wrapSQLite("difference", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO differences (window_id, merchant, field, journal, store, found_at, seen_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (window_id, merchant, field) DO NOTHING`,
		d.Window, d.Merchant, d.Field, d.Journal, d.Store, d.SeenAt.UnixMicro(), d.SeenAt.UnixMicro())
	if err != nil {
		return false, wrapSQLite("difference", err)
	}
	n, _ := res.RowsAffected()
	if n == 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE differences SET journal = ?, store = ?, seen_at = ?
			WHERE window_id = ? AND merchant = ? AND field = ?`, d.Journal, d.Store, d.SeenAt.UnixMicro(),
			d.Window, d.Merchant, d.Field); err != nil {
			return false, wrapSQLite("difference", err)
		}
	}
	return n == 1, commit(tx)
}

// Differences implements Clearing.
func (s *SQLite) Differences(ctx context.Context, window string) ([]Difference, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT window_id, merchant, field, journal, store, found_at, seen_at FROM differences
		WHERE ? = '' OR window_id = ? ORDER BY window_id, merchant, field LIMIT ?`, window, window, DifferencesListMax)
	if err != nil {
		return nil, wrapSQLite("differences", err)
	}
	defer rows.Close()
	var out []Difference
	for rows.Next() {
		var d Difference
		var found, seen int64
		if err := rows.Scan(&d.Window, &d.Merchant, &d.Field, &d.Journal, &d.Store, &found, &seen); err != nil {
			return nil, wrapSQLite("differences", err)
		}
		d.FoundAt, d.SeenAt = time.UnixMicro(found).UTC(), time.UnixMicro(seen).UTC()
		out = append(out, d)
	}
	return out, wrapSQLite("differences", rows.Err())
}
