package engine

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the request path. Labels are bounded: message type (a fixed
// set), result code (the catalogue) and stage; never a terminal or card.
type Metrics struct {
	Requests          *prometheus.CounterVec   // type, code, scene, instrument
	Latency           *prometheus.HistogramVec // type, scene, instrument
	InFlight          *prometheus.GaugeVec
	Busy              prometheus.Counter
	UnknownTerminal   prometheus.Counter
	BadTopic          prometheus.Counter
	DuplicateReplays  prometheus.Counter
	Snapshots         prometheus.Counter
	SnapshotSeconds   prometheus.Histogram
	SnapshotPause     prometheus.Histogram
	JournalFailed     prometheus.Gauge
	ReplayedEntries   prometheus.Counter
	SnapshotFallbacks prometheus.Counter
	FsyncSeconds      prometheus.Histogram
	GroupRecords      prometheus.Histogram
	JournalBytes      prometheus.Counter
	// Config push: version per document name (a fixed set of four), publish
	// failures, and terminals lagging per name (computed at scrape time).
	ConfigVersion       *prometheus.GaugeVec // name
	ConfigPublishErrors prometheus.Counter
	ConfigInvalidStored prometheus.Counter // stored documents that did not compile at recovery
	configLagging       *lagCollector
	terminals           *terminalsCollector    // online/registered by kind (scene_metrics.go)
	deny                *denyCollector         // deny-list version and lagging readers (denylist.go)
	backlog             *backlogCollector      // offline upload backlog and journal size (backlog.go)
	swept               *prometheus.CounterVec // expiries by the sweep, by scene (sweep.go)
	stallPays           *prometheus.CounterVec // wallet payments through stall codes, by result code (stall.go)
	stallRefunds        *prometheus.CounterVec // refunds of those payments, by result code (stall.go)
}

// OnJournalSync is the journal's per-group hook.
func (m *Metrics) OnJournalSync(d time.Duration, records, bytes int) {
	m.FsyncSeconds.Observe(d.Seconds())
	m.GroupRecords.Observe(float64(records))
	m.JournalBytes.Add(float64(bytes))
}

// NewMetrics creates and registers the engine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scenepay_gateway_requests_total",
			Help: "Terminal requests answered, by message type, result code, scene (terminal kind) and instrument kind.",
		}, []string{"type", "code", "scene", "instrument"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scenepay_gateway_request_duration_seconds",
			Help:    "Time from receipt of a terminal request to the publication of its reply.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
		}, []string{"type", "scene", "instrument"}),
		InFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scenepay_gateway_inflight_requests",
			Help: "Admitted requests not yet answered (bounded by -inflight-max).",
		}, []string{"scene"}),
		Busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_busy_total",
			Help: "Requests answered BUSY because a bound (in-flight or shard queue) was reached.",
		}),
		UnknownTerminal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_unknown_terminal_total",
			Help: "Messages on a request topic of an unregistered terminal (not answered: no key).",
		}),
		BadTopic: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_bad_topic_total",
			Help: "Messages on a topic that does not name a valid terminal id.",
		}),
		DuplicateReplays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_duplicate_replies_total",
			Help: "Duplicates answered with the stored reply.",
		}),
		Snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_snapshots_total",
			Help: "State snapshots written.",
		}),
		SnapshotSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scenepay_gateway_snapshot_duration_seconds",
			Help:    "Time to take and write a state snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		SnapshotPause: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scenepay_gateway_snapshot_pause_seconds",
			Help:    "Time the shard writers were paused to copy state for a snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
		JournalFailed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scenepay_gateway_journal_failed",
			Help: "1 once the journal has failed (write or fsync error); the gateway stops authorizing.",
		}),
		SnapshotFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_snapshot_fallbacks_total",
			Help: "Startups that found the newest snapshot corrupt and used an older one or the whole journal.",
		}),
		ReplayedEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_recovery_replayed_entries_total",
			Help: "Journal entries replayed at startup after the snapshot.",
		}),
		FsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scenepay_journal_fsync_seconds",
			Help:    "Duration of one journal group write and fsync.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		GroupRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scenepay_journal_group_records",
			Help:    "Records made durable by one fsync (group commit size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		JournalBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_journal_written_bytes_total",
			Help: "Bytes written to the journal.",
		}),
	}
	m.ConfigVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "scenepay_gateway_config_version",
		Help: "Current version of each scene configuration document (0: never set).",
	}, []string{"name"})
	m.ConfigPublishErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scenepay_gateway_config_publish_errors_total",
		Help: "Retained config publications the broker did not acknowledge (republished on the next change, broker reconnect or restart).",
	})
	m.ConfigInvalidStored = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scenepay_gateway_config_invalid_stored_total",
		Help: "Journaled config documents that did not compile at recovery (the previous rules stayed for that name).",
	})
	m.configLagging = &lagCollector{desc: prometheus.NewDesc("scenepay_gateway_config_lagging_terminals",
		"Registered terminals of a document's group whose last reported version is below the current one, or that never reported it since the gateway started.",
		[]string{"name"}, nil)}
	m.deny = newDenyCollector()
	for _, sc := range sceneKinds { // every scene from the start: an idle scene reads 0, not "no data"
		m.InFlight.WithLabelValues(sc)
	}
	if reg != nil {
		reg.MustRegister(m.deny)
		reg.MustRegister(m.ConfigVersion, m.ConfigPublishErrors, m.ConfigInvalidStored, m.configLagging)
		reg.MustRegister(m.FsyncSeconds, m.GroupRecords, m.JournalBytes)
		reg.MustRegister(m.Requests, m.Latency, m.InFlight, m.Busy, m.UnknownTerminal, m.BadTopic,
			m.DuplicateReplays, m.Snapshots, m.SnapshotSeconds, m.SnapshotPause, m.JournalFailed, m.ReplayedEntries, m.SnapshotFallbacks)
	}
	m.terminals = newTerminalsCollector()
	m.backlog = newBacklogCollector()
	if reg != nil {
		reg.MustRegister(m.terminals, m.backlog)
	}
	m.swept = newSweptCounter(reg)
	m.stallPays = newStallPaysCounter(reg, "scenepay_gateway_stall_payments_total",
		"Wallet payments through stall codes answered, by result code (repeats of a payment id included).")
	m.stallRefunds = newStallPaysCounter(reg, "scenepay_gateway_stall_refunds_total",
		"Refunds of wallet payments through stall codes answered, by result code (repeats of a refund id included).")
	m.precreateSceneSeries()
	return m
}

// lagCollector reports the lagging gauge from a function the engine sets
// once it has recovered; counting at scrape time keeps heartbeats cheap.
type lagCollector struct {
	desc *prometheus.Desc
	fn   atomic.Pointer[func() map[string]int]
}

func (m *Metrics) setConfigLagging(fn func() map[string]int) { m.configLagging.fn.Store(&fn) }

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.fn.Load()
	if p == nil {
		return
	}
	for name, n := range (*p)() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), name)
	}
}
