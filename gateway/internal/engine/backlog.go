package engine

// Offline upload backlog and journal size gauges (issue 6).
//
// A bus reader holds offline taps until it uploads them (offline_upload);
// its heartbeat may report how many wait and the terminal time of the
// oldest ("obk", terminals.Backlog). The gateway keeps the last report per
// terminal in memory only: it is operator insight, never journaled and
// never used for authorization. The table is keyed by terminal id, holds
// only registered terminals (a heartbeat reaches here only after its MAC
// verified under a registry entry) and is bounded by the registry's
// TerminalsMax. The gauges are computed at scrape time so that a heartbeat
// costs one map store, and a report older than backlogReportMaxAge no
// longer counts: a reader that went quiet may have uploaded since, and a
// stale number would keep an alert firing for a backlog that is gone.
//
// The journal size is also computed at scrape time, from the segment files
// in the journal directory, so that it counts what is on disk whatever
// wrote or removed it (group commit, rotation, TruncateBefore after a
// snapshot).

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

// backlogReportMaxAge is how long a heartbeat's backlog report counts. Bus
// readers heartbeat every minute or so; ten minutes spans missed beats
// without keeping a silent reader's last number forever.
const backlogReportMaxAge = 10 * time.Minute

// journalSegmentSuffix names the journal's segment files (journal/format.go).
const journalSegmentSuffix = ".log"

type backlogReport struct {
	kind     string // scene label of the terminal at report time
	n        uint32
	oldestMS int64 // terminal time of the oldest waiting tap, 0 when n == 0
	atMS     int64 // gateway time the report arrived
}

// backlogTable is the last backlog report per terminal.
type backlogTable struct {
	mu  sync.Mutex
	max int // reportsMax: the registry's TerminalsMax
	m   map[string]backlogReport
}

func (b *backlogTable) init(max int) {
	b.max = max
	b.m = make(map[string]backlogReport)
}

// record stores a report; false when the table is full and tid is new.
func (b *backlogTable) record(tid string, r backlogReport) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[tid]; !ok && len(b.m) >= b.max {
		return false
	}
	b.m[tid] = r
	return true
}

// noteBacklog records a heartbeat's backlog report. A heartbeat without
// "obk" changes nothing: an older reader that never reports has no entry,
// and a reader's last report ages out by itself.
func (e *Engine) noteBacklog(term *registry.Entry, tid string, obk *terminals.Backlog, now time.Time) {
	if !obk.Set {
		return
	}
	r := backlogReport{kind: sceneLabel(term), n: obk.N, oldestMS: obk.Oldest, atMS: now.UnixMilli()}
	if r.n == 0 {
		r.oldestMS = 0
	}
	if !e.backlog.record(tid, r) {
		e.log.Warn("backlog report table full", "tid", tid)
	}
}

// backlogTotals sums the recent reports by kind: taps waiting and the age
// in seconds of the oldest waiting tap (0 when none waits). Reports of
// terminals no longer registered, or older than backlogReportMaxAge, are
// dropped here, so the table never outgrows the registry's live set.
func (e *Engine) backlogTotals() (taps map[string]uint64, oldestAge map[string]float64) {
	now := e.cfg.Clock().UnixMilli()
	taps, oldestAge = make(map[string]uint64, len(sceneKinds)), make(map[string]float64, len(sceneKinds))
	oldest := make(map[string]int64, len(sceneKinds))
	e.backlog.mu.Lock()
	defer e.backlog.mu.Unlock()
	for tid, r := range e.backlog.m {
		if _, ok := e.reg.Get(tid); !ok || now-r.atMS > backlogReportMaxAge.Milliseconds() {
			delete(e.backlog.m, tid)
			continue
		}
		if r.n == 0 {
			continue
		}
		taps[r.kind] += uint64(r.n) // n <= MaxBacklogTaps per terminal: no overflow within TerminalsMax
		if o, ok := oldest[r.kind]; !ok || r.oldestMS < o {
			oldest[r.kind] = r.oldestMS
		}
	}
	for k, o := range oldest {
		if age := now - o; age > 0 { // a reader clock ahead of ours reads as age 0
			oldestAge[k] = float64(age) / 1000
		} else {
			oldestAge[k] = 0
		}
	}
	return taps, oldestAge
}

// journalSizeBytes sums the sizes of the journal's segment files and of
// its spare segment: the disk the journal holds, the zeros of the active
// and the spare segment included (journal.Options.Preallocate).
func (e *Engine) journalSizeBytes() (int64, bool) {
	dir := e.journalDir()
	names, err := e.fs.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var sum int64
	for _, n := range names {
		if !strings.HasSuffix(n, journalSegmentSuffix) && n != journal.SpareName {
			continue
		}
		fi, err := e.fs.Stat(dir + "/" + n)
		if err != nil {
			continue // removed by TruncateBefore between ReadDir and Stat
		}
		sum += fi.Size()
	}
	return sum, true
}

// backlogCollector reports the backlog and journal size gauges from the
// engine, once it has recovered.
type backlogCollector struct {
	taps, oldestAge, journalSize *prometheus.Desc
	eng                          atomic.Pointer[Engine]
}

func newBacklogCollector() *backlogCollector {
	return &backlogCollector{
		taps: prometheus.NewDesc("scenepay_gateway_offline_upload_backlog_taps",
			"Offline taps terminals hold and have not uploaded yet, summed over terminals whose last heartbeat backlog report is at most 10 minutes old, by kind.",
			[]string{"kind"}, nil),
		oldestAge: prometheus.NewDesc("scenepay_gateway_offline_upload_oldest_age_seconds",
			"Age of the oldest offline tap waiting for upload among those reports (0 when none waits), by kind.",
			[]string{"kind"}, nil),
		journalSize: prometheus.NewDesc("scenepay_journal_size_bytes",
			"Bytes of the journal's segment files on disk, with the preallocated spare segment.", nil, nil),
	}
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.taps
	ch <- c.oldestAge
	ch <- c.journalSize
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.eng.Load()
	taps, age := map[string]uint64{}, map[string]float64{}
	if e != nil {
		taps, age = e.backlogTotals()
	}
	for _, k := range sceneKinds { // every kind, zeros included, like the terminals gauges
		ch <- prometheus.MustNewConstMetric(c.taps, prometheus.GaugeValue, float64(taps[k]), k)
		ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, age[k], k)
	}
	if e == nil {
		return
	}
	if n, ok := e.journalSizeBytes(); ok {
		ch <- prometheus.MustNewConstMetric(c.journalSize, prometheus.GaugeValue, float64(n))
	}
}
