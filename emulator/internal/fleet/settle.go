package fleet

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"scenepay/settlement/store"
)

// The settlement audit: per merchant, the sum of what its terminals were
// told was approved (purchases and tap debits, less the reversals that
// voided them) must equal the settlement store's net for the run, to the
// fen. Requests that went unanswered widen the allowed range by what they
// may have cost, as in the balance audit. When a merchant differs, the
// store's rows are listed against the terminals' approvals to name the
// ids: approvals missing from the store (lost), ids stored more than once
// (applied twice), ids stored that no terminal was told of.

// Settlement audit bounds.
const (
	// settleRowsMax bounds the rows read per merchant to name offending ids.
	settleRowsMax = 200_000
	// settleIDsMax bounds the offending ids kept per kind and merchant.
	settleIDsMax = 50
	// settleFromSlack is how far before the run's start the store's rows
	// are summed: the gateway's clock and ours are the same machine's.
	settleFromSlack = time.Second
)

// SettleMerchant is one merchant's comparison. Money in fen.
type SettleMerchant struct {
	Merchant  string
	Told      int64 // what terminals were told (net)
	Uncertain int64
	// UncertainCredit: unanswered refunds that may have lowered the net.
	UncertainCredit int64
	Store           int64 // the store's net over the run
	Rows            int64
	Lost            []string // approvals told, not in the store
	Twice           []string // ids stored more than once
	Untold          []string // ids stored that no terminal was told were approved
}

// OK reports whether the store's net lies in
// [Told-UncertainCredit, Told+Uncertain].
func (m SettleMerchant) OK() bool {
	return m.Store-m.Told <= m.Uncertain && m.Told-m.Store <= m.UncertainCredit
}

// SettleResult is the settlement audit of a run.
type SettleResult struct {
	Ran       bool
	Err       error // the store could not be read or did not catch up
	Merchants []SettleMerchant
}

// OK reports whether the audit passed (or did not run).
func (s SettleResult) OK() bool {
	if !s.Ran {
		return true
	}
	if s.Err != nil {
		return false
	}
	for _, m := range s.Merchants {
		if !m.OK() {
			return false
		}
	}
	return true
}

// OpenSettlement opens a settlement store by URL (postgres://) or SQLite path.
func OpenSettlement(ctx context.Context, dsn string) (store.Store, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return store.OpenPostgres(ctx, dsn)
	}
	return store.OpenSQLite(ctx, dsn)
}

func (r *runner) settleAudit(ctx context.Context, start time.Time) SettleResult {
	res := SettleResult{Ran: true}
	st, err := OpenSettlement(ctx, r.o.SettlementDB)
	if err != nil {
		res.Err = err
		return res
	}
	defer st.Close()
	wait := r.o.SettleWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	if err := waitHandoff(ctx, st, time.Now(), wait); err != nil {
		res.Err = err
		return res
	}
	res.Merchants, res.Err = CompareSettlement(ctx, st, r.ledger.Merchants(), start.Add(-settleFromSlack))
	return res
}

// waitHandoff waits until some source's watermark passes end: every
// transaction the gateway journaled before end is then in the store.
func waitHandoff(ctx context.Context, st store.Store, end time.Time, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var last time.Time
	for {
		ws, err := st.Watermarks(ctx)
		if err == nil {
			for _, w := range ws {
				if w.At.After(last) {
					last = w.At
				}
			}
			if !last.Before(end) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fleet: settlement handoff watermark %s did not reach the run's end %s within %s (err %v)",
				last.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano), wait, err)
		}
		if !sleepFor(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// CompareSettlement compares each merchant position with the store's rows
// since from.
func CompareSettlement(ctx context.Context, st store.Store, told []MerchantPosition, from time.Time) ([]SettleMerchant, error) {
	far := time.Now().Add(24 * time.Hour)
	var out []SettleMerchant
	for _, m := range told {
		t, err := st.Totals(ctx, m.Merchant, from, far)
		if err != nil {
			return out, fmt.Errorf("fleet: settlement totals of %s: %w", m.Merchant, err)
		}
		sm := SettleMerchant{Merchant: m.Merchant, Told: m.Net, Uncertain: m.Uncertain, UncertainCredit: m.UncertainCredit,
			Store: t.Net, Rows: t.Count}
		if !sm.OK() {
			if err := nameIDs(ctx, st, m, from, far, &sm); err != nil {
				return out, err
			}
		}
		out = append(out, sm)
	}
	return out, nil
}

func nameIDs(ctx context.Context, st store.Store, m MerchantPosition, from, to time.Time, sm *SettleMerchant) error {
	stored := map[string]int64{}
	rows := map[string]int{}
	// A capture spanning several holds of a deposit is one row per hold
	// under the capture's txn id, each naming its hold in Orig: rows are
	// "applied twice" only when they repeat (terminal, txn, orig).
	perOrig := map[string]int{}
	f := store.Filter{Merchant: m.Merchant, From: from, To: to, Limit: store.PageLimitMax}
	for n := 0; n < settleRowsMax; {
		p, err := st.Transactions(ctx, f)
		if err != nil {
			return fmt.Errorf("fleet: settlement rows of %s: %w", m.Merchant, err)
		}
		for _, row := range p.Rows {
			id := fmt.Sprintf("%s/%d", row.Terminal, row.Txn)
			stored[id] += row.Amount
			rows[id]++
			perOrig[fmt.Sprintf("%s/%d", id, row.Orig)]++
		}
		n += len(p.Rows)
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	keep := func(dst *[]string, s string) {
		if len(*dst) < settleIDsMax {
			*dst = append(*dst, s)
		}
	}
	twice := map[string]bool{}
	for k, n := range perOrig {
		if n > 1 {
			id := k[:strings.LastIndexByte(k, '/')]
			twice[id] = true
			keep(&sm.Twice, fmt.Sprintf("%s (%d rows, %d fen)", id, rows[id], stored[id]))
		}
	}
	for id, amt := range m.Txns {
		if got, ok := stored[id]; !ok {
			keep(&sm.Lost, fmt.Sprintf("%s (%d fen)", id, amt))
		} else if got != amt && !twice[id] {
			keep(&sm.Untold, fmt.Sprintf("%s (store %d fen, told %d)", id, got, amt))
		}
	}
	for id := range rows {
		if _, ok := m.Txns[id]; !ok && !twice[id] {
			keep(&sm.Untold, fmt.Sprintf("%s (%d fen)", id, stored[id]))
		}
	}
	for _, s := range [][]string{sm.Lost, sm.Twice, sm.Untold} {
		sort.Strings(s)
	}
	return nil
}

func (r *runner) printSettlement() {
	s := r.rep.Settlement
	if !s.Ran {
		return
	}
	w := r.out
	if s.Err != nil {
		fmt.Fprintf(w, "settlement audit: FAIL: %v\n", s.Err)
		return
	}
	bad := 0
	for _, m := range s.Merchants {
		if !m.OK() {
			bad++
		}
	}
	verdict := "PASS"
	if bad > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "settlement audit: %d merchants, %d differ -> %s\n", len(s.Merchants), bad, verdict)
	for _, m := range s.Merchants {
		if m.OK() {
			// The merchant's takings for the run as settlement holds them:
			// the statement a merchant would see on its page.
			fmt.Fprintf(w, "  %-12s %4d rows, net %s CNY (%d fen), matches what its terminals were told\n",
				m.Merchant, m.Rows, yuan(m.Store), m.Store)
			continue
		}
		fmt.Fprintf(w, "  %s: store net %d fen over %d rows, terminals told %d (unresolved +%d/-%d), difference %d\n",
			m.Merchant, m.Store, m.Rows, m.Told, m.Uncertain, m.UncertainCredit, m.Store-m.Told)
		for _, x := range m.Lost {
			fmt.Fprintf(w, "    approval lost: %s\n", x)
		}
		for _, x := range m.Twice {
			fmt.Fprintf(w, "    applied twice: %s\n", x)
		}
		for _, x := range m.Untold {
			fmt.Fprintf(w, "    not told to a terminal: %s\n", x)
		}
	}
}

// yuan presents fen as yuan with two decimals, in integer arithmetic.
func yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d", sign, fen/100, fen%100)
}
