package journal

import (
	"strconv"
	"sync/atomic"
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
