package clearing

import "github.com/prometheus/client_golang/prometheus"

// metrics are created per Clearer from the passed-in registerer; label
// values are only window states and field names, never merchant ids.
type metrics struct {
	state           *prometheus.GaugeVec
	closed          prometheus.Counter
	settled         prometheus.Counter
	statements      prometheus.Counter
	tickErrors      prometheus.Counter
	differenceFen   prometheus.Gauge
	differences     prometheus.Counter
	reconciliations prometheus.Counter
	heldFen         prometheus.Gauge
	heldReceipts    prometheus.Gauge
	heldOldest      prometheus.Gauge
	syncsPruned     prometheus.Counter
	recentMoved     prometheus.Counter
	recentRows      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scenepay_settlement_window_state",
			Help: "Settlement windows in each state among the last 400 business days."}, []string{"state"}),
		closed: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_windows_closed_total",
			Help: "Windows moved from OPEN to CLOSED after drain."}),
		settled: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_windows_settled_total",
			Help: "Windows moved from CLOSED to SETTLED."}),
		statements: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_statements_total",
			Help: "Merchant settlements (statements) written."}),
		tickErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_tick_errors_total",
			Help: "Scheduler passes that failed (store errors, overflow, bad rates)."}),
		differenceFen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scenepay_settlement_reconciliation_difference_fen",
			Help: "Sum of absolute money differences (gross, reversals, refunds, net) found by the last reconciliation."}),
		differences: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_reconciliation_differences_total",
			Help: "New difference records written by reconciliation."}),
		reconciliations: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_reconciliations_total",
			Help: "Reconciliation runs completed."}),
		heldFen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scenepay_settlement_ecny_held_fen",
			Help: "e-CNY double-offline receipts held back from payout (their window is settled, no window has paid them), fen."}),
		heldReceipts: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scenepay_settlement_ecny_held_receipts",
			Help: "e-CNY double-offline receipts held back from payout."}),
		heldOldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scenepay_settlement_ecny_held_oldest_seconds",
			Help: "Age of the oldest held e-CNY double-offline receipt (now minus its payment time); 0 when none is held."}),
		syncsPruned: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_ecny_syncs_pruned_total",
			Help: "e-CNY wallet syncs deleted because no receipt that may still be ingested lies before them."}),
		recentMoved: prometheus.NewCounter(prometheus.CounterOpts{Name: "scenepay_settlement_recent_rows_moved_total",
			Help: "Rows the scheduler moved from the store's unindexed recent part into the indexed txns (PostgreSQL; SQLite moves none)."}),
		recentRows: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scenepay_settlement_recent_rows",
			Help: "Rows waiting in the store's unindexed recent part after the last scheduler pass, counted up to RecentRowsGaugeMax."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.state, m.closed, m.settled, m.statements, m.tickErrors,
			m.differenceFen, m.differences, m.reconciliations, m.heldFen, m.heldReceipts, m.heldOldest, m.syncsPruned,
			m.recentMoved, m.recentRows} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
