package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/gateway/internal/vfs"
)

// waitFill waits until no background fill runs.
func waitFill(t testing.TB, j *Journal) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		j.spareMu.Lock()
		busy := j.spareBusy
		j.spareMu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a spare fill ran for 10 s")
		}
	}
}

// waitSpare waits until the background fill has a spare ready.
func waitSpare(t testing.TB, j *Journal) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if j.spareReady() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no spare segment was filled in 10 s")
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// copyDir copies every file of src into a new directory: the disk as a
// crash at this instant would leave it (every group here was fsynced).
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// With Preallocate every rotation takes the zero-filled spare: the active
// segment has its full size, older segments end at their last record (Open
// refuses a segment that is not the last with anything after it), a crash
// leaves a zero tail that Open cuts, and Close cuts the active segment and
// keeps a filled spare.
func TestPreallocatedSegments(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.Preallocate = true
	j := mustOpen(t, o)
	for i := 0; i < 300; i++ {
		appendN(t, j, 1)
		if err := j.Sync(j.LastLSN()); err != nil {
			t.Fatal(err)
		}
		// A fill started by this group write (the segment reached half)
		// ends before the next record: every rotation finds a spare.
		waitFill(t, j)
	}
	segs := segmentFiles(t, dir)
	if len(segs) < 5 {
		t.Fatalf("only %d segments; rotation did not happen", len(segs))
	}
	for _, s := range segs[1:] {
		// Every segment after the first came from a spare; the older ones
		// were cut at rotation, so only the active one still has its zero tail.
		size := fileSize(t, filepath.Join(dir, s))
		if active := s == segs[len(segs)-1]; active != (size == o.SegmentBytesMax) {
			t.Fatalf("segment %s (active %v) is %d bytes", s, active, size)
		}
	}
	// The next spare is filled once the active segment is half full, not
	// right after the rotation (the committer is idle after the Sync: its
	// segSize can be read).
	if _, err := os.Stat(filepath.Join(dir, SpareName)); (err == nil) != (j.segSize >= o.SegmentBytesMax/2) {
		t.Fatalf("active segment at %d of %d bytes, spare: %v", j.segSize, o.SegmentBytesMax, err)
	}
	n := 0
	if last, err := j.ReadDurable(0, 0, func(uint64, []byte) error { n++; return nil }); err != nil || last != 300 || n != 300 {
		t.Fatalf("ReadDurable over preallocated segments: last %d, %d records, %v", last, n, err)
	}

	crashed := copyDir(t, dir)
	c := mustOpen(t, Options{Dir: crashed, SegmentBytesMax: o.SegmentBytesMax, GroupBytesMax: o.GroupBytesMax,
		BufferBytesMax: o.BufferBytesMax, RecordBytesMax: o.RecordBytesMax, Preallocate: true})
	if c.LastLSN() != 300 {
		t.Fatalf("after a crash: LastLSN %d, want 300", c.LastLSN())
	}
	checkRange(t, replayAll(t, c, 0), 1, 300)
	if size := fileSize(t, lastSegmentPath(t, crashed)); size >= o.SegmentBytesMax {
		t.Fatalf("after a crash the zero tail was not cut: %d bytes", size)
	}
	appendN(t, c, 40)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SpareName)); err == nil && fileSize(t, filepath.Join(dir, SpareName)) != o.SegmentBytesMax {
		t.Fatal("Close kept a spare that is not filled")
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	last := lastSegmentPath(t, dir)
	closed := fileSize(t, last)
	if closed >= o.SegmentBytesMax {
		t.Fatalf("Close did not cut the active segment: %d bytes", closed)
	}
	j = mustOpen(t, o)
	if fileSize(t, last) != closed {
		t.Fatal("Open repaired a cleanly closed journal")
	}
	checkRange(t, replayAll(t, j, 0), 1, 300)
	appendN(t, j, 50)
	j.Close()
	j = mustOpen(t, o)
	checkRange(t, replayAll(t, j, 0), 1, 350)
	j.Close()
}

// A spare that cannot be made costs nothing but its speed: the rotation
// creates its segment the plain way.
func TestPreallocateFallsBackWithoutSpare(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	efs.Inject(vfs.Rule{Op: vfs.OpCreate, Path: SpareName, Sticky: true})
	o := smallOpts(dir)
	o.FS, o.Preallocate = efs, true
	j := mustOpen(t, o)
	appendN(t, j, 300)
	if len(segmentFiles(t, dir)) < 5 {
		t.Fatal("rotation did not happen")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, smallOpts(dir))
	checkRange(t, replayAll(t, j, 0), 1, 300)
	j.Close()
}

// A growing segment is left for the spare as soon as one is ready, not
// when it is full: the first segment of a new journal and the last one at
// Open end at their records, and the writes after them go over zero-filled
// blocks. A segment with no record is never left (two segments would
// share a first LSN).
func TestGrowingSegmentLeftForSpare(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.SegmentBytesMax = 1 << 20 // far from full: only the spare rotates
	o.Preallocate = true
	j := mustOpen(t, o)
	waitSpare(t, j)
	syncOne := func(j *Journal) {
		t.Helper()
		appendN(t, j, 1)
		if err := j.Sync(j.LastLSN()); err != nil {
			t.Fatal(err)
		}
	}
	syncOne(j) // the first segment holds only its header: this record stays in it
	if segs := segmentFiles(t, dir); len(segs) != 1 {
		t.Fatalf("an empty segment was left: %v", segs)
	}
	waitSpare(t, j) // still the same spare
	syncOne(j)
	segs := segmentFiles(t, dir)
	if len(segs) != 2 {
		t.Fatalf("segments %v: the growing segment was not left for the ready spare", segs)
	}
	if got, want := fileSize(t, filepath.Join(dir, segs[0])), int64(segmentHeaderLen+recordHeaderLen+len(payload(1))); got != want {
		t.Fatalf("first segment is %d bytes, want %d (its one record)", got, want)
	}
	if fileSize(t, filepath.Join(dir, segs[1])) != o.SegmentBytesMax {
		t.Fatal("the second segment is not the preallocated spare")
	}
	syncOne(j) // into the preallocated segment: no rotation
	if len(segmentFiles(t, dir)) != 2 {
		t.Fatal("a preallocated segment was left before it was full")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// At Open the last segment is cut to its records and grows again.
	j = mustOpen(t, o)
	waitSpare(t, j)
	syncOne(j)
	segs = segmentFiles(t, dir)
	if len(segs) != 3 || fileSize(t, filepath.Join(dir, segs[2])) != o.SegmentBytesMax {
		t.Fatalf("after Open, segments %v: the last one was not left for the spare", segs)
	}
	var lsns []uint64
	if _, err := j.ReadDurable(0, 0, func(lsn uint64, p []byte) error {
		if !bytes.Equal(p, payload(lsn)) {
			return fmt.Errorf("lsn %d: payload differs", lsn)
		}
		lsns = append(lsns, lsn)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkRange(t, lsns, 1, 4)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, o)
	checkRange(t, replayAll(t, j, 0), 1, 4)
	j.Close()
}

// readCountFS counts the bytes read through ReadAt from files it opens
// read-only (ReadDurable's segment reads).
type readCountFS struct {
	vfs.FS
	n atomic.Int64
}

func (c *readCountFS) Open(name string) (vfs.File, error) {
	f, err := c.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return &readCountFile{File: f, n: &c.n}, nil
}

type readCountFile struct {
	vfs.File
	n *atomic.Int64
}

func (f *readCountFile) ReadAt(p []byte, off int64) (int, error) {
	k, err := f.File.ReadAt(p, off)
	f.n.Add(int64(k))
	return k, err
}

// ReadDurable on a preallocated segment reads its durable records, not its
// zero tail: the handoff reads the active segment many times a second, and
// each read of the tail cost up to a megabyte read and allocated.
func TestReadDurableStopsAtDurableEnd(t *testing.T) {
	dir := t.TempDir()
	cfs := &readCountFS{FS: vfs.Default}
	o := smallOpts(dir)
	o.FS, o.Preallocate = cfs, true
	o.SegmentBytesMax = 8 << 20
	j := mustOpen(t, o)
	defer j.Close()
	appendN(t, j, 1)
	if err := j.Sync(j.LastLSN()); err != nil {
		t.Fatal(err)
	}
	waitSpare(t, j)
	appendN(t, j, 1) // into the 8 MiB preallocated spare
	if err := j.Sync(j.LastLSN()); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	if len(segs) != 2 || fileSize(t, filepath.Join(dir, segs[1])) != o.SegmentBytesMax {
		t.Fatalf("segments %v: no preallocated active segment", segs)
	}
	var after uint64
	for round := 0; round < 5; round++ {
		appendN(t, j, 3)
		if err := j.Sync(j.LastLSN()); err != nil {
			t.Fatal(err)
		}
		cfs.n.Store(0)
		n := 0
		last, err := j.ReadDurable(after, 0, func(uint64, []byte) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		// At most the records themselves and the header, read again from
		// the start of the segment on the first round.
		if read := cfs.n.Load(); read > 4096 {
			t.Fatalf("round %d: read %d bytes for %d records", round, read, n)
		}
		after = last
	}
	if after != j.LastLSN() {
		t.Fatalf("read up to %d, last %d", after, j.LastLSN())
	}
}

// A restart does not fill another spare: Close keeps a filled one and Open
// takes it as ready, so the first group write after Open rotates into it.
// A spare of another size (a fill cut short, a changed SegmentBytesMax) is
// removed at Open. After a rotation into a spare the next fill waits until
// the new segment is half full.
func TestSpareKeptAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.SegmentBytesMax = 1 << 20
	o.Preallocate = true
	j := mustOpen(t, o)
	appendN(t, j, 1)
	if err := j.Sync(j.LastLSN()); err != nil {
		t.Fatal(err)
	}
	waitSpare(t, j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	spare := filepath.Join(dir, SpareName)
	if fileSize(t, spare) != o.SegmentBytesMax {
		t.Fatal("Close did not keep the filled spare")
	}

	j = mustOpen(t, o)
	if !j.spareReady() {
		t.Fatal("Open did not take the spare left by Close")
	}
	appendN(t, j, 1)
	if err := j.Sync(j.LastLSN()); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	if len(segs) != 2 || fileSize(t, filepath.Join(dir, segs[1])) != o.SegmentBytesMax {
		t.Fatalf("segments %v: the first write after Open did not rotate into the kept spare", segs)
	}
	// The new segment is far from half full: no fill runs and none is kept.
	waitFill(t, j)
	if _, err := os.Stat(spare); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a spare was filled right after the rotation: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, o)
	checkRange(t, replayAll(t, j, 0), 1, 2)
	j.Close()

	// A short spare is not taken.
	if err := os.WriteFile(spare, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, o)
	if j.spareReady() {
		t.Fatal("Open took a spare of the wrong size")
	}
	waitFill(t, j) // Open's own fill replaces it
	j.Close()
	if fileSize(t, spare) != o.SegmentBytesMax {
		t.Fatal("the short spare was not replaced by a filled one")
	}
}
