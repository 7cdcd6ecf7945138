package store

// PostgreSQL implementation of Clearing.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

var _ Clearing = (*Postgres)(nil)

func (s *Postgres) with(ctx context.Context, what string, fn func(c *pgx.Conn) error) error {
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return err
	}
	defer s.pool.release(c)
	if err := fn(c); err != nil {
		var se *Error
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("settlement store: %s: %w", what, err)
	}
	return nil
}

const pgWindowCols = `id, starts_at, cutoff_at, state, closed_at, settled_at`

func scanPGWindow(row pgx.Row) (Window, error) {
	var w Window
	var closed, settled *time.Time
	if err := row.Scan(&w.ID, &w.Start, &w.CutOff, &w.State, &closed, &settled); err != nil {
		return Window{}, err
	}
	w.Start, w.CutOff = w.Start.UTC(), w.CutOff.UTC()
	if closed != nil {
		w.ClosedAt = closed.UTC()
	}
	if settled != nil {
		w.SettledAt = settled.UTC()
	}
	return w, nil
}

func pgWindows(ctx context.Context, c *pgx.Conn, q string, args ...any) ([]Window, error) {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Window
	for rows.Next() {
		w, err := scanPGWindow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// OpenWindow implements Clearing.
func (s *Postgres) OpenWindow(ctx context.Context, w Window) (Window, bool, error) {
	if err := checkWindow(&w); err != nil {
		return Window{}, false, err
	}
	var out Window
	var created bool
	err := s.with(ctx, "open window", func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `INSERT INTO windows (id, starts_at, cutoff_at, state) VALUES ($1, $2, $3, 'OPEN')
			ON CONFLICT (id) DO NOTHING`, w.ID, w.Start.UTC(), w.CutOff.UTC())
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		out, err = scanPGWindow(c.QueryRow(ctx, `SELECT `+pgWindowCols+` FROM windows WHERE id = $1`, w.ID))
		return err
	})
	return out, created, err
}

// Window implements Clearing.
func (s *Postgres) Window(ctx context.Context, id string) (Window, error) {
	if err := checkWindowID(id); err != nil {
		return Window{}, err
	}
	var out Window
	err := s.with(ctx, "window", func(c *pgx.Conn) error {
		var err error
		out, err = scanPGWindow(c.QueryRow(ctx, `SELECT `+pgWindowCols+` FROM windows WHERE id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("window " + id)
		}
		return err
	})
	return out, err
}

// Windows implements Clearing.
func (s *Postgres) Windows(ctx context.Context, from, to string) ([]Window, error) {
	if to == "" {
		to = "9999-99-99"
	}
	var out []Window
	err := s.with(ctx, "windows", func(c *pgx.Conn) error {
		var err error
		out, err = pgWindows(ctx, c, `SELECT `+pgWindowCols+` FROM windows WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT $3`,
			from, to, WindowsListMax)
		return err
	})
	return out, err
}

// UnsettledWindows implements Clearing.
func (s *Postgres) UnsettledWindows(ctx context.Context) ([]Window, error) {
	var out []Window
	err := s.with(ctx, "windows", func(c *pgx.Conn) error {
		var err error
		out, err = pgWindows(ctx, c, `SELECT `+pgWindowCols+` FROM windows WHERE state <> 'SETTLED' ORDER BY id LIMIT $1`,
			WindowsListMax)
		return err
	})
	return out, err
}

// LatestWindow implements Clearing.
func (s *Postgres) LatestWindow(ctx context.Context) (Window, bool, error) {
	var out []Window
	err := s.with(ctx, "windows", func(c *pgx.Conn) error {
		var err error
		out, err = pgWindows(ctx, c, `SELECT `+pgWindowCols+` FROM windows ORDER BY id DESC LIMIT 1`)
		return err
	})
	if err != nil || len(out) == 0 {
		return Window{}, false, err
	}
	return out[0], true, nil
}

// CloseWindow implements Clearing.
func (s *Postgres) CloseWindow(ctx context.Context, id string, at time.Time) (bool, error) {
	if err := checkWindowID(id); err != nil {
		return false, err
	}
	var changed bool
	err := s.with(ctx, "close window", func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `UPDATE windows SET state = 'CLOSED', closed_at = $2 WHERE id = $1 AND state = 'OPEN'`, id, at.UTC())
		if err != nil {
			return err
		}
		if changed = tag.RowsAffected() == 1; changed {
			return nil
		}
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM windows WHERE id = $1`, id).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return notFound("window " + id)
		}
		return nil
	})
	return changed, err
}

// SettleWindow implements Clearing.
func (s *Postgres) SettleWindow(ctx context.Context, id string, at time.Time, ss []Settlement) (bool, error) {
	if err := checkWindowID(id); err != nil {
		return false, err
	}
	if err := checkSettlements(id, ss); err != nil {
		return false, err
	}
	var changed bool
	err := s.with(ctx, "settle window", func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		var state WindowState
		err = tx.QueryRow(ctx, `SELECT state FROM windows WHERE id = $1 FOR UPDATE`, id).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("window " + id)
		}
		if err != nil {
			return err
		}
		switch state {
		case WindowSettled:
			return nil
		case WindowOpen:
			return &Error{Code: CodeState, Reason: "window " + id + " is OPEN; close it first"}
		}
		ms := pgx.CopyFromSlice(len(ss), func(i int) ([]any, error) {
			x := &ss[i]
			return []any{id, x.Merchant, x.Count, x.Gross, x.Payments, x.Reversals, x.ReversalCount, x.Refunds,
				x.RefundCount, x.Net, x.Fee, x.Payable, x.Held, x.Released}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"merchant_settlements"}, []string{"window_id", "merchant", "txn_count",
			"gross", "payments", "reversals", "reversal_count", "refunds", "refund_count", "net", "fee", "payable",
			"held", "released"}, ms); err != nil {
			return err
		}
		var divs [][]any
		for i := range ss {
			for _, d := range ss[i].Divisions {
				divs = append(divs, []any{id, ss[i].Merchant, d.Kind, d.Payee, d.Amount})
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"settlement_divisions"}, []string{"window_id", "merchant", "kind",
			"payee", "amount"}, pgx.CopyFromRows(divs)); err != nil {
			return err
		}
		if err := settleUnsyncedPG(ctx, tx, id, ss); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE windows SET state = 'SETTLED', settled_at = $2 WHERE id = $1`, id, at.UTC()); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		changed = true
		return nil
	})
	return changed, err
}

const pgSettlementCols = `merchant, txn_count, gross, payments, reversals, reversal_count, refunds, refund_count, net, fee, payable,
	held, released`

func (s *Postgres) settlements(ctx context.Context, window, merchant string) ([]Settlement, error) {
	if err := checkWindowID(window); err != nil {
		return nil, err
	}
	var out []Settlement
	err := s.with(ctx, "settlements", func(c *pgx.Conn) error {
		q := `SELECT ` + pgSettlementCols + ` FROM merchant_settlements WHERE window_id = $1`
		dq := `SELECT merchant, kind, payee, amount FROM settlement_divisions WHERE window_id = $1`
		args := []any{window}
		if merchant != "" {
			q += ` AND merchant = $2`
			dq += ` AND merchant = $2`
			args = append(args, merchant)
		}
		rows, err := c.Query(ctx, q+` ORDER BY merchant LIMIT `+fmt.Sprint(SettlementsPerWindowMax), args...)
		if err != nil {
			return err
		}
		idx := map[string]int{}
		for rows.Next() {
			x := Settlement{Window: window}
			if err := rows.Scan(&x.Merchant, &x.Count, &x.Gross, &x.Payments, &x.Reversals, &x.ReversalCount,
				&x.Refunds, &x.RefundCount, &x.Net, &x.Fee, &x.Payable, &x.Held, &x.Released); err != nil {
				rows.Close()
				return err
			}
			idx[x.Merchant] = len(out)
			out = append(out, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = c.Query(ctx, dq+` ORDER BY merchant, kind, payee`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m string
			var d Division
			if err := rows.Scan(&m, &d.Kind, &d.Payee, &d.Amount); err != nil {
				return err
			}
			if i, ok := idx[m]; ok {
				out[i].Divisions = append(out[i].Divisions, d)
			}
		}
		return rows.Err()
	})
	return out, err
}

// Settlements implements Clearing.
func (s *Postgres) Settlements(ctx context.Context, window string) ([]Settlement, error) {
	return s.settlements(ctx, window, "")
}

// Settlement implements Clearing.
func (s *Postgres) Settlement(ctx context.Context, window, merchant string) (Settlement, error) {
	return oneSettlement(ctx, s.settlements, window, merchant)
}

// SceneTotals implements Clearing.
func (s *Postgres) SceneTotals(ctx context.Context, from, to time.Time) ([]SceneTotals, error) {
	from, to = bounds(from, to)
	var out []SceneTotals
	err := s.with(ctx, "scene totals", func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT merchant, scene, count(*),
			coalesce(sum(amount) FILTER (WHERE op IN ('purchase','capture','debt_recovery')), 0)::bigint,
			count(*) FILTER (WHERE op IN ('purchase','capture','debt_recovery')),
			coalesce(sum(amount) FILTER (WHERE op = 'reversal'), 0)::bigint,
			count(*) FILTER (WHERE op = 'reversal'),
			coalesce(sum(amount) FILTER (WHERE op = 'refund'), 0)::bigint,
			count(*) FILTER (WHERE op = 'refund')
			FROM txns_all WHERE at >= $1 AND at < $2 GROUP BY merchant, scene ORDER BY merchant, scene`, from, to)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if len(out) >= SettlementsPerWindowMax {
				return badQuery("more merchant scenes in the period than SettlementsPerWindowMax")
			}
			var t SceneTotals
			if err := rows.Scan(&t.Merchant, &t.Scene, &t.Count, &t.Gross, &t.Payments, &t.Reversals, &t.ReversalCount,
				&t.Refunds, &t.RefundCount); err != nil {
				return err
			}
			if t.Totals, err = t.Totals.withNet(); err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// firstTxnQuery is FirstTxnAt's one statement (one snapshot, so a move
// committing meanwhile is seen whole): the earliest time in txns kept by
// MoveRecent (txns_first, migration 0007) and a scan of the recent part,
// whose size the scheduler bounds (RecentRowsMax). It reads no row of
// txns, which has no index leading with at.
const firstTxnQuery = `SELECT least((SELECT at FROM txns_first), (SELECT min(at) FROM txns_recent))`

// FirstTxnAt implements Clearing.
func (s *Postgres) FirstTxnAt(ctx context.Context) (time.Time, bool, error) {
	var at *time.Time
	err := s.with(ctx, "first txn", func(c *pgx.Conn) error {
		return c.QueryRow(ctx, firstTxnQuery).Scan(&at)
	})
	if err != nil || at == nil {
		return time.Time{}, false, err
	}
	return at.UTC(), true, nil
}

// PutFeeRate implements Clearing.
func (s *Postgres) PutFeeRate(ctx context.Context, r FeeRate) error {
	if err := checkFeeRate(&r); err != nil {
		return err
	}
	return s.with(ctx, "fee rate", func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO fee_rates (merchant, scene, rate) VALUES ($1, $2, $3)
			ON CONFLICT (merchant, scene) DO UPDATE SET rate = excluded.rate`, r.Merchant, r.Scene, r.Rate)
		return err
	})
}

// FeeRates implements Clearing.
func (s *Postgres) FeeRates(ctx context.Context) ([]FeeRate, error) {
	var out []FeeRate
	err := s.with(ctx, "fee rates", func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT merchant, scene, rate FROM fee_rates ORDER BY merchant, scene LIMIT $1`, FeeRatesMax)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r FeeRate
			if err := rows.Scan(&r.Merchant, &r.Scene, &r.Rate); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// PutMerchant implements Clearing.
func (s *Postgres) PutMerchant(ctx context.Context, m Merchant) error {
	if err := checkMerchant(&m); err != nil {
		return err
	}
	return s.with(ctx, "merchant", func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO merchants (id, name, payee_account, market_operator, market_fee_rate)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET name = excluded.name,
			payee_account = excluded.payee_account, market_operator = excluded.market_operator,
			market_fee_rate = excluded.market_fee_rate`, m.ID, m.Name, m.PayeeAccount, m.MarketOperator, m.MarketFeeRate)
		return err
	})
}

func (s *Postgres) merchants(ctx context.Context, id string) ([]Merchant, error) {
	var out []Merchant
	err := s.with(ctx, "merchants", func(c *pgx.Conn) error {
		q := `SELECT id, name, payee_account, market_operator, market_fee_rate FROM merchants`
		var args []any
		if id != "" {
			q += ` WHERE id = $1`
			args = append(args, id)
		}
		rows, err := c.Query(ctx, q+` ORDER BY id LIMIT `+fmt.Sprint(MerchantsMax), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m Merchant
			if err := rows.Scan(&m.ID, &m.Name, &m.PayeeAccount, &m.MarketOperator, &m.MarketFeeRate); err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	return out, err
}

// Merchant implements Clearing.
func (s *Postgres) Merchant(ctx context.Context, id string) (Merchant, error) {
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
func (s *Postgres) Merchants(ctx context.Context) ([]Merchant, error) { return s.merchants(ctx, "") }

// RecordDifference implements Clearing.
func (s *Postgres) RecordDifference(ctx context.Context, d Difference) (bool, error) {
	if err := checkDifference(&d); err != nil {
		return false, err
	}
	var inserted bool
	err := s.with(ctx, "difference", func(c *pgx.Conn) error {
		// xmax = 0 only for a freshly inserted row.
		return c.QueryRow(ctx, `INSERT INTO differences (window_id, merchant, field, journal, store, found_at, seen_at)
			VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (window_id, merchant, field) DO UPDATE
			SET journal = excluded.journal, store = excluded.store, seen_at = excluded.seen_at
			RETURNING (xmax = 0)`, d.Window, d.Merchant, d.Field, d.Journal, d.Store, d.SeenAt.UTC()).Scan(&inserted)
	})
	return inserted, err
}

// Differences implements Clearing.
func (s *Postgres) Differences(ctx context.Context, window string) ([]Difference, error) {
	var out []Difference
	err := s.with(ctx, "differences", func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT window_id, merchant, field, journal, store, found_at, seen_at FROM differences
			WHERE $1 = '' OR window_id = $1 ORDER BY window_id, merchant, field LIMIT $2`, window, DifferencesListMax)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d Difference
			if err := rows.Scan(&d.Window, &d.Merchant, &d.Field, &d.Journal, &d.Store, &d.FoundAt, &d.SeenAt); err != nil {
				return err
			}
			d.FoundAt, d.SeenAt = d.FoundAt.UTC(), d.SeenAt.UTC()
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}
