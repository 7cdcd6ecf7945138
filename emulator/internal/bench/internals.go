package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Internals is what the gateway's own metrics say about a window (the
// gateway process runs for one window, so its counters are the window's,
// warm-up included): where the time went inside the gateway, as against
// the latency the terminals saw.
type Internals struct {
	// Receipt of a request to publication of its reply, bucket upper
	// bounds (scenepay_gateway_request_duration_seconds).
	ReplyP50ms, ReplyP99ms, ReplyMaxMs float64
	// Journal group writes (write + fsync): count, mean, p99 and largest
	// bucket bounds, and mean records per group.
	Fsyncs          int64
	FsyncMeanMs     float64
	FsyncP99ms      float64
	FsyncMaxMs      float64
	RecordsPerFsync float64
	// Snapshot pauses of the shard writers in the window, and their total.
	SnapshotPauses  int64
	SnapshotPauseMs float64
}

// hist is one histogram summed over its label sets.
type hist struct {
	buckets map[float64]float64 // le -> cumulative count
	sum     float64
	count   float64
}

// quantile is the upper bound of the bucket holding quantile q (+Inf when
// it is past the last finite bound, NaN when empty).
func (h *hist) quantile(q float64) float64 {
	if h == nil || h.count == 0 {
		return math.NaN()
	}
	les := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		les = append(les, le)
	}
	slices.Sort(les)
	for _, le := range les {
		if h.buckets[le] >= q*h.count {
			return le
		}
	}
	return math.Inf(1)
}

func (h *hist) mean() float64 {
	if h == nil || h.count == 0 {
		return math.NaN()
	}
	return h.sum / h.count
}

// parseHistograms reads the Prometheus text format and returns the
// histograms named in names, each summed over its label sets.
func parseHistograms(r io.Reader, names ...string) (map[string]*hist, error) {
	out := map[string]*hist{}
	for _, n := range names {
		out[n] = &hist{buckets: map[float64]float64{}}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		series, labels := line[:sp], ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			series, labels = series[:i], series[i:]
		}
		for name, h := range out {
			switch series {
			case name + "_sum":
				h.sum += v
			case name + "_count":
				h.count += v
			case name + "_bucket":
				i := strings.Index(labels, `le="`)
				if i < 0 {
					continue
				}
				rest := labels[i+4:]
				le, err := strconv.ParseFloat(rest[:strings.IndexByte(rest, '"')], 64)
				if err != nil {
					continue
				}
				h.buckets[le] += v
			}
		}
	}
	return out, sc.Err()
}

// Histograms the window summary reads.
const (
	metricReply         = "scenepay_gateway_request_duration_seconds"
	metricFsync         = "scenepay_journal_fsync_seconds"
	metricGroupRecords  = "scenepay_journal_group_records"
	metricSnapshotPause = "scenepay_gateway_snapshot_pause_seconds"
)

// GatewayInternals fetches the gateway's /metrics from its operator API.
func GatewayInternals(ctx context.Context, api string) (Internals, error) {
	var in Internals
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(api, "/")+"/metrics", nil)
	if err != nil {
		return in, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return in, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return in, fmt.Errorf("bench: gateway /metrics: %s", resp.Status)
	}
	hs, err := parseHistograms(resp.Body, metricReply, metricFsync, metricGroupRecords, metricSnapshotPause)
	if err != nil {
		return in, err
	}
	r, f, g, p := hs[metricReply], hs[metricFsync], hs[metricGroupRecords], hs[metricSnapshotPause]
	in.ReplyP50ms, in.ReplyP99ms, in.ReplyMaxMs = 1e3*r.quantile(0.5), 1e3*r.quantile(0.99), 1e3*r.quantile(1)
	in.Fsyncs, in.FsyncMeanMs, in.FsyncP99ms, in.FsyncMaxMs = int64(f.count), 1e3*f.mean(), 1e3*f.quantile(0.99), 1e3*f.quantile(1)
	in.RecordsPerFsync = g.mean()
	in.SnapshotPauses, in.SnapshotPauseMs = int64(p.count), 1e3*p.sum
	return in, nil
}

// String is the summary line printed under a gateway window.
func (in Internals) String() string {
	return fmt.Sprintf("in the gateway: receipt to reply p50 <= %s ms, p99 <= %s ms, max <= %s ms; %d fsyncs, mean %.2f ms, p99 <= %s ms, max <= %s ms, %.1f records each; %d snapshot pauses, %.0f ms",
		bound(in.ReplyP50ms), bound(in.ReplyP99ms), bound(in.ReplyMaxMs), in.Fsyncs, in.FsyncMeanMs, bound(in.FsyncP99ms), bound(in.FsyncMaxMs), in.RecordsPerFsync,
		in.SnapshotPauses, in.SnapshotPauseMs)
}

func bound(ms float64) string {
	switch {
	case math.IsNaN(ms):
		return "-"
	case math.IsInf(ms, 1):
		return "inf"
	}
	return strconv.FormatFloat(ms, 'f', -1, 64)
}
