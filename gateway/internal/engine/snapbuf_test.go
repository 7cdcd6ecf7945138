package engine

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// openAccounts opens county cards A0..A(n-1), each with balance bal, from
// a few goroutines at once so that the journal commits them in groups.
func openAccounts(tb testing.TB, e *Engine, n int, bal int64) {
	tb.Helper()
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				id := fmt.Sprintf("A%d", i)
				r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "county:" + id, Amount: bal, Ref: "o-" + id})
				if err != nil || r.Code != terminals.CodeApproved {
					errs <- fmt.Errorf("open %s: %v %v", id, r.Code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

func topUp(t *testing.T, e *Engine, id string, amt int64, ref string) {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Op: core.OpTopUp, Account: "county:" + id, Amount: amt, Ref: ref})
	if err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("top-up %s: %v %v", id, r.Code, err)
	}
}

// checkSnapBuffersReleased fails unless every shard's snapshot buffer has
// been given back after Snapshot returned (Snapshot, which released them,
// ran on this goroutine).
func checkSnapBuffersReleased(t *testing.T, e *Engine) {
	t.Helper()
	for _, s := range e.shards {
		if c := s.snap.Cap(); c != 0 {
			t.Errorf("shard %d keeps a snapshot buffer of %d bytes after the snapshot", s.id, c)
		}
	}
}

// After a snapshot is written no shard holds its encoding (memory held for
// nothing until the next snapshot), and the next snapshot, encoded into
// fresh buffers, restores the same state on its own.
func TestSnapshotReleasesShardBuffers(t *testing.T) {
	const n = 200
	dir := t.TempDir()
	e, _ := openEngine(t, dir, vfs.Default)
	openAccounts(t, e, n, 1_000)
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	checkSnapBuffersReleased(t, e)

	for i := 0; i < n; i += 3 {
		topUp(t, e, fmt.Sprintf("A%d", i), int64(i+1), fmt.Sprintf("t-%d", i))
	}
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	checkSnapBuffersReleased(t, e)
	// Crash right after the second snapshot: no closing snapshot, nothing
	// in the journal after it, so the state below comes from that snapshot.
	crash(e)

	e2, _ := openEngine(t, dir, vfs.Default)
	defer e2.Close()
	if got := testutil.ToFloat64(e2.m.ReplayedEntries); got != 0 {
		t.Fatalf("replayed %v journal entries after the second snapshot, want 0", got)
	}
	for i := 0; i < n; i++ {
		want := int64(1_000)
		if i%3 == 0 {
			want += int64(i + 1)
		}
		if got := cardBalance(t, e2, fmt.Sprintf("A%d", i)); got != want {
			t.Fatalf("balance of A%d after restore %d, want %d", i, got, want)
		}
	}
}

// BenchmarkSnapshotPause: one snapshot of an engine with 100k accounts
// (town scale) after one new record. pause-ns/op is the time the shard
// writers were parked (the scenepay_gateway_snapshot_pause_seconds
// histogram), where a shard grows its snapshot buffer.
func BenchmarkSnapshotPause(b *testing.B) {
	cfg := DefaultConfig(b.TempDir())
	cfg.SnapshotEvery = 0
	e, err := Open(cfg, master)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	e.SetPublisher(newFakePub())
	openAccounts(b, e, 100_000, 1_000)
	if err := e.Snapshot(); err != nil {
		b.Fatal(err)
	}
	pauseSum := func() float64 {
		var m dto.Metric
		if err := e.m.SnapshotPause.Write(&m); err != nil {
			b.Fatal(err)
		}
		return m.GetHistogram().GetSampleSum()
	}
	before := pauseSum()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ref := fmt.Sprintf("b-%d", i)
		r, err := e.Operate(context.Background(), core.Input{Op: core.OpTopUp, Account: "county:A1", Amount: 1, Ref: ref})
		if err != nil || r.Code != terminals.CodeApproved {
			b.Fatalf("top-up: %v %v", r.Code, err)
		}
		if err := e.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((pauseSum()-before)*1e9/float64(b.N), "pause-ns/op")
}

// BenchmarkShardSnapshotEncode: the part of the pause that the buffer
// choice changes, one shard's ledger (of 100k accounts over the default
// shards) encoded as it parks: into the buffer kept from the previous
// snapshot, into a zero buffer (grown by doubling), and into a zero buffer
// grown once from the previous snapshot's length, as the writer does.
func BenchmarkShardSnapshotEncode(b *testing.B) {
	cfg := DefaultConfig(b.TempDir())
	cfg.SnapshotEvery = 0
	e, err := Open(cfg, master)
	if err != nil {
		b.Fatal(err)
	}
	e.SetPublisher(newFakePub())
	openAccounts(b, e, 100_000, 1_000)
	// Stop the writers: the benchmark then owns shard 0's ledger.
	crash(e)
	c := e.shards[0].c

	var kept bytes.Buffer
	if err := c.Snapshot(&kept); err != nil {
		b.Fatal(err)
	}
	size := kept.Len()
	for _, v := range []struct {
		name string
		buf  func() *bytes.Buffer // the buffer one snapshot is encoded into
	}{
		{"kept", func() *bytes.Buffer { kept.Reset(); return &kept }},
		{"zero", func() *bytes.Buffer { return new(bytes.Buffer) }},
		{"hint", func() *bytes.Buffer { // as the writer does (shard.snapHint)
			var buf bytes.Buffer
			buf.Grow(size + size/16)
			return &buf
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				if err := c.Snapshot(v.buf()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
