// Package store owns the settlement store: the durable record of every
// handed-off transaction, of every ingested batch, and of how far each
// gateway source has handed off (its high water and watermark). It has two
// implementations behind one interface, PostgreSQL (production, pgx/v5) and
// embedded SQLite (the default when no database is configured), which pass
// one contract test suite (package storetest).
//
// Ingest is idempotent twice over: by batch id (a re-sent batch changes
// nothing) and by (source, LSN) (a batch re-cut over an overlapping range
// adds only the LSNs not seen before). The high water is written in the
// same transaction as the rows, so the store, not the gateway's own
// bookkeeping, says where handoff resumes: a crash between the commit and
// anything the gateway records afterwards neither loses nor repeats a row.
package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"scenepay/settlement/handoff"
)

// Named bounds.
const (
	// PageLimitMax is the most rows one Transactions call returns.
	PageLimitMax = 1000
	// PageLimitDefault applies when Filter.Limit is 0.
	PageLimitDefault = 100
)

// Store is the settlement store.
type Store interface {
	// Ingest writes a batch exactly once. A batch whose id is already
	// stored with the same content, or whose rows are all stored, changes
	// nothing and is not an error. A batch that starts past the source's
	// high water + 1 is refused with ErrGap; a row or batch id that exists
	// with different content is refused with ErrConflict. Either refusal
	// leaves the store as it was.
	Ingest(ctx context.Context, b *handoff.Batch) (IngestResult, error)
	// HighWater is the last LSN of source covered by an ingested batch (0
	// if none): the gateway resumes handoff at HighWater+1.
	HighWater(ctx context.Context, source string) (uint64, error)
	// Watermarks lists every source with its high water and watermark.
	Watermarks(ctx context.Context) ([]Watermark, error)
	// Transactions lists one merchant's rows in (at, source, lsn) order.
	Transactions(ctx context.Context, f Filter) (Page, error)
	// Totals is the statement query: one merchant's sums over [from, to).
	Totals(ctx context.Context, merchant string, from, to time.Time) (Totals, error)
	// MoveRecent moves the ingested rows with at < before (a zero before:
	// all) from the unindexed part that Ingest appends to into the indexed
	// part, in one transaction, and reports how many it moved. Reads see
	// both parts, so a move changes no answer (recent.go). SQLite has one
	// indexed table and nothing to move.
	MoveRecent(ctx context.Context, before time.Time) (int64, error)
	// RecentRows counts the rows waiting to be moved, stopping at limit.
	RecentRows(ctx context.Context, limit int64) (int64, error)
	// Clearing keeps windows, settlements, fee rates, merchants and
	// reconciliation differences (clearing.go).
	Clearing
	Close() error
}

// IngestResult says what an Ingest call changed.
type IngestResult struct {
	Duplicate bool // the batch id was already stored; nothing changed
	Inserted  int  // rows written
	Skipped   int  // rows already stored under the same (source, LSN)
}

// Watermark is how far one source has handed off.
type Watermark struct {
	Source    string
	HighWater uint64    // last LSN covered by an ingested batch
	At        time.Time // gateway time up to which the source has handed off everything
}

// Filter selects one merchant's transactions. Merchant is required: there
// is no query across merchants, so a caller cannot leak another merchant's
// rows by forgetting a condition.
type Filter struct {
	Merchant string
	From, To time.Time // [From, To); zero means unbounded
	Scene    string    // optional
	Terminal string    // optional
	Op       string    // optional: purchase, capture, reversal, refund
	Cursor   string    // Page.Next of the previous page, or ""
	Limit    int       // 0 means PageLimitDefault; at most PageLimitMax
}

// Page is one page of transactions. Next is "" on the last page.
type Page struct {
	Rows []handoff.Txn
	Next string
}

// Totals are one merchant's sums over a period, in fen. Sums that would
// overflow int64 are an error, never a wrapped value.
type Totals struct {
	Count         int64 // all rows
	Gross         int64 // sum of purchase, capture and debt_recovery amounts (positive)
	Payments      int64 // count of purchase, capture and debt_recovery rows
	Reversals     int64 // sum of reversal amounts (negative)
	ReversalCount int64
	Refunds       int64 // sum of refund amounts (negative)
	RefundCount   int64
	Net           int64 // Gross + Reversals + Refunds
}

// Code classifies a store error that is not a handoff validation error.
type Code string

const (
	CodeGap      Code = "GAP"      // batch starts past high water + 1: rows would be missing
	CodeConflict Code = "CONFLICT" // same batch id or (source, LSN) with different content
	CodeBadQuery Code = "BAD_QUERY"
)

// Error is a coded store refusal. Database faults are returned as they
// come (wrapped), not as *Error: they are worth retrying, these are not.
type Error struct {
	Code   Code
	Reason string
}

func (e *Error) Error() string { return "settlement store: " + string(e.Code) + ": " + e.Reason }

// Is matches any *Error with the same Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrGap      = &Error{Code: CodeGap}
	ErrConflict = &Error{Code: CodeConflict}
	ErrBadQuery = &Error{Code: CodeBadQuery}
)

func badQuery(reason string) error { return &Error{Code: CodeBadQuery, Reason: reason} }

// cursor is the keyset position after the last row of a page.
type cursor struct {
	atMicro int64
	lsn     int64
	source  string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString(
		[]byte(strconv.FormatInt(c.atMicro, 10) + ":" + strconv.FormatInt(c.lsn, 10) + ":" + c.source))
}

func decodeCursor(s string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, badQuery("cursor is not valid")
	}
	parts := strings.SplitN(string(raw), ":", 3)
	if len(parts) != 3 {
		return cursor{}, badQuery("cursor is not valid")
	}
	at, err1 := strconv.ParseInt(parts[0], 10, 64)
	lsn, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || len(parts[2]) > handoff.SourceLenMax {
		return cursor{}, badQuery("cursor is not valid")
	}
	return cursor{atMicro: at, lsn: lsn, source: parts[2]}, nil
}

// checkFilter validates f and returns the page size and the cursor.
func checkFilter(f *Filter) (int, *cursor, error) {
	if f.Merchant == "" || len(f.Merchant) > handoff.MerchantLenMax {
		return 0, nil, badQuery("merchant is required")
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = PageLimitDefault
	case limit < 0 || limit > PageLimitMax:
		return 0, nil, badQuery(fmt.Sprintf("limit must be 1..%d", PageLimitMax))
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return 0, nil, badQuery("from must be before to")
	}
	if f.Cursor == "" {
		return limit, nil, nil
	}
	c, err := decodeCursor(f.Cursor)
	if err != nil {
		return 0, nil, err
	}
	return limit, &c, nil
}

func checkSource(source string) error {
	if source == "" || len(source) > handoff.SourceLenMax {
		return badQuery("source is required")
	}
	return nil
}

// Time bounds for an unbounded filter side, inside both stores' ranges.
var (
	timeMin = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	timeMax = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

func bounds(from, to time.Time) (time.Time, time.Time) {
	if from.IsZero() {
		from = timeMin
	}
	if to.IsZero() {
		to = timeMax
	}
	return from.UTC(), to.UTC()
}

// sameRow compares the settlement content of two rows (times by instant).
func sameRow(a, b *handoff.Txn) bool {
	return a.Source == b.Source && a.LSN == b.LSN && a.At.Equal(b.At) && a.Merchant == b.Merchant &&
		a.Terminal == b.Terminal && a.Scene == b.Scene && a.Op == b.Op && a.InstKind == b.InstKind &&
		a.Account == b.Account && a.Amount == b.Amount && a.Auth == b.Auth && a.Txn == b.Txn && a.Orig == b.Orig
}
