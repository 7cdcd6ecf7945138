package journal

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"scenepay/gateway/internal/vfs"
)

// TestReadDurableWhileAppending reads the journal in small steps while
// appenders write and segments rotate; every record is seen once, in
// order, with its payload, and never above DurableLSN.
func TestReadDurableWhileAppending(t *testing.T) {
	j := mustOpen(t, smallOpts(t.TempDir()))
	defer j.Close()
	const total = 3000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i++ {
			want := j.LastLSN() + 1
			if _, err := j.Append(payload(want), nil); err != nil {
				t.Errorf("Append: %v", err)
				return
			}
		}
	}()
	var after uint64
	for after < total {
		last, err := j.ReadDurable(after, 37, func(lsn uint64, p []byte) error {
			if lsn != after+1 {
				return fmt.Errorf("got lsn %d after %d", lsn, after)
			}
			if !bytes.Equal(p, payload(lsn)) {
				return fmt.Errorf("lsn %d: payload differs", lsn)
			}
			after = lsn
			return nil
		})
		if err != nil {
			t.Fatalf("ReadDurable: %v", err)
		}
		if last != after {
			t.Fatalf("last = %d, read up to %d", last, after)
		}
		if last > j.DurableLSN() {
			t.Fatalf("last %d beyond durable %d", last, j.DurableLSN())
		}
	}
	wg.Wait()
	if after != total {
		t.Fatalf("read up to %d, want %d", after, total)
	}
	if n := len(segmentFiles(t, j.opts.Dir)); n < 3 {
		t.Fatalf("only %d segments: the test did not cross rotations", n)
	}
}

func TestReadDurableMaxAndEnd(t *testing.T) {
	j := mustOpen(t, smallOpts(t.TempDir()))
	defer j.Close()
	appendN(t, j, 100)
	var got []uint64
	last, err := j.ReadDurable(10, 5, func(lsn uint64, _ []byte) error { got = append(got, lsn); return nil })
	if err != nil || last != 15 || len(got) != 5 || got[0] != 11 {
		t.Fatalf("ReadDurable(10, 5) = %d, %v, %v", last, err, got)
	}
	last, err = j.ReadDurable(100, 0, func(uint64, []byte) error { t.Fatal("called at the end"); return nil })
	if err != nil || last != 100 {
		t.Fatalf("ReadDurable at the end = %d, %v", last, err)
	}
	if _, err := j.ReadDurable(101, 0, nil); !errors.Is(err, ErrLSNRange) {
		t.Fatalf("ReadDurable past the end: %v, want ErrLSNRange", err)
	}
	stop := errors.New("stop")
	last, err = j.ReadDurable(0, 0, func(lsn uint64, _ []byte) error {
		if lsn == 7 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || last != 6 {
		t.Fatalf("fn error: last %d, %v; want 6, stop", last, err)
	}
}

// TestReadDurableAfterTruncate: a reader behind retention is told so.
func TestReadDurableAfterTruncate(t *testing.T) {
	j := mustOpen(t, smallOpts(t.TempDir()))
	defer j.Close()
	appendN(t, j, 200)
	if err := j.TruncateBefore(150); err != nil {
		t.Fatal(err)
	}
	_, err := j.ReadDurable(0, 0, func(uint64, []byte) error { return nil })
	if !errors.Is(err, ErrLSNRange) {
		t.Fatalf("read below the truncation: %v, want ErrLSNRange", err)
	}
	var n int
	last, err := j.ReadDurable(149, 0, func(uint64, []byte) error { n++; return nil })
	if err != nil || last != 200 || n != 51 {
		t.Fatalf("read after the truncation point = %d, %v, %d records", last, err, n)
	}
}

// offsetFS records the offsets of every ReadAt on the files it opens.
type offsetFS struct {
	vfs.FS
	mu   sync.Mutex
	offs []int64
}

func (f *offsetFS) Open(name string) (vfs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return &offsetFile{File: file, fs: f}, nil
}

func (f *offsetFS) take() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.offs
	f.offs = nil
	return o
}

type offsetFile struct {
	vfs.File
	fs *offsetFS
}

func (f *offsetFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	f.fs.offs = append(f.fs.offs, off)
	f.fs.mu.Unlock()
	return f.File.ReadAt(p, off)
}

// TestReadDurableResumes: a read that continues where the last one stopped
// resumes at that record's offset instead of scanning its segment again
// from the start (the handoff reads a 64 MiB segment a batch at a time);
// a read from further back still scans from the start and gets every
// record.
func TestReadDurableResumes(t *testing.T) {
	ofs := &offsetFS{FS: vfs.Default}
	j := mustOpen(t, Options{Dir: t.TempDir(), FS: ofs})
	defer j.Close()
	appendN(t, j, 500)
	if err := j.Sync(j.LastLSN()); err != nil {
		t.Fatal(err)
	}
	var after uint64
	prev := int64(-1)
	for step := 0; after < 500; step++ {
		last, err := j.ReadDurable(after, 10, func(lsn uint64, p []byte) error {
			if lsn != after+1 || !bytes.Equal(p, payload(lsn)) {
				return fmt.Errorf("lsn %d after %d, payload ok %v", lsn, after, bytes.Equal(p, payload(lsn)))
			}
			after = lsn
			return nil
		})
		if err != nil || last != after {
			t.Fatalf("ReadDurable: last %d after %d: %v", last, after, err)
		}
		offs := ofs.take()
		if len(offs) == 0 {
			t.Fatalf("step %d read nothing", step)
		}
		if step > 0 && offs[0] <= prev {
			t.Fatalf("step %d (after lsn %d) read from offset %d, not past the previous read's start %d", step, after-10, offs[0], prev)
		}
		prev = offs[0]
	}
	var got []uint64
	if _, err := j.ReadDurable(5, 3, func(lsn uint64, _ []byte) error { got = append(got, lsn); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[6 7 8]" {
		t.Fatalf("read back from lsn 5: %v", got)
	}
	if offs := ofs.take(); len(offs) == 0 || offs[0] != 0 {
		t.Fatalf("a read behind the last one started at %v, want the segment's start", offs)
	}
}
