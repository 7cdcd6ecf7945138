package engine

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

// Heartbeats with and without "obk" drive the backlog gauges: a report
// counts until it is backlogReportMaxAge old, a heartbeat without obk keeps
// the last report, n=0 clears it, and kinds stay apart.
func TestOfflineBacklogGauges(t *testing.T) {
	var clk atomic.Int64
	clk.Store(time.Now().UnixMilli())
	now := func() time.Time { return time.UnixMilli(clk.Load()) }
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	cfg.Clock = now
	cfg.Metrics = NewMetrics(reg)
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := newFakePub()
	e.SetPublisher(p)
	for _, tm := range []registry.Terminal{
		{TID: "T1", Kind: "bus", Merchant: "M", KeyVersion: 1},
		{TID: "B2", Kind: "bus", Merchant: "M", KeyVersion: 1},
		{TID: "K1", Kind: "kiosk", Merchant: "H", KeyVersion: 1},
	} {
		if err := e.RegisterTerminal(tm); err != nil {
			t.Fatal(err)
		}
	}
	beat := func(tid string, obk *terminals.Backlog) {
		t.Helper()
		hb := terminals.Request{V: 1, Type: terminals.TypeHeartbeat, TID: tid, TS: clk.Load()}
		if obk != nil {
			hb.OBK = *obk
			hb.OBK.Set = true
		}
		s := terminals.NewSigner(terminals.DeriveKey(master, tid, 1))
		e.HandleMessage(cfg.Topics.Request(tid), s.Seal(nil, hb.AppendJSON(nil)))
		body, err := s.Open(p.next(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := terminals.DecodeReply(body); err != nil || rep.Code != terminals.CodeApproved {
			t.Fatalf("heartbeat %s: %v %v", tid, rep, err)
		}
	}
	check := func(step string, busTaps, busAge, kioskTaps, kioskAge float64) {
		t.Helper()
		want := `
# HELP scenepay_gateway_offline_upload_backlog_taps Offline taps terminals hold and have not uploaded yet, summed over terminals whose last heartbeat backlog report is at most 10 minutes old, by kind.
# TYPE scenepay_gateway_offline_upload_backlog_taps gauge
scenepay_gateway_offline_upload_backlog_taps{kind="bus"} ` + ftoa(busTaps) + `
scenepay_gateway_offline_upload_backlog_taps{kind="kiosk"} ` + ftoa(kioskTaps) + `
scenepay_gateway_offline_upload_backlog_taps{kind="stall"} 0
# HELP scenepay_gateway_offline_upload_oldest_age_seconds Age of the oldest offline tap waiting for upload among those reports (0 when none waits), by kind.
# TYPE scenepay_gateway_offline_upload_oldest_age_seconds gauge
scenepay_gateway_offline_upload_oldest_age_seconds{kind="bus"} ` + ftoa(busAge) + `
scenepay_gateway_offline_upload_oldest_age_seconds{kind="kiosk"} ` + ftoa(kioskAge) + `
scenepay_gateway_offline_upload_oldest_age_seconds{kind="stall"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
			"scenepay_gateway_offline_upload_backlog_taps", "scenepay_gateway_offline_upload_oldest_age_seconds"); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	check("no reports", 0, 0, 0, 0)
	beat("T1", nil) // an older reader: no obk, no report
	check("heartbeat without obk", 0, 0, 0, 0)

	t0 := clk.Load()
	beat("T1", &terminals.Backlog{N: 3, Oldest: t0 - 120_000})
	beat("B2", &terminals.Backlog{N: 2, Oldest: t0 - 30_000})
	beat("K1", &terminals.Backlog{N: 1, Oldest: t0 - 5_000})
	check("three reports", 5, 120, 1, 5)

	clk.Add(60_000) // a minute later the same taps are a minute older
	beat("T1", nil) // no obk: T1's last report stands
	check("a minute on", 5, 180, 1, 65)

	beat("T1", &terminals.Backlog{N: 0}) // T1 uploaded everything
	check("T1 cleared", 2, 90, 1, 65)

	clk.Add(backlogReportMaxAge.Milliseconds() - 60_000 + 1) // B2's and K1's reports are now too old
	beat("T1", &terminals.Backlog{N: 4, Oldest: clk.Load() - 1_500})
	check("stale reports dropped", 4, 1.5, 0, 0)
	e.backlog.mu.Lock()
	left := len(e.backlog.m)
	e.backlog.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d reports kept after aging, want 1", left)
	}
}

// The table never grows past its bound: a new terminal's report is dropped
// when it is full, a known terminal's report is replaced.
func TestBacklogTableBound(t *testing.T) {
	var b backlogTable
	b.init(2)
	if !b.record("A", backlogReport{n: 1}) || !b.record("B", backlogReport{n: 1}) {
		t.Fatal("refused below the bound")
	}
	if b.record("C", backlogReport{n: 1}) {
		t.Fatal("accepted a third terminal over a bound of 2")
	}
	if !b.record("A", backlogReport{n: 7}) || b.m["A"].n != 7 {
		t.Fatal("a known terminal's report was not replaced")
	}
}

// The journal size gauge is the sum of the segment files on disk, the
// preallocated spare included, and grows with approvals.
func TestJournalSizeGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	cfg.Metrics = NewMetrics(reg)
	cfg.Journal.Preallocate, cfg.Journal.SegmentBytesMax = true, 8<<20
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := newFakePub()
	e.SetPublisher(p)
	size := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "scenepay_journal_size_bytes" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("scenepay_journal_size_bytes not exported")
		return 0
	}
	onDisk := func() float64 {
		t.Helper()
		names, err := e.fs.ReadDir(e.journalDir())
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, name := range names {
			fi, err := e.fs.Stat(e.journalDir() + "/" + name)
			if err != nil {
				t.Fatal(err)
			}
			n += fi.Size()
		}
		return float64(n)
	}
	spare := e.journalDir() + "/" + journal.SpareName
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if fi, err := e.fs.Stat(spare); err == nil && fi.Size() == 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the journal's spare segment was not filled")
		}
	}
	before := size()
	if before != onDisk() {
		t.Fatalf("size %v, on disk %v", before, onDisk())
	}
	setup(t, e, 10_000)
	e.HandleMessage(topic, buy(1, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("purchase: %s", rep.Code)
	}
	after := size()
	if after <= before {
		t.Fatalf("journal size %v after an approval, %v before", after, before)
	}
	if after != onDisk() {
		t.Fatalf("size %v, on disk %v", after, onDisk())
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
