package journal

import (
	"sync"
	"testing"
	"time"
)

// With a commit interval, two group writes never start closer together
// than the interval, every record still becomes durable and is completed,
// and under continuous appends the groups hold many records.
func TestCommitIntervalSpacesGroupWrites(t *testing.T) {
	const iv = 20 * time.Millisecond
	// Groups far larger than what gathers in an interval: none is sealed
	// by size (a sealed group goes at once).
	o := Options{Dir: t.TempDir(), GroupBytesMax: 64 << 10, BufferBytesMax: 256 << 10, SegmentBytesMax: 1 << 20, RecordBytesMax: 256}
	o.CommitInterval = iv
	var mu sync.Mutex
	var starts []time.Time
	var records []int
	o.OnSync = func(d time.Duration, n, _ int) {
		mu.Lock()
		starts = append(starts, time.Now().Add(-d))
		records = append(records, n)
		mu.Unlock()
	}
	j := mustOpen(t, o)
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				lsn, err := j.Append(make([]byte, 64), nil)
				if err == nil {
					err = j.Sync(lsn)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for i, n := range records {
		total += n
		if i > 0 {
			// OnSync's start is taken after the write began: allow the
			// clock reads' own distance, never a shorter interval.
			if gap := starts[i].Sub(starts[i-1]); gap < iv-time.Millisecond {
				t.Fatalf("group writes %d and %d started %v apart, interval %v", i-1, i, gap, iv)
			}
		}
	}
	if total != writers*each {
		t.Fatalf("%d records durable, want %d", total, writers*each)
	}
	// 8 writers each waiting for its record: every group after the first
	// has the writers' next records, so far fewer groups than records.
	if len(records) > writers*each/2 {
		t.Fatalf("%d groups for %d records: the interval did not gather records", len(records), total)
	}
}

// An idle journal does not hold a lone record for the interval: the
// interval spaces group writes, it is not a delay before each one.
func TestCommitIntervalDoesNotDelayIdleRecord(t *testing.T) {
	o := smallOpts(t.TempDir())
	o.CommitInterval = time.Hour
	j := mustOpen(t, o)
	defer j.Close()
	done := make(chan error, 1)
	go func() {
		lsn, err := j.Append([]byte("lone"), nil)
		if err == nil {
			err = j.Sync(lsn)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first record of an idle journal waited for the commit interval (1h)")
	}
}
