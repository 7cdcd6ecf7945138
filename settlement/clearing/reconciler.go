package clearing

// The reconciliation pass of the settlement process. After each scheduler
// pass (Tick), Reconciler.Pass reconciles every SETTLED window of the last
// ReconcileLookbackDays that it has not yet reconciled, against the
// gateways' journals (HTTPJournal). A window whose journal totals cannot be
// had (a gateway down, a timeout) stays due and is tried again on the next
// pass: "not reconciled", never "reconciled against zero". A window that a
// gateway's journal no longer covers (ErrJournalNotCovered: retention
// removed it) is given up, counted and logged by the caller, since asking
// again cannot help.
//
// Done windows are remembered in memory only: after a restart the windows
// of the lookback are reconciled once more, which records nothing new (a
// difference seen again only moves its seen_at).

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/settlement/store"
)

// ReconcileLookbackDays is how many business days back a pass looks for
// settled windows to reconcile; it should not exceed the gateways'
// journal retention (-journal-retain, default 120h: settlement looks back 3 business days, up to 96h).
const ReconcileLookbackDays = 3

// Reasons of scenepay_settlement_reconciliation_failures_total.
const (
	ReconcileUnavailable = "unavailable" // a gateway or the store did not answer: retried next pass
	ReconcileNotCovered  = "not_covered" // a gateway's journal no longer holds the window: given up
)

// ReconcileFailure is one window a pass could not reconcile.
type ReconcileFailure struct {
	Window string
	Reason string // ReconcileUnavailable or ReconcileNotCovered
	Err    error
}

// ReconcilePass says what one pass did.
type ReconcilePass struct {
	Reconciled []Reconciled // in window order
	Windows    []string     // their ids
	Failed     []ReconcileFailure
	Pending    int // settled windows of the lookback still due after the pass
}

// Reconciler reconciles settled windows against a journal.
type Reconciler struct {
	c    *Clearer
	j    Journal
	done map[string]bool // window ids reconciled or given up

	failures *prometheus.CounterVec
	pending  prometheus.Gauge
}

// NewReconciler returns a Reconciler for c's store against j; its metrics
// go to reg (nil: not registered).
func NewReconciler(c *Clearer, j Journal, reg prometheus.Registerer) (*Reconciler, error) {
	if c == nil || j == nil {
		return nil, errors.New("clearing: reconciler: a clearer and a journal are required")
	}
	r := &Reconciler{c: c, j: j, done: map[string]bool{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scenepay_settlement_reconciliation_failures_total",
			Help: "Settled windows a reconciliation pass could not reconcile against the journal, by reason (unavailable: retried; not_covered: given up)."},
			[]string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scenepay_settlement_reconciliation_pending_windows",
			Help: "Settled windows of the lookback not yet reconciled against the journal."}),
	}
	for _, reason := range []string{ReconcileUnavailable, ReconcileNotCovered} {
		r.failures.WithLabelValues(reason)
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{r.failures, r.pending} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Pass reconciles the due settled windows at now. It returns an error only
// when the store cannot list the windows; each window's failure is in
// ReconcilePass.Failed.
func (r *Reconciler) Pass(ctx context.Context, now time.Time) (ReconcilePass, error) {
	var res ReconcilePass
	cal := r.c.cfg.Calendar
	from := cal.Of(now.AddDate(0, 0, -ReconcileLookbackDays))
	ws, err := r.c.cfg.Store.Windows(ctx, from.ID, "")
	if err != nil {
		return res, err
	}
	sort.Slice(ws, func(a, b int) bool { return ws[a].ID < ws[b].ID })
	inLookback := map[string]bool{}
	for _, w := range ws {
		inLookback[w.ID] = true
		if w.State != store.WindowSettled || r.done[w.ID] {
			continue
		}
		rec, err := r.c.reconcile(ctx, w.ID, now, r.j)
		switch {
		case err == nil:
			r.done[w.ID] = true
			res.Reconciled = append(res.Reconciled, rec)
			res.Windows = append(res.Windows, w.ID)
		case errors.Is(err, ErrJournalNotCovered):
			r.done[w.ID] = true
			r.failures.WithLabelValues(ReconcileNotCovered).Inc()
			res.Failed = append(res.Failed, ReconcileFailure{Window: w.ID, Reason: ReconcileNotCovered, Err: err})
		default:
			r.failures.WithLabelValues(ReconcileUnavailable).Inc()
			res.Failed = append(res.Failed, ReconcileFailure{Window: w.ID, Reason: ReconcileUnavailable, Err: err})
			res.Pending++
		}
	}
	for id := range r.done {
		if !inLookback[id] {
			delete(r.done, id) // bounded by the lookback
		}
	}
	r.pending.Set(float64(res.Pending))
	return res, nil
}
