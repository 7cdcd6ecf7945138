package journal

// Concurrent reading. The settlement handoff reads records while the
// committer appends, rotates and (after snapshots) truncates. ReadDurable is
// safe against all three because it reads only what DurableLSN already
// covers: those bytes were written and fsynced before DurableLSN moved, so
// a read-only handle on the segment sees them whole, and nothing after them
// (a group being written) is ever decoded as data. It takes the segment
// list under segMu and holds no lock while reading, so it never delays the
// committer.

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// segmentEnd is an offset in a named segment.
type segmentEnd struct {
	name string
	off  int64
}

// readPos is a record's place in a segment: record lsn of segment seg
// ends at offset off.
type readPos struct {
	seg string
	lsn uint64
	off int64
}

// errStopRead ends a segment scan early without being an error.
var errStopRead = errors.New("journal: stop read")

// ReadDurable calls fn for the durable records with LSNs after afterLSN, in
// order, at most max of them (max <= 0 means no limit), and returns the LSN
// of the last record passed to fn (afterLSN when none). payload is valid
// only during the call. It may run concurrently with Append; it never reads
// a record above DurableLSN. It returns ErrLSNRange when the journal no
// longer holds afterLSN+1 (TruncateBefore removed it: the reader fell
// behind retention) or when afterLSN is beyond the durable end, a
// *CorruptionError for a record that no longer verifies, and fn's error as
// is (with last the LSN before the failing record).
func (j *Journal) ReadDurable(afterLSN uint64, max int, fn func(lsn uint64, payload []byte) error) (last uint64, err error) {
	durable := j.durable.Load()
	if afterLSN > durable {
		return afterLSN, fmt.Errorf("%w: read after lsn %d, but the journal is durable only to %d", ErrLSNRange, afterLSN, durable)
	}
	if afterLSN == durable {
		return afterLSN, nil
	}
	end := durable
	if max > 0 && uint64(max) < end-afterLSN {
		end = afterLSN + uint64(max)
	}
	j.segMu.Lock()
	segs := append([]segment(nil), j.segments...)
	j.segMu.Unlock()
	if afterLSN+1 < segs[0].first {
		return afterLSN, fmt.Errorf("%w: read after lsn %d, but the journal starts at %d (segments removed by TruncateBefore)", ErrLSNRange, afterLSN, segs[0].first)
	}
	last = afterLSN
	for i, sg := range segs {
		if i+1 < len(segs) && segs[i+1].first <= afterLSN+1 {
			continue // every record of sg is at or below afterLSN
		}
		if sg.first > end {
			break
		}
		if err := j.readSegment(sg, afterLSN, end, fn, &last); err != nil {
			return last, err
		}
		if last >= end {
			break
		}
	}
	if last < end {
		return last, &CorruptionError{Segment: segs[len(segs)-1].name, LSN: last + 1,
			Reason: fmt.Sprintf("durable lsn %d not found by ReadDurable", end)}
	}
	return last, nil
}

// readSegment reads records (afterLSN, end] of sg into fn, advancing *last.
func (j *Journal) readSegment(sg segment, afterLSN, end uint64, fn func(uint64, []byte) error, last *uint64) error {
	path := filepath.Join(j.opts.Dir, sg.name)
	f, err := j.opts.FS.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: segment %s was removed by TruncateBefore while lsn %d still had to be read", ErrLSNRange, sg.name, *last+1)
		}
		return &IOError{Op: "open", Path: path, Err: err}
	}
	defer f.Close()
	// Stat after DurableLSN was read: the file holds at least every record
	// up to it.
	fi, err := f.Stat()
	if err != nil {
		return &IOError{Op: "stat", Path: path, Err: err}
	}
	s := &scanner{f: f, size: fi.Size()}
	// In the active segment, read no further than its durable records:
	// a preallocated segment's file size is SegmentBytesMax, and reading
	// (and allocating) its zero tail on every handoff read cost a
	// megabyte per call. durEnd, read after DurableLSN, is at or past the
	// end of every record ReadDurable must return.
	j.mu.Lock()
	de := j.durEnd
	j.mu.Unlock()
	if de.name == sg.name && de.off < s.size {
		s.size = de.off
	}
	// Resume where the last read of this segment stopped, if that is at or
	// before afterLSN: the header and the records before it were verified
	// then, and a segment's durable bytes never change. Without it every
	// read would decode and checksum the segment from its start, a cost
	// growing with the segment (up to SegmentBytesMax per handoff read).
	from, want := int64(segmentHeaderLen), sg.first
	j.readMu.Lock()
	if at := j.readAt; at.seg == sg.name && at.lsn <= afterLSN && at.lsn >= sg.first {
		from, want = at.off, at.lsn+1
	}
	j.readMu.Unlock()
	if from == segmentHeaderLen {
		h, err := s.span(0, segmentHeaderLen)
		if err != nil {
			return &IOError{Op: "read", Path: path, Err: err}
		}
		if reason := checkSegmentHeader(h, sg.first); reason != "" {
			return &CorruptionError{Segment: sg.name, LSN: sg.first, Reason: reason}
		}
	}
	var stop readPos
	_, _, bad, err := s.scanRecordsFrom(from, want, func(lsn uint64, p []byte) error {
		if lsn > end {
			return errStopRead
		}
		if lsn <= afterLSN {
			return nil
		}
		if err := fn(lsn, p); err != nil {
			return err
		}
		*last = lsn
		stop = readPos{seg: sg.name, lsn: lsn, off: s.next}
		if lsn == end {
			return errStopRead
		}
		return nil
	})
	if stop.seg != "" {
		j.readMu.Lock()
		j.readAt = stop
		j.readMu.Unlock()
	}
	if errors.Is(err, errStopRead) {
		return nil
	}
	if err != nil {
		return err
	}
	// A bad record past end is a group still being written: not ours.
	if bad != nil && bad.lsn <= end {
		return &CorruptionError{Segment: sg.name, Offset: bad.off, LSN: bad.lsn, Reason: bad.reason + " (found by ReadDurable)"}
	}
	return nil
}
