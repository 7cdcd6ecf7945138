package merchant

// ClearingStatements is Statements over clearing's records: a statement
// exists once clearing has settled the window and written this merchant's
// settlement; the settlement file lines are clearing's own lines, written
// by clearing.WriteFile from this merchant's settlement alone, which the
// store query itself (Settlement(window, merchant)) picks, not the
// handler.

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"time"

	"scenepay/settlement/clearing"
	"scenepay/settlement/store"
)

// ClearingStatements implements Statements with settlement/clearing.
type ClearingStatements struct {
	Store store.Clearing
	Clock func() time.Time // nil: time.Now
}

func (c *ClearingStatements) now() time.Time {
	if c.Clock != nil {
		return c.Clock()
	}
	return time.Now()
}

// miss maps "no such window/settlement" and "not a window id" to
// ErrNotFound, so that both read the same to the merchant.
func miss(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadQuery) {
		return ErrNotFound
	}
	return err
}

// validWindow accepts exactly YYYY-MM-DD.
func validWindow(w string) bool {
	if len(w) != len("2006-01-02") {
		return false
	}
	_, err := time.ParseInLocation("2006-01-02", w, Shanghai)
	return err == nil
}

func (c *ClearingStatements) settled(ctx context.Context, merchant, window string) (store.Window, store.Settlement, error) {
	if !validWindow(window) {
		return store.Window{}, store.Settlement{}, ErrNotFound
	}
	w, err := c.Store.Window(ctx, window)
	if err != nil {
		return store.Window{}, store.Settlement{}, miss(err)
	}
	if w.State != store.WindowSettled {
		return store.Window{}, store.Settlement{}, ErrNotFound
	}
	s, err := c.Store.Settlement(ctx, window, merchant)
	if err != nil {
		return store.Window{}, store.Settlement{}, miss(err)
	}
	return w, s, nil
}

// errDivisionsOverflow: division legs whose sum does not fit int64.
var errDivisionsOverflow = errors.New("merchant: division legs overflow int64")

func fromClearing(w store.Window, s *store.Settlement) (Statement, error) {
	cs := clearing.NewStatement(w, s)
	st := Statement{Merchant: cs.Merchant, Window: cs.Window, From: cs.From.UTC(), To: cs.To.UTC(), Status: cs.State,
		Count: cs.Count, Payments: cs.Payments, Gross: cs.Gross, Refunds: cs.Refunds, RefundCount: cs.RefundCount,
		Reversals: cs.Reversals, ReversalCount: cs.ReversalCount, Fees: cs.Fee, Net: cs.Net, Held: cs.Held,
		Released: cs.Released, Payable: cs.Payable}
	for _, d := range cs.Divisions {
		if (d.Amount > 0 && st.Divisions > math.MaxInt64-d.Amount) || (d.Amount < 0 && st.Divisions < math.MinInt64-d.Amount) {
			return Statement{}, errDivisionsOverflow
		}
		st.Divisions += d.Amount
	}
	return st, nil
}

// List implements Statements: settled windows of the last
// StatementsListMax days in which the merchant has a settlement.
func (c *ClearingStatements) List(ctx context.Context, merchant string) ([]Statement, error) {
	from := c.now().In(Shanghai).AddDate(0, 0, -StatementsListMax).Format("2006-01-02")
	ws, err := c.Store.Windows(ctx, from, "")
	if err != nil {
		return nil, err
	}
	var out []Statement
	for i := len(ws) - 1; i >= 0 && len(out) < StatementsListMax; i-- {
		w := ws[i]
		if w.State != store.WindowSettled {
			continue
		}
		s, err := c.Store.Settlement(ctx, w.ID, merchant)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		st, err := fromClearing(w, &s)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Get implements Statements.
func (c *ClearingStatements) Get(ctx context.Context, merchant, window string) (Statement, error) {
	w, s, err := c.settled(ctx, merchant, window)
	if err != nil {
		return Statement{}, err
	}
	return fromClearing(w, &s)
}

// File implements Statements: this merchant's lines of the window's
// settlement file, as the bank's core gets them: the column lines C
// (the header), CL and CU, the merchant's D line, its U line if it holds
// or releases e-CNY offline receipts and one L line per division leg.
// clearing.WriteFile writes them from the merchant's settlement alone, so
// they are the file's own lines; only the window's H and T lines (about
// every merchant) are left out.
func (c *ClearingStatements) File(ctx context.Context, merchant, window string) (FileExtract, error) {
	w, s, err := c.settled(ctx, merchant, window)
	if err != nil {
		return FileExtract{}, err
	}
	m, err := c.Store.Merchant(ctx, merchant)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return FileExtract{}, err
	}
	var buf bytes.Buffer
	if err := clearing.WriteFile(&buf, w, []store.Settlement{s}, map[string]store.Merchant{merchant: m}); err != nil {
		return FileExtract{}, err
	}
	r := csv.NewReader(&buf)
	r.FieldsPerRecord = -1 // each record type has its own columns
	recs, err := r.ReadAll()
	if err != nil {
		return FileExtract{}, err
	}
	// H, C, CL, CU, D, [U], [L...], T.
	if len(recs) < 6 || recs[0][0] != "H" || recs[1][0] != "C" || recs[len(recs)-1][0] != "T" {
		return FileExtract{}, fmt.Errorf("merchant: unexpected settlement file layout (%d lines)", len(recs))
	}
	return FileExtract{Header: recs[1], Rows: recs[2 : len(recs)-1]}, nil
}
