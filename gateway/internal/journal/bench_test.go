package journal

import (
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chanCompletion hands durability back to the waiting appender.
type chanCompletion chan error

func (c chanCompletion) Durable(_ uint64, err error) { c <- err }

func benchJournal(b *testing.B) (*Journal, *atomic.Int64) {
	var syncs atomic.Int64
	j, err := Open(Options{Dir: b.TempDir(), OnSync: func(time.Duration, int, int) { syncs.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	return j, &syncs
}

func report(b *testing.B, start time.Time, syncs int64) {
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "records/s")
	if syncs > 0 {
		b.ReportMetric(float64(b.N)/float64(syncs), "records/fsync")
	}
}

// BenchmarkJournalAppend: many appenders, each appending a 200-byte record
// and waiting for it to be durable, on the real disk. records/fsync shows
// how much group commit shares each fsync.
func BenchmarkJournalAppend(b *testing.B) {
	for _, par := range []int{1, 8, 64} { // goroutines per GOMAXPROCS
		b.Run("appenders="+strconv.Itoa(par)+"xGOMAXPROCS", func(b *testing.B) {
			j, syncs := benchJournal(b)
			defer j.Close()
			b.ReportAllocs()
			b.SetBytes(200)
			b.SetParallelism(par)
			b.ResetTimer()
			syncs.Store(0)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				p := make([]byte, 200)
				done := make(chanCompletion, 1)
				for pb.Next() {
					if _, err := j.Append(p, done); err != nil {
						b.Error(err)
						return
					}
					if err := <-done; err != nil {
						b.Error(err)
						return
					}
				}
			})
			report(b, start, syncs.Load())
		})
	}
}

// BenchmarkJournalAppendSerial is the baseline: one record per fsync, as a
// journal without group commit would do.
func BenchmarkJournalAppendSerial(b *testing.B) {
	j, syncs := benchJournal(b)
	defer j.Close()
	b.ReportAllocs()
	b.SetBytes(200)
	p := make([]byte, 200)
	b.ResetTimer()
	syncs.Store(0)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		lsn, err := j.Append(p, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := j.Sync(lsn); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, syncs.Load())
}

// BenchmarkAppendNoWait measures the Append call alone (encode and enqueue),
// the cost on the gateway's request path.
func BenchmarkAppendNoWait(b *testing.B) {
	j, _ := benchJournal(b)
	defer j.Close()
	b.ReportAllocs()
	b.SetBytes(200)
	p := make([]byte, 200)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := j.Append(p, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFsyncGrowVsPreallocated: one 200-byte record per fsync (the
// serial baseline) into a segment that grows with each write, and into a
// segment made from a zero-filled spare (Options.Preallocate). cpu-us/fsync
// is the process's CPU time (user and system) per group write.
func BenchmarkFsyncGrowVsPreallocated(b *testing.B) {
	for _, pre := range []bool{false, true} {
		b.Run("preallocated="+strconv.FormatBool(pre), func(b *testing.B) {
			var syncs atomic.Int64
			j, err := Open(Options{Dir: b.TempDir(), SegmentBytesMax: 8 << 20, Preallocate: pre,
				OnSync: func(time.Duration, int, int) { syncs.Add(1) }})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			// Fill the first segment (which grows in both cases) so that
			// the measured records go into the second.
			big := make([]byte, 60<<10)
			for j.segmentCount() < 2 {
				if pre {
					waitSpare(b, j)
				}
				lsn, err := j.Append(big, nil)
				if err == nil {
					err = j.Sync(lsn)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			p := make([]byte, 200)
			b.SetBytes(200)
			syncs.Store(0)
			cpu0 := processCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				lsn, err := j.Append(p, nil)
				if err == nil {
					err = j.Sync(lsn)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if n := syncs.Load(); n > 0 {
				b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Microsecond)/float64(n), "cpu-us/fsync")
			}
		})
	}
}

func (j *Journal) segmentCount() int {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	return len(j.segments)
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
