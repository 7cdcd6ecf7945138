package clearing

// Reconciliation: per merchant and window, the journal's totals against
// the store's. A difference is written as a difference record and raised
// on scenepay_settlement_reconciliation_difference_fen and
// ..._differences_total; nothing is corrected, because only a person can
// tell which side is wrong.
//
// For a SETTLED window the store's current totals are also compared with
// the settled ones: a row ingested after settlement (a drain that was
// wrong, a retired source that came back) shows up as settled_* fields,
// with the settled value in the Journal column.

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"scenepay/settlement/store"
)

// Journal is the journal side of reconciliation, implemented by the
// gateway: its own totals of window w per merchant.
type Journal interface {
	JournalTotals(ctx context.Context, w store.Window) (map[string]store.Totals, error)
}

// Reconciled says what one reconciliation found.
type Reconciled struct {
	Merchants   int                // merchants compared
	Differences []store.Difference // every difference found in this run
	New         int                // how many of them were not recorded before
	DiffFen     int64              // sum of absolute money differences
}

// fields compared, in record order.
var reconFields = []struct {
	name  string
	money bool
	get   func(*store.Totals) int64
}{
	{"count", false, func(t *store.Totals) int64 { return t.Count }},
	{"gross", true, func(t *store.Totals) int64 { return t.Gross }},
	{"reversals", true, func(t *store.Totals) int64 { return t.Reversals }},
	{"refunds", true, func(t *store.Totals) int64 { return t.Refunds }},
	{"net", true, func(t *store.Totals) int64 { return t.Net }},
}

// storeTotals sums the store's takings per merchant over window w.
func storeTotals(ctx context.Context, st store.Store, w store.Window) (map[string]store.Totals, error) {
	scenes, err := st.SceneTotals(ctx, w.Start, w.CutOff)
	if err != nil {
		return nil, err
	}
	out := map[string]store.Totals{}
	for _, s := range scenes {
		t := out[s.Merchant]
		if err := addTotals(&t, s.Totals); err != nil {
			return nil, err
		}
		out[s.Merchant] = t
	}
	return out, nil
}

func absDiff(a, b int64) int64 {
	d, err := sub(a, b)
	if err != nil || d == math.MinInt64 {
		return math.MaxInt64
	}
	if d < 0 {
		return -d
	}
	return d
}

// compare appends the differences of left (journal or settled) and right
// (store) under field prefix.
func compare(window, prefix string, left, right map[string]store.Totals, at time.Time, out *Reconciled) {
	ms := map[string]bool{}
	for m := range left {
		ms[m] = true
	}
	for m := range right {
		ms[m] = true
	}
	ids := make([]string, 0, len(ms))
	for m := range ms {
		ids = append(ids, m)
	}
	sort.Strings(ids)
	for _, m := range ids {
		l, r := left[m], right[m]
		for _, f := range reconFields {
			a, b := f.get(&l), f.get(&r)
			if a == b {
				continue
			}
			out.Differences = append(out.Differences, store.Difference{Window: window, Merchant: m, Field: prefix + f.name,
				Journal: a, Store: b, SeenAt: at})
			if f.money {
				if s, err := add(out.DiffFen, absDiff(a, b)); err == nil {
					out.DiffFen = s
				} else {
					out.DiffFen = math.MaxInt64
				}
			}
		}
	}
	if prefix == "" {
		out.Merchants = len(ids)
	}
}

// Reconcile compares window id's journal totals (if a Journal is
// configured) and, once SETTLED, its settled totals with the store's, and
// records every difference.
func (c *Clearer) Reconcile(ctx context.Context, id string, now time.Time) (Reconciled, error) {
	return c.reconcile(ctx, id, now, c.cfg.Journal)
}

// reconcile is Reconcile against journal j (nil: settled totals only).
func (c *Clearer) reconcile(ctx context.Context, id string, now time.Time, j Journal) (Reconciled, error) {
	var res Reconciled
	w, err := c.cfg.Store.Window(ctx, id)
	if err != nil {
		return res, err
	}
	if w.State == store.WindowOpen {
		return res, &store.Error{Code: store.CodeState, Reason: "window " + id + " is still OPEN"}
	}
	have, err := storeTotals(ctx, c.cfg.Store, w)
	if err != nil {
		return res, err
	}
	if j != nil {
		jt, err := j.JournalTotals(ctx, w)
		if err != nil {
			return res, fmt.Errorf("clearing: journal totals: %w", err)
		}
		compare(w.ID, "", jt, have, now, &res)
	}
	if w.State == store.WindowSettled {
		ss, err := c.cfg.Store.Settlements(ctx, w.ID)
		if err != nil {
			return res, err
		}
		settled := make(map[string]store.Totals, len(ss))
		for _, s := range ss {
			if s.Count != 0 || s.Gross != 0 || s.Net != 0 {
				settled[s.Merchant] = s.Totals
			}
		}
		compare(w.ID, "settled_", settled, have, now, &res)
	}
	for _, d := range res.Differences {
		isNew, err := c.cfg.Store.RecordDifference(ctx, d)
		if err != nil {
			return res, err
		}
		if isNew {
			res.New++
		}
	}
	c.m.differences.Add(float64(res.New))
	c.m.differenceFen.Set(float64(res.DiffFen))
	c.m.reconciliations.Inc()
	return res, nil
}
