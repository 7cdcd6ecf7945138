package journal

// The group-commit pipeline.
//
// A record goes through three stages:
//
//  1. Append (any goroutine). Under j.mu, a short critical section: assign
//     the next LSN, encode the record into the current batch buffer (j.cur),
//     note the Completion, count the bytes against BufferBytesMax. If the
//     batch would grow past GroupBytesMax it is sealed onto j.full and a new
//     batch becomes current. Then kick the committer and return the LSN. No
//     I/O, no waiting, except when BufferBytesMax bytes are already in the
//     pipeline: then Append blocks until a group finishes (back-pressure
//     instead of unbounded memory; the gateway answers "busy" upstream of it).
//
//  2. Commit (one goroutine, commitLoop). Take the oldest sealed batch, or
//     swap out the current one, so that appends continue into a fresh
//     buffer while this one is written. Rotate the segment if the group would
//     overflow it, write the group with one write call, fsync. While this
//     write+fsync runs, the records appended meanwhile gather in the next
//     buffer; they all share the next fsync. Under load the group size grows
//     by itself to fill the fsync latency; idle, a lone record is written at
//     once (no timer, no added latency).
//
//     With Options.CommitInterval set, the committer paces itself under
//     load: when records arrived during the last write (the current group
//     holds two or more) and that write started less than an interval ago,
//     it waits out the rest of the interval first, gathering the records
//     appended meanwhile. A lone record goes at once, and a sealed (full)
//     group never waits. This trades at most one interval of latency under
//     load for fewer fsyncs: on a virtual disk an fsync costs 50-100 µs of
//     CPU, and at thousands of requests per second the unpaced committer
//     fsyncs back to back with two or three records each.
//
//  3. Complete (the same goroutine). Publish DurableLSN, then call each
//     Completion of the group in LSN order, then release the buffer's bytes.
//
// Invariant: a Completion fires with err == nil only after the fsync that
// covers its record returned nil, and completions fire exactly once each, in
// LSN order, from the committer goroutine. The gateway publishes an approval
// from its Completion, so this invariant is promise 1 of the design.
//
// Failure is sticky. A failed write or fsync stores the error in j.failed;
// every record already accepted gets it in its Completion (in LSN order, as
// usual), and every later Append, Sync and Close returns it. There is no
// retry: after a failed fsync the kernel may have dropped the dirty pages,
// so a second fsync can succeed over lost data (PostgreSQL "fsyncgate").
// The process must restart and recover from what Open finds on disk.
//
// Rotation (inside stage 2, before writing a group): fsync the old segment,
// create the new one, write and fsync its header, fsync the directory, and
// only then write records into it, so that a crash never leaves a durable
// record in a segment whose directory entry is not.
//
// Designs rejected:
//   - fsync per Append in the caller's goroutine: hundreds of records per
//     second on a disk with millisecond fsync, the trap the design names.
//   - A timer-driven flush (collect for N ms, then fsync): adds latency when
//     idle and still caps throughput at one group per tick; the pipeline
//     above batches exactly as much as the previous fsync's latency allows.
//   - Letting appenders take turns as the syncing leader (pebble's
//     LogWriter with a flusher goroutine is close to ours; a leader/follower
//     scheme saves a goroutine hop but spreads I/O error handling and
//     completion ordering over every caller).
//   - One channel send per record to the committer: a send per record costs
//     more than the encode, and the channel's capacity would be a record
//     count, not the byte bound that matters for memory.
//   - Completions from the appender's goroutine (return a channel per
//     record): an allocation per record, and callers could observe
//     durability out of LSN order.
//   - Retrying a failed fsync, or skipping the failed group and going on:
//     see "Failure is sticky".

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"scenepay/gateway/internal/vfs"
)

// Completion is told when a record is durable. Durable is called once per
// record accepted by Append, in LSN order, from the committer goroutine,
// after the fsync that covers the record (err == nil), or with the error that
// failed the journal. It must not block for long: it delays every later
// completion and the next group's fsync.
type Completion interface{ Durable(lsn uint64, err error) }

// Options configures a Journal. Zero values take the defaults.
type Options struct {
	FS  vfs.FS // default vfs.Default
	Dir string // segment directory, created if missing

	SegmentBytesMax int64 // rotate segments at this size (default 64 MiB)
	GroupBytesMax   int   // most bytes written per write+fsync group (default 4 MiB)
	BufferBytesMax  int   // bound on appended-but-not-yet-durable bytes; Append blocks past it (default 16 MiB)
	RecordBytesMax  int   // largest payload (default 64 KiB); larger is ErrTooLarge

	// OnSync, if set, is called by the committer after each successful
	// write+fsync with its duration, record count and byte count.
	OnSync func(d time.Duration, records int, bytes int)

	// CommitInterval is the least time between the starts of two
	// consecutive group writes of the current group (0: none); see stage 2
	// above.
	CommitInterval time.Duration

	// Preallocate zero-fills each next segment to SegmentBytesMax in the
	// background, so that group fsyncs flush data, not a growing file
	// (prealloc.go). The first segment of a new journal, and the last one
	// at Open, still grow.
	Preallocate bool
}

// Defaults of Options.
const (
	DefaultSegmentBytesMax = 64 << 20
	DefaultGroupBytesMax   = 4 << 20
	DefaultBufferBytesMax  = 16 << 20
	DefaultRecordBytesMax  = 64 << 10

	// batchPoolMax bounds the spare group buffers kept for reuse.
	batchPoolMax = 4
	// batchInitialBytes is the initial capacity of a group buffer.
	batchInitialBytes = 64 << 10
)

func (o *Options) fill() error {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Dir == "" {
		return fmt.Errorf("%w: Dir is empty", ErrOptions)
	}
	if o.SegmentBytesMax == 0 {
		o.SegmentBytesMax = DefaultSegmentBytesMax
	}
	if o.GroupBytesMax == 0 {
		o.GroupBytesMax = DefaultGroupBytesMax
	}
	if o.BufferBytesMax == 0 {
		o.BufferBytesMax = DefaultBufferBytesMax
	}
	if o.RecordBytesMax == 0 {
		o.RecordBytesMax = DefaultRecordBytesMax
	}
	switch {
	case o.RecordBytesMax < 0 || o.RecordBytesMax > RecordFormatMax:
		return fmt.Errorf("%w: RecordBytesMax %d not in 1..%d", ErrOptions, o.RecordBytesMax, RecordFormatMax)
	case o.GroupBytesMax < recordHeaderLen+o.RecordBytesMax:
		return fmt.Errorf("%w: GroupBytesMax %d cannot hold one record of RecordBytesMax %d", ErrOptions, o.GroupBytesMax, o.RecordBytesMax)
	case o.SegmentBytesMax < int64(segmentHeaderLen+o.GroupBytesMax):
		return fmt.Errorf("%w: SegmentBytesMax %d cannot hold one group of GroupBytesMax %d", ErrOptions, o.SegmentBytesMax, o.GroupBytesMax)
	case o.BufferBytesMax < o.GroupBytesMax:
		return fmt.Errorf("%w: BufferBytesMax %d below GroupBytesMax %d", ErrOptions, o.BufferBytesMax, o.GroupBytesMax)
	}
	return nil
}

type pending struct {
	lsn uint64
	c   Completion
}

// batch is one group: encoded records with contiguous LSNs first..last.
type batch struct {
	buf   []byte
	comps []pending
	first uint64
	last  uint64
	n     int
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	clear(b.comps) // drop references to completions
	b.comps = b.comps[:0]
	b.first, b.last, b.n = 0, 0, 0
}

type segment struct {
	first uint64
	name  string
}

// Journal is an open journal. Append, Sync, LastLSN, DurableLSN and
// TruncateBefore are safe for concurrent use; Replay must finish before the
// first Append.
type Journal struct {
	opts Options

	mu        sync.Mutex
	spaceCond sync.Cond // Append waits here for BufferBytesMax room
	durCond   sync.Cond // Sync waits here for DurableLSN
	cur       *batch
	full      []*batch // sealed batches, oldest first; bounded by BufferBytesMax/GroupBytesMax
	free      []*batch // at most batchPoolMax
	nextLSN   uint64
	buffered  int   // bytes appended and not yet durable
	failed    error // sticky; wraps ErrFailed
	closing   bool
	appended  bool
	// durEnd is where the durable records end: the active segment's name
	// and the offset after its last durable record, set with DurableLSN.
	// A read of that segment stops there instead of reading its
	// preallocated zero tail (reader.go).
	durEnd segmentEnd
	pacing bool // the committer waits out CommitInterval; only a sealed group or Close wakes it

	durable atomic.Uint64
	kick    chan struct{} // capacity 1: "there may be work"
	done    chan struct{} // closed when commitLoop returns

	// Owned by the committer after Open.
	active  vfs.File
	segSize int64
	segName string // the active segment's file name
	spareAt int64  // start the next spare's fill when segSize reaches this (0: not due)
	// activeGrows: the active segment was not preallocated (the first of a
	// new journal, the last one at Open, or created without a spare), so
	// each group write grows it. With Preallocate the committer leaves it
	// for the spare as soon as one is ready (writeGroup).
	activeGrows bool
	// Pace waits, and wakeups during them by a kick; read by tests after
	// Close.
	paceWaits, paceWakes int

	// The spare segment (prealloc.go).
	spareMu   sync.Mutex
	spare     vfs.File // zero-filled, ready for the next rotation
	spareBusy bool     // a fill is running
	spareStop bool     // Close: start no fill, drop the running one
	spareWG   sync.WaitGroup

	segMu    sync.Mutex
	segments []segment // oldest first; the last is active

	// readAt is where the last ReadDurable stopped (reader.go), so the next
	// read of the same segment resumes there instead of scanning the
	// segment from its start.
	readMu sync.Mutex
	readAt readPos
}

func (j *Journal) newBatchLocked() *batch {
	if n := len(j.free); n > 0 {
		b := j.free[n-1]
		j.free = j.free[:n-1]
		return b
	}
	return &batch{buf: make([]byte, 0, min(batchInitialBytes, j.opts.GroupBytesMax))}
}

// Append copies payload into the journal as the next record and returns its
// LSN at once; c (may be nil) is told when the record is durable. It blocks
// only while BufferBytesMax bytes are in the pipeline. When Append returns an
// error the record was not accepted and c is never called.
func (j *Journal) Append(payload []byte, c Completion) (uint64, error) {
	if len(payload) > j.opts.RecordBytesMax {
		return 0, fmt.Errorf("%w: %d bytes, max %d", ErrTooLarge, len(payload), j.opts.RecordBytesMax)
	}
	need := recordHeaderLen + len(payload)
	j.mu.Lock()
	for {
		if j.failed != nil {
			err := j.failed
			j.mu.Unlock()
			return 0, err
		}
		if j.closing {
			j.mu.Unlock()
			return 0, ErrClosed
		}
		if j.buffered == 0 || j.buffered+need <= j.opts.BufferBytesMax {
			break
		}
		j.spaceCond.Wait()
	}
	if j.nextLSN == math.MaxUint64 {
		j.mu.Unlock()
		return 0, fmt.Errorf("%w: LSN space exhausted", ErrLSNRange)
	}
	b := j.cur
	sealed := false
	if b.n > 0 && len(b.buf)+need > j.opts.GroupBytesMax {
		j.full = append(j.full, b)
		b = j.newBatchLocked()
		j.cur = b
		sealed = true
	}
	lsn := j.nextLSN
	j.nextLSN++
	b.buf = appendRecord(b.buf, lsn, payload)
	if b.n == 0 {
		b.first = lsn
	}
	b.last = lsn
	b.n++
	if c != nil {
		b.comps = append(b.comps, pending{lsn: lsn, c: c})
	}
	j.buffered += need
	j.appended = true
	// A pacing committer waits for the interval with this group already
	// gathering: one more record changes nothing for it, and waking it for
	// each would cost a goroutine switch per record under load.
	wake := !j.pacing || sealed
	j.mu.Unlock()
	if wake {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	return lsn, nil
}

// Sync waits until lsn is durable. It returns nil at once for lsn 0 or an
// LSN already durable, the journal's failure if it failed first, and
// ErrLSNRange for an LSN not yet assigned.
func (j *Journal) Sync(lsn uint64) error {
	if lsn == 0 || j.durable.Load() >= lsn {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if lsn >= j.nextLSN {
		return fmt.Errorf("%w: Sync(%d) beyond last LSN %d", ErrLSNRange, lsn, j.nextLSN-1)
	}
	for j.durable.Load() < lsn && j.failed == nil {
		j.durCond.Wait()
	}
	if j.durable.Load() >= lsn {
		return nil
	}
	return j.failed
}

// LastLSN is the LSN of the last record accepted by Append (or found by
// Open); 0 when the journal has never held a record.
func (j *Journal) LastLSN() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.nextLSN - 1
}

// DurableLSN is the LSN up to which every record is known durable.
func (j *Journal) DurableLSN() uint64 { return j.durable.Load() }

// Close flushes and fsyncs every accepted record, stops the committer and
// closes the active segment. It returns the journal's failure, if any.
func (j *Journal) Close() error {
	j.mu.Lock()
	already := j.closing
	j.closing = true
	j.spaceCond.Broadcast()
	j.mu.Unlock()
	if already {
		<-j.done
		return ErrClosed
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	<-j.done
	j.stopSpare()
	j.mu.Lock()
	failed := j.failed
	j.mu.Unlock()
	if failed == nil { // the committer has returned: no group write runs any more
		if err := j.cutTail(); err != nil {
			j.mu.Lock()
			j.failed = err
			j.mu.Unlock()
		}
	}
	cerr := j.active.Close()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed != nil {
		return j.failed
	}
	if cerr != nil {
		return &IOError{Op: "close", Path: j.active.Name(), Err: cerr}
	}
	return nil
}

// takeLocked returns the next group to commit, or nil when there is none.
func (j *Journal) takeLocked() *batch {
	if len(j.full) > 0 {
		b := j.full[0]
		j.full[0] = nil
		j.full = j.full[1:]
		return b
	}
	if j.cur.n == 0 {
		return nil
	}
	b := j.cur
	j.cur = j.newBatchLocked()
	return b
}

func (j *Journal) commitLoop() {
	defer close(j.done)
	var failed error // committer's copy of j.failed
	var lastStart time.Time
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	defer pace.Stop()
	for {
		if iv := j.opts.CommitInterval; iv > 0 && failed == nil {
			j.pace(lastStart.Add(iv), pace)
		}
		j.mu.Lock()
		b := j.takeLocked()
		closing := j.closing
		j.mu.Unlock()
		if b == nil {
			if closing {
				return
			}
			<-j.kick
			continue
		}
		if failed == nil {
			start := time.Now()
			lastStart = start
			if err := j.writeGroup(b); err != nil {
				failed = err
			} else if j.opts.OnSync != nil {
				j.opts.OnSync(time.Since(start), b.n, len(b.buf))
			}
		}
		j.mu.Lock()
		if failed == nil {
			j.durable.Store(b.last)
			j.durEnd = segmentEnd{name: j.segName, off: j.segSize}
		} else if j.failed == nil {
			j.failed = failed
		}
		j.buffered -= len(b.buf)
		j.durCond.Broadcast()
		j.spaceCond.Broadcast()
		j.mu.Unlock()

		for _, p := range b.comps {
			p.c.Durable(p.lsn, failed)
		}

		j.mu.Lock()
		if len(j.free) < batchPoolMax {
			b.reset()
			j.free = append(j.free, b)
		}
		j.mu.Unlock()
	}
}

// pace waits until next (CommitInterval after the last group write
// started) while the current group gathers records. It waits only when
// records are arriving faster than the committer writes them: when the
// current group already holds paceSiblings records (they came during the
// last write). A lone record goes at once, so a lightly loaded gateway
// keeps its latency (a wait below a millisecond would oversleep to about
// one on an idle Go process). It never waits with nothing to write, for a
// sealed (full) group, or while closing, and a sealed group or a Close
// during the wait ends it. While it waits, Appends that only add to the
// gathering group do not wake it (Journal.pacing).
func (j *Journal) pace(next time.Time, t *time.Timer) {
	waited := false // only the committer sets j.pacing
	defer func() {
		if waited {
			j.mu.Lock()
			j.pacing = false
			j.mu.Unlock()
		}
	}()
	for {
		d := time.Until(next)
		if d <= 0 {
			return
		}
		j.mu.Lock()
		wait := j.cur.n >= paceSiblings && len(j.full) == 0 && !j.closing
		j.pacing = wait
		j.mu.Unlock()
		if !wait {
			return
		}
		if !waited {
			j.paceWaits++
		}
		waited = true
		t.Reset(d)
		select {
		case <-t.C:
			return
		case <-j.kick: // a sealed group, Close, or a kick from before the wait: look again
			j.paceWakes++
			t.Stop()
		}
	}
}

// paceSiblings is how many records the current group must hold for the
// committer to wait out its CommitInterval (PostgreSQL's commit_siblings
// is the same idea).
const paceSiblings = 2

// writeGroup writes one group and fsyncs it, rotating first if needed. Any
// error it returns is sticky.
func (j *Journal) writeGroup(b *batch) error {
	used := j.segSize > segmentHeaderLen // a segment never ends empty
	if used && (j.segSize+int64(len(b.buf)) > j.opts.SegmentBytesMax || j.activeGrows && j.spareReady()) {
		if err := j.rotate(b.first); err != nil {
			return err
		}
	}
	n, err := j.active.Write(b.buf)
	j.segSize += int64(n)
	if err == nil && n != len(b.buf) {
		err = errors.New("short write")
	}
	if err != nil {
		return &IOError{Op: "write", Path: j.active.Name(), Err: err, sticky: true}
	}
	if err := j.active.Sync(); err != nil {
		return &IOError{Op: "fsync", Path: j.active.Name(), Err: err, sticky: true}
	}
	if j.spareAt > 0 && j.segSize >= j.spareAt {
		j.spareAt = 0
		j.prepareSpare()
	}
	return nil
}

// rotate closes the active segment and starts one whose first LSN is first.
func (j *Journal) rotate(first uint64) error {
	old := j.active
	if err := old.Sync(); err != nil {
		return &IOError{Op: "fsync", Path: old.Name(), Err: err, sticky: true}
	}
	if err := j.cutTail(); err != nil {
		return err
	}
	name := segmentName(first)
	var f vfs.File
	var err error
	sp := j.takeSpare()
	if sp != nil {
		f, err = j.segmentFromSpare(sp, name, first)
	} else {
		f, err = createSegment(j.opts.FS, j.opts.Dir, name, first)
	}
	if err != nil {
		return &IOError{Op: "rotate", Path: filepath.Join(j.opts.Dir, name), Err: err, sticky: true}
	}
	j.segMu.Lock()
	j.segments = append(j.segments, segment{first: first, name: name})
	j.segMu.Unlock()
	j.active = f
	j.segSize = segmentHeaderLen
	j.segName = name
	j.activeGrows = sp == nil
	if sp == nil {
		j.prepareSpare() // to leave this growing segment soon
	} else {
		j.spareAt = j.opts.SegmentBytesMax / 2
	}
	// Every byte of old is durable (fsynced above); a close error cannot
	// lose data any more, so it does not fail the journal.
	_ = old.Close()
	return nil
}

// createSegment creates a segment file with its header, fsyncs it and then
// the directory, so that the segment exists durably before any record
// goes into it.
func createSegment(fs vfs.FS, dir, name string, first uint64) (vfs.File, error) {
	f, err := fs.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(appendSegmentHeader(nil, first)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := fs.SyncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
