package bench

import (
	"math"
	"strings"
	"testing"
)

// The window summary reads histograms summed over their label sets and
// answers quantiles as bucket upper bounds.
func TestParseHistogramsAndQuantiles(t *testing.T) {
	text := `# HELP scenepay_journal_fsync_seconds Duration.
# TYPE scenepay_journal_fsync_seconds histogram
scenepay_journal_fsync_seconds_bucket{le="0.0001"} 0
scenepay_journal_fsync_seconds_bucket{le="0.0002"} 50
scenepay_journal_fsync_seconds_bucket{le="0.0004"} 98
scenepay_journal_fsync_seconds_bucket{le="0.0008"} 100
scenepay_journal_fsync_seconds_bucket{le="+Inf"} 100
scenepay_journal_fsync_seconds_sum 0.025
scenepay_journal_fsync_seconds_count 100
scenepay_gateway_request_duration_seconds_bucket{instrument="county",scene="stall",type="purchase",le="0.001"} 10
scenepay_gateway_request_duration_seconds_bucket{instrument="county",scene="stall",type="purchase",le="0.01"} 10
scenepay_gateway_request_duration_seconds_bucket{instrument="county",scene="stall",type="purchase",le="+Inf"} 10
scenepay_gateway_request_duration_seconds_count{instrument="county",scene="stall",type="purchase"} 10
scenepay_gateway_request_duration_seconds_bucket{instrument="ecny",scene="stall",type="purchase",le="0.001"} 0
scenepay_gateway_request_duration_seconds_bucket{instrument="ecny",scene="stall",type="purchase",le="0.01"} 9
scenepay_gateway_request_duration_seconds_bucket{instrument="ecny",scene="stall",type="purchase",le="+Inf"} 10
scenepay_gateway_request_duration_seconds_count{instrument="ecny",scene="stall",type="purchase"} 10
scenepay_journal_fsync_seconds_other 7
`
	hs, err := parseHistograms(strings.NewReader(text), metricFsync, metricReply, metricSnapshotPause)
	if err != nil {
		t.Fatal(err)
	}
	f := hs[metricFsync]
	if f.count != 100 || f.mean() != 0.00025 {
		t.Fatalf("fsync count %v mean %v", f.count, f.mean())
	}
	for q, want := range map[float64]float64{0.5: 0.0002, 0.9: 0.0004, 0.99: 0.0008, 1: 0.0008} {
		if got := f.quantile(q); got != want {
			t.Errorf("fsync q%v = %v, want %v", q, got, want)
		}
	}
	r := hs[metricReply]
	if r.count != 20 || r.quantile(0.5) != 0.001 || r.quantile(0.9) != 0.01 || !math.IsInf(r.quantile(0.99), 1) {
		t.Fatalf("reply histogram summed over labels: count %v q50 %v q90 %v q99 %v", r.count, r.quantile(0.5), r.quantile(0.9), r.quantile(0.99))
	}
	if p := hs[metricSnapshotPause]; !math.IsNaN(p.quantile(0.5)) || p.count != 0 {
		t.Fatalf("absent histogram: %+v", p)
	}
	in := Internals{ReplyP50ms: 2, ReplyP99ms: math.Inf(1), ReplyMaxMs: math.Inf(1), FsyncP99ms: math.NaN(), FsyncMaxMs: 3.2}
	if s := in.String(); !strings.Contains(s, "p50 <= 2 ms") || !strings.Contains(s, "p99 <= inf ms, max <= inf ms") || !strings.Contains(s, "p99 <= - ms, max <= 3.2 ms") {
		t.Fatalf("summary %q", s)
	}
}
