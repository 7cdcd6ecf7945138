package engine

// The journal side of reconciliation. Settlement compares, per merchant and
// window, what the store holds with what the gateways decided; the
// gateway's record of what it decided is its journal. JournalTotals reads
// the retained journal and sums, per merchant, the rows the handoff makes
// of the records decided in [from, to): the row mapping is the handoff's
// own (handoff.EntryRow), so the two can differ only if a row was lost,
// added or altered on the way, which is what reconciliation looks for.
//
// A period the journal no longer holds whole (retention removed records
// decided at or after from) is refused with *NotCoveredError, never
// answered with partial totals: a partial answer would read as "the store
// has rows the gateway never decided".

import (
	"context"
	"errors"
	"fmt"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/journal"
	settle "scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

// NotCoveredError refuses journal totals for a period that starts at or
// before the journal's horizon: records decided in it may have been
// removed by retention.
type NotCoveredError struct {
	From     time.Time
	Horizon  time.Time // records up to this time may be gone; zero: unknown
	FirstLSN uint64    // the oldest LSN still held
}

func (e *NotCoveredError) Error() string {
	h := "an unknown time (no horizon file)"
	if !e.Horizon.IsZero() {
		h = e.Horizon.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("journal no longer covers %s: records decided up to %s were removed by retention (the journal starts at lsn %d)",
		e.From.UTC().Format(time.RFC3339Nano), h, e.FirstLSN)
}

// ErrNotCovered matches every *NotCoveredError with errors.Is.
var ErrNotCovered = errors.New("journal no longer covers the period")

// Is makes errors.Is(err, ErrNotCovered) true.
func (e *NotCoveredError) Is(target error) bool { return target == ErrNotCovered }

// ErrTotalsBusy refuses a journal totals scan while another one runs: each
// reads the whole retained journal, so they are not queued.
var ErrTotalsBusy = errors.New("engine: a journal totals scan is already running")

// JournalTotals sums, per merchant, the settlement rows of the durable
// journal records decided in [from, to) (row time, to the microsecond, as
// the store compares it), with the row mapping of the handoff that runs as
// source. One scan runs at a time (ErrTotalsBusy); ctx ends it.
func (e *Engine) JournalTotals(ctx context.Context, source string, from, to time.Time) (map[string]store.Totals, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("engine: journal totals: from %s is not before to %s", from, to)
	}
	if !e.totalsBusy.CompareAndSwap(false, true) {
		return nil, ErrTotalsBusy
	}
	defer e.totalsBusy.Store(false)
	j := e.j
	first := j.FirstLSN()
	fromUS, toUS := from.UnixMicro(), to.UnixMicro()
	out := map[string]store.Totals{}
	var rec core.Record
	x := e.HandoffExtras() // the handoff's payees and insurance split, so debt_recovery rows count too
	n := 0
	_, err := j.ReadDurable(first-1, 0, func(lsn uint64, payload []byte) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		row, ok, _, err := handoff.EntryRow(source, lsn, payload, EntryRecords, e.terminalScene, &rec, &x)
		if err != nil || !ok {
			return err
		}
		if at := row.At.UnixMicro(); at < fromUS || at >= toUS {
			return nil
		}
		t := out[row.Merchant]
		if err := addRow(&t, &row); err != nil {
			return fmt.Errorf("engine: journal totals: lsn %d: %w", lsn, err)
		}
		out[row.Merchant] = t
		return nil
	})
	if errors.Is(err, journal.ErrLSNRange) && j.FirstLSN() > first {
		// Retention removed the segment being read: whatever the period,
		// the caller asks again and gets a definite answer.
		return nil, fmt.Errorf("engine: journal totals: the journal was truncated during the scan; ask again: %w", err)
	}
	if err != nil {
		return nil, err
	}
	if first > 1 {
		// Read after the scan: a horizon moved meanwhile only refuses more.
		h, ok, err := j.Horizon()
		if err != nil {
			return nil, fmt.Errorf("engine: journal totals: %w", err)
		}
		if !ok || !from.After(h.At) || h.Before < first {
			return nil, &NotCoveredError{From: from, Horizon: h.At, FirstLSN: first}
		}
	}
	for m, t := range out {
		n, ok := addInt(t.Gross, t.Reversals)
		if ok {
			n, ok = addInt(n, t.Refunds)
		}
		if !ok {
			return nil, fmt.Errorf("engine: journal totals: merchant %s: net overflows int64", m)
		}
		t.Net = n
		out[m] = t
	}
	return out, nil
}

// terminalScene is the handoff's scene lookup: the terminal's kind.
func (e *Engine) terminalScene(tid string) (string, bool) {
	te, ok := e.reg.Get(tid)
	if !ok {
		return "", false
	}
	return te.Terminal().Kind, true
}

// addRow adds one row to t the way the store's totals query sums rows:
// every row counts; payments (purchase, capture, debt recovery) make the
// gross, reversals and refunds their own sums. Net is left to the caller.
func addRow(t *store.Totals, r *settle.Txn) error {
	var sum *int64
	var cnt *int64
	switch r.Op {
	case settle.OpPurchase, settle.OpCapture, settle.OpDebtRecovery:
		sum, cnt = &t.Gross, &t.Payments
	case settle.OpReversal:
		sum, cnt = &t.Reversals, &t.ReversalCount
	case settle.OpRefund:
		sum, cnt = &t.Refunds, &t.RefundCount
	default:
		return fmt.Errorf("no totals rule for op %q", r.Op)
	}
	s, ok := addInt(*sum, r.Amount)
	if !ok {
		return errors.New("sum overflows int64")
	}
	*sum = s
	*cnt++
	t.Count++
	return nil
}

func addInt(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}
