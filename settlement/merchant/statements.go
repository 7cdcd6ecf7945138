package merchant

// The seam between this package and clearing. Clearing owns windows, fees,
// divisions, statements and the settlement file; this package only shows
// them to the merchant they belong to. Every method takes the merchant of
// the credential and answers ErrNotFound both for a window that does not
// exist and for one in which this merchant has nothing, so the handler
// cannot tell the two apart even by accident.

import (
	"context"
	"errors"
	"strconv"
	"time"
	_ "time/tzdata" // Asia/Shanghai without a system zoneinfo database

	"scenepay/settlement/store"
)

// ErrNotFound: no such window for this merchant (whether or not it exists
// for another one).
var ErrNotFound = errors.New("merchant: not found")

// Statement is one merchant's settlement for one window, in fen.
type Statement struct {
	Merchant      string    `json:"merchant"`
	Window        string    `json:"window"` // window id, e.g. "2026-03-01"
	From          time.Time `json:"from"`   // [From, To), UTC
	To            time.Time `json:"to"`
	Status        string    `json:"status"` // OPEN, CLOSED, SETTLED
	Count         int64     `json:"count"`
	Payments      int64     `json:"payments"`
	Gross         int64     `json:"gross_fen"`
	Refunds       int64     `json:"refunds_fen"`
	RefundCount   int64     `json:"refund_count"`
	Reversals     int64     `json:"reversals_fen"`
	ReversalCount int64     `json:"reversal_count"`
	Fees          int64     `json:"fees_fen"`
	Divisions     int64     `json:"divisions_fen"`
	Net           int64     `json:"net_fen"` // Gross + Refunds + Reversals
	// Held is the window's e-CNY double-offline receipts whose paying
	// wallets had not synced when the window was settled: in Net, not
	// paid yet. Released is earlier windows' held receipts whose wallets
	// synced since, paid with this window. Both >= 0 (clearing's Held
	// and Released; 0 in the interim StoreStatements).
	Held     int64 `json:"held_fen"`
	Released int64 `json:"released_fen"`
	Payable  int64 `json:"payable_fen"` // what the bank pays: Net - Fees - market fee legs - Held + Released
}

// FileExtract is this merchant's part of a window's settlement file: the
// file's own header and only the lines that belong to the merchant.
// Clearing defines and documents the columns.
type FileExtract struct {
	Header []string
	Rows   [][]string
}

// Statements is what the merchant API needs of clearing.
type Statements interface {
	// List returns the merchant's statements, newest window first, at
	// most StatementsListMax.
	List(ctx context.Context, merchant string) ([]Statement, error)
	// Get returns one statement or ErrNotFound.
	Get(ctx context.Context, merchant, window string) (Statement, error)
	// File returns the merchant's lines of a window's settlement file or
	// ErrNotFound.
	File(ctx context.Context, merchant, window string) (FileExtract, error)
}

// StatementsListMax bounds List.
const StatementsListMax = 62

// Shanghai is the business time zone: days, cut-offs and "today".
var Shanghai = mustShanghai()

func mustShanghai() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		// Unreachable with time/tzdata embedded; China has kept UTC+8
		// without daylight saving since 1991.
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}

// StoreStatements is the interim Statements over the settlement store: one
// window per business day ending at Cutoff (Asia/Shanghai), totals from
// store.Totals, no fees or divisions (they are clearing's), status OPEN
// before the cut-off and CLOSED after it. It is replaced by clearing's
// implementation once that is wired; the HTTP contract does not change.
type StoreStatements struct {
	Store  store.Store
	Cutoff time.Duration    // time of day of the cut-off; 0 means 23:00
	Clock  func() time.Time // nil: time.Now
}

func (s *StoreStatements) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *StoreStatements) cutoff() time.Duration {
	if s.Cutoff <= 0 || s.Cutoff >= 24*time.Hour {
		return 23 * time.Hour
	}
	return s.Cutoff
}

// windowBounds returns [from, to) of the window that ends on business day d
// (a date in Shanghai at midnight).
func (s *StoreStatements) windowBounds(d time.Time) (time.Time, time.Time) {
	to := d.Add(s.cutoff())
	y, m, dd := d.Date()
	from := time.Date(y, m, dd-1, 0, 0, 0, 0, Shanghai).Add(s.cutoff())
	return from.UTC(), to.UTC()
}

// windowOf is the business day whose window holds t.
func (s *StoreStatements) windowOf(t time.Time) time.Time {
	l := t.In(Shanghai)
	y, m, d := l.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, Shanghai)
	if !l.Before(day.Add(s.cutoff())) {
		day = time.Date(y, m, d+1, 0, 0, 0, 0, Shanghai)
	}
	return day
}

// parseWindow accepts exactly "YYYY-MM-DD" for a day no later than the
// current window's; anything else is ErrNotFound, like a missing window.
func (s *StoreStatements) parseWindow(w string) (time.Time, error) {
	if len(w) != len("2006-01-02") {
		return time.Time{}, ErrNotFound
	}
	d, err := time.ParseInLocation("2006-01-02", w, Shanghai)
	if err != nil || d.Year() < 2000 || d.After(s.windowOf(s.now())) {
		return time.Time{}, ErrNotFound
	}
	return d, nil
}

func (s *StoreStatements) statement(ctx context.Context, merchant string, day time.Time) (Statement, error) {
	from, to := s.windowBounds(day)
	t, err := s.Store.Totals(ctx, merchant, from, to)
	if err != nil {
		return Statement{}, err
	}
	status := "CLOSED"
	if s.now().Before(to) {
		status = "OPEN"
	}
	return Statement{Merchant: merchant, Window: day.Format("2006-01-02"), From: from, To: to, Status: status,
		Count: t.Count, Payments: t.Payments, Gross: t.Gross, Refunds: t.Refunds, RefundCount: t.RefundCount,
		Reversals: t.Reversals, ReversalCount: t.ReversalCount, Net: t.Net, Payable: t.Net}, nil
}

// List implements Statements: the last StatementsListMax windows in which
// the merchant has rows.
func (s *StoreStatements) List(ctx context.Context, merchant string) ([]Statement, error) {
	day := s.windowOf(s.now())
	var out []Statement
	for i := 0; i < StatementsListMax; i++ {
		st, err := s.statement(ctx, merchant, day)
		if err != nil {
			return nil, err
		}
		if st.Count > 0 {
			out = append(out, st)
		}
		y, m, d := day.Date()
		day = time.Date(y, m, d-1, 0, 0, 0, 0, Shanghai)
	}
	return out, nil
}

// Get implements Statements.
func (s *StoreStatements) Get(ctx context.Context, merchant, window string) (Statement, error) {
	day, err := s.parseWindow(window)
	if err != nil {
		return Statement{}, err
	}
	st, err := s.statement(ctx, merchant, day)
	if err != nil {
		return Statement{}, err
	}
	if st.Count == 0 {
		return Statement{}, ErrNotFound
	}
	return st, nil
}

// FileHeader is the interim settlement-file layout: one line per merchant
// and window, amounts in fen.
var FileHeader = []string{"window", "merchant", "count", "gross_fen", "refunds_fen", "reversals_fen", "fees_fen",
	"divisions_fen", "net_fen", "status"}

// File implements Statements.
func (s *StoreStatements) File(ctx context.Context, merchant, window string) (FileExtract, error) {
	st, err := s.Get(ctx, merchant, window)
	if err != nil {
		return FileExtract{}, err
	}
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return FileExtract{Header: FileHeader, Rows: [][]string{{st.Window, st.Merchant, i(st.Count), i(st.Gross),
		i(st.Refunds), i(st.Reversals), i(st.Fees), i(st.Divisions), i(st.Net), st.Status}}}, nil
}
