package journal

// Recovery. A crash can leave exactly one kind of damage that is not
// corruption: a torn tail at the end of the last segment, made of a group
// whose write+fsync had not returned (so none of its records was ever
// reported durable) or of a segment header whose rotation had not finished.
// Open cuts such a tail off. Anything else (a bad record followed by a valid
// one, damage in an older segment, a gap in the LSN sequence) means the disk
// or someone else broke data that was acknowledged, and Open refuses with a
// *CorruptionError rather than silently dropping approved payments.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"scenepay/gateway/internal/vfs"
)

// scanChunkBytes is how much of a segment the scanner reads at a time.
const scanChunkBytes = 1 << 20

// scanner reads a segment through a window buffer, so that Open and Replay
// hold one chunk (or one record, if larger) in memory, not a whole segment.
type scanner struct {
	f      vfs.File
	size   int64
	buf    []byte
	bufOff int64
	bufLen int
	next   int64 // scanRecordsFrom: the offset after the record passed to fn
}

// span returns up to n bytes of the file from off; fewer only at the end of
// the file. The slice is valid until the next call.
func (s *scanner) span(off int64, n int) ([]byte, error) {
	if off >= s.bufOff && off+int64(n) <= s.bufOff+int64(s.bufLen) {
		i := int(off - s.bufOff)
		return s.buf[i : i+n], nil
	}
	want := int64(max(n, scanChunkBytes))
	if rem := s.size - off; want > rem {
		want = max(rem, 0)
	}
	if int64(cap(s.buf)) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	k, err := s.f.ReadAt(s.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	s.bufOff, s.bufLen = off, k
	return s.buf[:min(n, k)], nil
}

// badRecord describes the first record that failed to decode.
type badRecord struct {
	off    int64
	lsn    uint64
	reason string
}

// scanRecords walks the records of a segment from just after its header,
// expecting LSNs first, first+1, ... It calls fn (if not nil) for each good
// record. It stops at the first bad record and reports it; last is the LSN of
// the last good record (first-1 when none) and end the offset after it.
func (s *scanner) scanRecords(first uint64, fn func(lsn uint64, payload []byte) error) (last uint64, end int64, bad *badRecord, err error) {
	return s.scanRecordsFrom(segmentHeaderLen, first, fn)
}

// scanRecordsFrom is scanRecords from offset off, where record first
// starts. s.next is the offset after the record passed to fn.
func (s *scanner) scanRecordsFrom(off int64, first uint64, fn func(lsn uint64, payload []byte) error) (last uint64, end int64, bad *badRecord, err error) {
	want := first
	for off < s.size {
		h, err := s.span(off, recordHeaderLen)
		if err != nil {
			return want - 1, off, nil, err
		}
		n := 0
		if len(h) == recordHeaderLen {
			n = int(min(leU32(h[0:4]), RecordFormatMax+1))
		}
		rec, err := s.span(off, recordHeaderLen+n)
		if err != nil {
			return want - 1, off, nil, err
		}
		lsn, payload, size, reason := decodeRecord(rec)
		if reason == "" && lsn != want {
			reason = fmt.Sprintf("record has lsn %d", lsn)
		}
		if reason != "" {
			return want - 1, off, &badRecord{off: off, lsn: want, reason: reason}, nil
		}
		if fn != nil {
			s.next = off + int64(size)
			if err := fn(lsn, payload); err != nil {
				return lsn, off, nil, err
			}
		}
		off += int64(size)
		want++
	}
	return want - 1, off, nil, nil
}

// validRecordAfter reports the offset of a checksummed record with an LSN of
// at least minLSN that starts after off, if there is one. A cheap LSN range
// test skips almost every offset before any checksum is computed, and a run
// of zero bytes is passed over in one step: a record's LSN field (bytes 8
// to 15 of its header) is never zero, since LSNs start at 1, so no record
// starts where that field would lie inside the run. The zero tail of a
// preallocated segment (up to a whole segment after a crash) is thus
// checked at memory speed instead of one offset at a time.
func (s *scanner) validRecordAfter(off int64, minLSN uint64) (int64, bool, error) {
	for p := off + 1; p+recordHeaderLen <= s.size; p++ {
		h, err := s.span(p, recordHeaderLen)
		if err != nil {
			return 0, false, err
		}
		lsn := leU64(h[8:16])
		if lsn == 0 {
			// Bytes p+8 .. q-1 are zero: the first start whose LSN field
			// reaches byte q is q-8-7 (> p, as q >= p+16).
			q, err := s.nextNonZero(p + 16)
			if err != nil {
				return 0, false, err
			}
			p = q - 15 - 1 // the loop's p++ makes it q-15
			continue
		}
		if lsn < minLSN || lsn-minLSN > uint64(s.size-p)/recordHeaderLen {
			continue
		}
		n := int64(leU32(h[0:4]))
		if n > RecordFormatMax || p+recordHeaderLen+n > s.size {
			continue
		}
		rec, err := s.span(p, recordHeaderLen+int(n))
		if err != nil {
			return 0, false, err
		}
		if _, _, _, reason := decodeRecord(rec); reason == "" {
			return p, true, nil
		}
	}
	return 0, false, nil
}

// zeroBlock is compared against to pass over zero bytes a block at a time.
var zeroBlock [4096]byte

// nextNonZero returns the offset of the first nonzero byte at or after off,
// or the file size when there is none.
func (s *scanner) nextNonZero(off int64) (int64, error) {
	for off < s.size {
		b, err := s.span(off, int(min(scanChunkBytes, s.size-off)))
		if err != nil {
			return 0, err
		}
		if len(b) == 0 {
			break
		}
		i := 0
		for i+len(zeroBlock) <= len(b) && bytes.Equal(b[i:i+len(zeroBlock)], zeroBlock[:]) {
			i += len(zeroBlock)
		}
		for ; i < len(b); i++ {
			if b[i] != 0 {
				return off + int64(i), nil
			}
		}
		off += int64(len(b))
	}
	return s.size, nil
}

func leU32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func leU64(b []byte) uint64 { return uint64(leU32(b[0:4])) | uint64(leU32(b[4:8]))<<32 }

// listSegments returns the segments in dir, oldest first.
func listSegments(fs vfs.FS, dir string) ([]segment, error) {
	names, err := fs.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, name := range names {
		if first, ok := parseSegmentName(name); ok {
			segs = append(segs, segment{first: first, name: name})
		}
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].first < segs[b].first })
	return segs, nil
}

// Open opens the journal in o.Dir, creating it if empty. It validates every
// record of every segment, truncates a torn tail of the last segment, and
// returns a *CorruptionError for any other damage. The returned journal is
// ready for Replay and then Append.
func Open(o Options) (*Journal, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	fs, dir := o.FS, o.Dir
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, &IOError{Op: "mkdir", Path: dir, Err: err}
	}
	segs, err := listSegments(fs, dir)
	if err != nil {
		return nil, &IOError{Op: "readdir", Path: dir, Err: err}
	}
	j := &Journal{opts: o, kick: make(chan struct{}, 1), done: make(chan struct{})}
	j.spaceCond.L = &j.mu
	j.durCond.L = &j.mu

	if len(segs) == 0 {
		name := segmentName(1)
		f, err := createSegment(fs, dir, name, 1)
		if err != nil {
			return nil, &IOError{Op: "create", Path: filepath.Join(dir, name), Err: err}
		}
		j.segments = []segment{{first: 1, name: name}}
		j.active, j.segSize, j.nextLSN = f, segmentHeaderLen, 1
		j.segName = name
	} else {
		last := segs[0].first - 1
		for i, sg := range segs {
			isLast := i == len(segs)-1
			if sg.first != last+1 {
				return nil, &CorruptionError{Segment: sg.name, LSN: last + 1,
					Reason: fmt.Sprintf("segment starts at lsn %d; a segment is missing or empty", sg.first)}
			}
			f, size, l, err := checkSegment(fs, dir, sg, isLast)
			if err != nil {
				return nil, err
			}
			last = l
			if isLast {
				j.active, j.segSize, j.segName = f, size, sg.name
			} else {
				f.Close()
			}
		}
		if _, err := j.active.Seek(j.segSize, io.SeekStart); err != nil {
			j.active.Close()
			return nil, &IOError{Op: "seek", Path: j.active.Name(), Err: err}
		}
		j.segments, j.nextLSN = segs, last+1
	}
	j.activeGrows = true // a new segment, or the last one cut to its records
	j.durEnd = segmentEnd{name: j.segName, off: j.segSize}
	if o.Preallocate {
		if j.spare, err = adoptSpare(&o); err != nil {
			j.active.Close()
			return nil, err
		}
	}
	j.durable.Store(j.nextLSN - 1)
	j.cur = j.newBatchLocked()
	go j.commitLoop()
	j.prepareSpare()
	return j, nil
}

// checkSegment validates one segment. For the last segment it repairs a torn
// tail (and a torn header) and returns the file open for writing with its
// valid size; other segments are returned open read-only. last is the LSN of
// the segment's last record.
func checkSegment(fs vfs.FS, dir string, sg segment, isLast bool) (f vfs.File, size int64, last uint64, err error) {
	path := filepath.Join(dir, sg.name)
	if isLast {
		f, err = fs.OpenFile(path, os.O_RDWR, 0)
	} else {
		f, err = fs.Open(path)
	}
	if err != nil {
		return nil, 0, 0, &IOError{Op: "open", Path: path, Err: err}
	}
	fail := func(e error) (vfs.File, int64, uint64, error) {
		f.Close()
		return nil, 0, 0, e
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(&IOError{Op: "stat", Path: path, Err: err})
	}
	s := &scanner{f: f, size: fi.Size()}
	h, err := s.span(0, segmentHeaderLen)
	if err != nil {
		return fail(&IOError{Op: "read", Path: path, Err: err})
	}
	if reason := checkSegmentHeader(h, sg.first); reason != "" {
		// A crash during rotation can leave the newest segment with a
		// partial header and nothing after it: rewrite the header.
		if !isLast || s.size > segmentHeaderLen {
			return fail(&CorruptionError{Segment: sg.name, Offset: 0, LSN: sg.first, Reason: reason})
		}
		if err := rewriteHeader(f, sg.first); err != nil {
			return fail(&IOError{Op: "repair header", Path: path, Err: err})
		}
		return f, segmentHeaderLen, sg.first - 1, nil
	}
	last, end, bad, err := s.scanRecords(sg.first, nil)
	if err != nil {
		return fail(&IOError{Op: "read", Path: path, Err: err})
	}
	if bad == nil {
		return f, end, last, nil
	}
	cerr := &CorruptionError{Segment: sg.name, Offset: bad.off, LSN: bad.lsn, Reason: bad.reason}
	if !isLast {
		return fail(cerr)
	}
	at, found, err := s.validRecordAfter(bad.off, bad.lsn)
	if err != nil {
		return fail(&IOError{Op: "read", Path: path, Err: err})
	}
	if found {
		cerr.Reason += fmt.Sprintf("; a valid record follows at offset %d", at)
		return fail(cerr)
	}
	// Torn tail: never acknowledged, safe to cut.
	if err := f.Truncate(end); err != nil {
		return fail(&IOError{Op: "truncate", Path: path, Err: err})
	}
	if err := f.Sync(); err != nil {
		return fail(&IOError{Op: "fsync", Path: path, Err: err})
	}
	return f, end, last, nil
}

func rewriteHeader(f vfs.File, first uint64) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := f.Write(appendSegmentHeader(nil, first)); err != nil {
		return err
	}
	return f.Sync()
}

// Replay calls fn for every record with an LSN above afterLSN, in order.
// payload is valid only during the call. It re-verifies each checksum and
// returns a *CorruptionError if anything changed since Open, ErrLSNRange if
// the journal no longer holds afterLSN+1 (its segments were truncated past
// it) or does not reach afterLSN, and fn's error as is. It must be called
// before the first Append.
func (j *Journal) Replay(afterLSN uint64, fn func(lsn uint64, payload []byte) error) error {
	j.mu.Lock()
	appended, last := j.appended, j.nextLSN-1
	j.mu.Unlock()
	if appended {
		return ErrReplayAfterAppend
	}
	j.segMu.Lock()
	segs := append([]segment(nil), j.segments...)
	j.segMu.Unlock()
	if afterLSN > last {
		return fmt.Errorf("%w: replay after lsn %d, but the journal ends at %d", ErrLSNRange, afterLSN, last)
	}
	if afterLSN+1 < segs[0].first {
		return fmt.Errorf("%w: replay after lsn %d, but the journal starts at %d", ErrLSNRange, afterLSN, segs[0].first)
	}
	for i, sg := range segs {
		if i+1 < len(segs) && segs[i+1].first <= afterLSN+1 {
			continue // every record of sg is at or below afterLSN
		}
		if err := j.replaySegment(sg, afterLSN, fn); err != nil {
			return err
		}
	}
	return nil
}

func (j *Journal) replaySegment(sg segment, afterLSN uint64, fn func(uint64, []byte) error) error {
	path := filepath.Join(j.opts.Dir, sg.name)
	f, err := j.opts.FS.Open(path)
	if err != nil {
		return &IOError{Op: "open", Path: path, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return &IOError{Op: "stat", Path: path, Err: err}
	}
	s := &scanner{f: f, size: fi.Size()}
	h, err := s.span(0, segmentHeaderLen)
	if err != nil {
		return &IOError{Op: "read", Path: path, Err: err}
	}
	if reason := checkSegmentHeader(h, sg.first); reason != "" {
		return &CorruptionError{Segment: sg.name, LSN: sg.first, Reason: reason}
	}
	_, _, bad, err := s.scanRecords(sg.first, func(lsn uint64, p []byte) error {
		if lsn <= afterLSN {
			return nil
		}
		return fn(lsn, p)
	})
	if err != nil {
		return err
	}
	if bad != nil {
		return &CorruptionError{Segment: sg.name, Offset: bad.off, LSN: bad.lsn, Reason: bad.reason + " (found by Replay after Open)"}
	}
	return nil
}

// TruncateBefore removes, oldest first, every whole segment all of whose
// records have LSNs below lsn; the active segment always stays. Call it after
// a snapshot covering lsn-1 is durable (WriteSnapshot returned nil).
func (j *Journal) TruncateBefore(lsn uint64) error {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	return j.truncateLocked(lsn)
}

// truncateLocked is TruncateBefore with segMu held.
func (j *Journal) truncateLocked(lsn uint64) error {
	removed := 0
	for len(j.segments) > 1 && j.segments[1].first <= lsn {
		path := filepath.Join(j.opts.Dir, j.segments[0].name)
		if err := j.opts.FS.Remove(path); err != nil {
			return &IOError{Op: "remove", Path: path, Err: err}
		}
		j.segments = j.segments[1:]
		removed++
	}
	if removed > 0 {
		if err := j.opts.FS.SyncDir(j.opts.Dir); err != nil {
			return &IOError{Op: "fsync dir", Path: j.opts.Dir, Err: err}
		}
	}
	return nil
}
