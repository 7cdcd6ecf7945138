package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// Requests are counted by scene (the terminal's kind) and instrument; a
// refusal before the request decodes counts as instrument "none".
func TestRequestMetricsBySceneAndInstrument(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	setup(t, e, 10_000) // T1 is a bus reader
	e.HandleMessage(topic, buy(1, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("purchase: %s", rep.Code)
	}
	e.HandleMessage(topic, []byte("garbage"))
	p.next(t, 5*time.Second)
	// The reply is published before the request is counted: wait for it.
	approved := e.m.Requests.WithLabelValues(terminals.TypePurchase, "00", "bus", "county")
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(approved) != 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(approved); got != 1 {
		t.Fatalf("approved bus/county purchases = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.m.Requests.WithLabelValues(terminals.TypePurchase, "00", "stall", "county")); got != 0 {
		t.Fatalf("a bus purchase counted for stalls: %v", got)
	}
	none := func() (n float64) {
		for _, c := range terminals.Catalogue() {
			n += testutil.ToFloat64(e.m.Requests.WithLabelValues("other", string(c.Code), "bus", "none"))
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); none() != 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if none := none(); none != 1 {
		t.Fatalf("undecodable request counted %v times as bus/none, want 1", none)
	}
	if got := testutil.CollectAndCount(e.m.Latency); got == 0 {
		t.Fatal("no latency series")
	}
	if sceneLabel(nil) != "none" || instLabel("visa") != "none" || instLabel(terminals.InstECNY) != "ecny" {
		t.Fatal("label mapping is not total over bounded values")
	}
}

// The terminals gauges follow registrations and the status topic.
func TestTerminalsOnlineGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.Metrics = NewMetrics(reg)
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tm := range []registry.Terminal{
		{TID: "B1", Kind: "bus", Merchant: "M", KeyVersion: 1},
		{TID: "B2", Kind: "bus", Merchant: "M", KeyVersion: 1},
		{TID: "K1", Kind: "kiosk", Merchant: "H", KeyVersion: 1},
	} {
		if err := e.RegisterTerminal(tm); err != nil {
			t.Fatal(err)
		}
	}
	e.HandleStatus(cfg.Topics.Status("B1"), []byte("online"))
	e.HandleStatus(cfg.Topics.Status("B2"), []byte("online"))
	e.HandleStatus(cfg.Topics.Status("B2"), []byte("offline"))
	e.HandleStatus(cfg.Topics.Status("K1"), []byte("online"))
	e.HandleStatus(cfg.Topics.Status("NOPE"), []byte("online"))
	want := `
# HELP scenepay_gateway_terminals_online Registered terminals whose last status message was "online", by kind.
# TYPE scenepay_gateway_terminals_online gauge
scenepay_gateway_terminals_online{kind="bus"} 1
scenepay_gateway_terminals_online{kind="kiosk"} 1
scenepay_gateway_terminals_online{kind="stall"} 0
# HELP scenepay_gateway_terminals_registered Registered terminals, by kind.
# TYPE scenepay_gateway_terminals_registered gauge
scenepay_gateway_terminals_registered{kind="bus"} 2
scenepay_gateway_terminals_registered{kind="kiosk"} 1
scenepay_gateway_terminals_registered{kind="stall"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "scenepay_gateway_terminals_online", "scenepay_gateway_terminals_registered"); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkObserve is the per-request metrics cost with the scene and
// instrument labels (one registry read of the terminal's kind, two vector
// lookups).
func BenchmarkObserve(b *testing.B) {
	e, err := Open(func() Config { c := DefaultConfig(b.TempDir()); c.Shards = 1; return c }(), master)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if err := e.RegisterTerminal(registry.Terminal{TID: "T1", Kind: "bus", Merchant: "M", KeyVersion: 1}); err != nil {
		b.Fatal(err)
	}
	term, _ := e.reg.Get("T1")
	recv := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e.observe(term, terminals.InstCounty, terminals.TypeTapIn, terminals.CodeApproved, recv)
	}
}
