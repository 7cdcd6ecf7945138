package journal

import (
	"errors"
	"fmt"
)

// Errors returned by the journal. Callers map every one of them to the
// SYSTEM_ERROR reply (code 96): none is the terminal's fault, and none
// leaves a durable effect behind.
var (
	// ErrClosed: Append or Sync after Close.
	ErrClosed = errors.New("journal: closed")
	// ErrTooLarge: the payload exceeds Options.RecordBytesMax.
	ErrTooLarge = errors.New("journal: record too large")
	// ErrFailed is wrapped by every error that put the journal into its
	// failed state; errors.Is(err, ErrFailed) tells a dead journal (restart
	// the process) from a refused call.
	ErrFailed = errors.New("journal: failed")
	// ErrReplayAfterAppend: Replay was called after the first Append.
	ErrReplayAfterAppend = errors.New("journal: Replay after Append")
	// ErrLSNRange: an LSN outside what the journal holds (Sync of an LSN
	// never assigned, Replay from a point the journal cannot serve, or the
	// LSN space exhausted).
	ErrLSNRange = errors.New("journal: LSN out of range")
	// ErrOptions: invalid Options.
	ErrOptions = errors.New("journal: invalid options")
)

// CorruptionError reports damage that a crash cannot explain: a bad record
// followed by valid data, a bad record in a segment that is not the last, a
// gap between segments, a bad segment header. Open refuses to start on it;
// an operator must look at the file (docs/journal.md, "Recovery").
type CorruptionError struct {
	Segment string // file name, e.g. "00000000000000000001.log"
	Offset  int64  // byte offset of the bad record or header in Segment
	LSN     uint64 // the LSN expected at Offset
	Reason  string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("journal: corrupt segment %s at offset %d (expected lsn %d): %s",
		e.Segment, e.Offset, e.LSN, e.Reason)
}

// IOError is a failed filesystem operation. When it came from the commit
// path (write, fsync, rotation) it also wraps ErrFailed and the journal is
// dead: after a failed fsync the page cache may have dropped the dirty pages
// and marked them clean, so a retried fsync can return nil for data that
// never reached the disk (PostgreSQL's "fsyncgate", 2018). The only safe
// move is to stop, restart and recover from what is on disk.
type IOError struct {
	Op     string // "write", "fsync", "rotate", "open", ...
	Path   string
	Err    error
	sticky bool
}

func (e *IOError) Error() string {
	s := "journal: " + e.Op + " " + e.Path + ": " + e.Err.Error()
	if e.sticky {
		s += " (journal failed)"
	}
	return s
}

// Unwrap exposes the cause and, for commit-path errors, ErrFailed.
func (e *IOError) Unwrap() []error {
	if e.sticky {
		return []error{ErrFailed, e.Err}
	}
	return []error{e.Err}
}
