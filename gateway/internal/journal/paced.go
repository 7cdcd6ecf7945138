package journal

import (
	"errors"
	"time"

	"scenepay/gateway/internal/vfs"
)

// Large background writes (a snapshot of tens of megabytes, a spare
// segment) go to the disk in small flushes. Left to one fsync at the end,
// the whole file would be flushed at once, and on ext4 (data=ordered) a
// group fsync of the journal issued meanwhile waits behind that flush:
// every request in the group would wait for tens of megabytes of disk
// writes.
const (
	pacedChunkBytes = 1 << 20              // bytes written between two fsyncs
	pacedPause      = 2 * time.Millisecond // after each fsync: room for the committer's
)

// errPacedStopped is returned by a pacedWriter whose stop said so.
var errPacedStopped = errors.New("journal: background write stopped")

// pacedWriter writes to f, fsyncing it after every pacedChunkBytes and
// pausing pacedPause after each of those fsyncs. stop, if set, is asked
// after each chunk and ends the write with errPacedStopped. The caller
// still fsyncs at the end for the last partial chunk.
type pacedWriter struct {
	f    vfs.File
	n    int // bytes since the last fsync
	stop func() bool
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		k := min(len(p), pacedChunkBytes-w.n)
		m, err := w.f.Write(p[:k])
		done += m
		w.n += m
		if err != nil {
			return done, err
		}
		p = p[k:]
		if w.n == pacedChunkBytes {
			if err := w.f.Sync(); err != nil {
				return done, err
			}
			w.n = 0
			if w.stop != nil && w.stop() {
				return done, errPacedStopped
			}
			time.Sleep(pacedPause)
		}
	}
	return done, nil
}
