package handoff

import "github.com/prometheus/client_golang/prometheus"

// metrics of the handoff. The only label is a fixed result set.
type metrics struct {
	batches       *prometheus.CounterVec // result: ok, duplicate, watermark, error, refused, read_error
	rows          prometheus.Counter
	ingestSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, h *Handoff) metrics {
	m := metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scenepay_handoff_batches_total",
			Help: "Handoff batches sent to the settlement store, by result (ok, duplicate, watermark, error, refused, read_error).",
		}, []string{"result"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_handoff_rows_total",
			Help: "Settlement rows written by the handoff (rows the store already had are not counted).",
		}),
		ingestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scenepay_handoff_ingest_duration_seconds",
			Help:    "Duration of one settlement store ingest call, successful or not.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30},
		}),
	}
	backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scenepay_handoff_backlog_records",
		Help: "Durable journal records not yet handed off to settlement (bounded by -handoff-backlog-max).",
	}, func() float64 { return float64(h.Backlog()) })
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scenepay_handoff_lag_seconds",
		Help: "Age of the oldest journal record not yet handed off to settlement (0 when none).",
	}, h.lagSeconds)
	for _, l := range []string{"ok", "duplicate", "watermark", "error", "refused", "read_error"} {
		m.batches.WithLabelValues(l)
	}
	if reg != nil {
		reg.MustRegister(m.batches, m.rows, m.ingestSeconds, backlog, lag)
	}
	return m
}
