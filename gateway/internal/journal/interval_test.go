package journal

import (
	"sync"
	"testing"
	"time"
)

// With a commit interval and records arriving continuously, a group that
// gathered records never starts closer than the interval to the previous
// write, every record still becomes durable, and the groups hold many
// records.
func TestCommitIntervalSpacesGroupWrites(t *testing.T) {
	const iv = 20 * time.Millisecond
	// Groups far larger than what gathers in an interval: none is sealed
	// by size (a sealed group goes at once).
	o := Options{Dir: t.TempDir(), GroupBytesMax: 1 << 20, BufferBytesMax: 4 << 20, SegmentBytesMax: 16 << 20, RecordBytesMax: 256}
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
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := j.Append(make([]byte, 64), nil); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(200 * time.Microsecond) // a stream over several intervals

			}
		}()
	}
	wg.Wait()
	if err := j.Sync(j.LastLSN()); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	total, paced := 0, 0
	for i, n := range records {
		total += n
		if i == 0 {
			continue
		}
		// A group that starts within the interval of the previous one
		// went alone: one record when the committer looked (one more may
		// have come before it took the group). Every gathering group
		// waited the interval out. OnSync's start is taken after the
		// write began: allow the clock reads' own distance.
		gap := starts[i].Sub(starts[i-1])
		switch {
		case gap < iv-time.Millisecond && n > 2:
			t.Fatalf("group write %d of %d records started %v after the previous one, interval %v", i, n, gap, iv)
		case gap >= iv-time.Millisecond && n > 2:
			paced++
		}
	}
	if paced == 0 {
		t.Fatalf("no group gathered records over an interval: %v", records)
	}
	if total != writers*each {
		t.Fatalf("%d records durable, want %d", total, writers*each)
	}
	// Records added to a group that is waiting out the interval do not wake
	// the committer. A wait can still be woken by the kicks of Appends that
	// looked before it began, at most one per writer (no group here is
	// sealed); waking for each record would be about a hundred per wait.
	if j.paceWaits == 0 || j.paceWakes > writers*j.paceWaits {
		t.Fatalf("%d wakeups in %d interval waits: appends woke the waiting committer", j.paceWakes, j.paceWaits)
	}
	// Appends never wait for a write: far fewer groups than records, and
	// the stream lasted several intervals.
	if len(records) < 3 || len(records) > writers*each/10 {
		t.Fatalf("%d groups for %d records: the interval did not gather records", len(records), total)
	}
}

// A record alone in its group is not held for the interval: neither the
// first record of an idle journal nor one right after a group write (a
// lightly loaded gateway keeps its latency). The interval spaces only
// groups that gathered records (TestCommitIntervalSpacesGroupWrites).
func TestCommitIntervalPacesOnlyGatheringGroups(t *testing.T) {
	o := smallOpts(t.TempDir())
	o.CommitInterval = time.Hour
	j := mustOpen(t, o)
	defer j.Close()
	sync1 := func() error {
		lsn, err := j.Append([]byte("one"), nil)
		if err == nil {
			err = j.Sync(lsn)
		}
		return err
	}
	done := make(chan error, 1)
	go func() {
		for range 3 { // the first on an idle journal, then each right after the previous write
			if err := sync1(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a lone record waited for the commit interval (1h)")
	}
}
