package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/gateway/internal/vfs"
)

// smallOpts makes segments rotate every few records.
func smallOpts(dir string) Options {
	return Options{Dir: dir, SegmentBytesMax: 2048, GroupBytesMax: 512, BufferBytesMax: 4096, RecordBytesMax: 256}
}

func payload(lsn uint64) []byte {
	n := int(lsn*37%200) + 1
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(lsn) ^ byte(i*7)
	}
	return b
}

func mustOpen(t testing.TB, o Options) *Journal {
	t.Helper()
	j, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

func appendN(t testing.TB, j *Journal, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		want := j.LastLSN() + 1
		lsn, err := j.Append(payload(want), nil)
		if err != nil || lsn != want {
			t.Fatalf("Append = %d, %v; want lsn %d", lsn, err, want)
		}
	}
	if err := j.Sync(j.LastLSN()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// replayAll returns the LSNs replayed after after, checking every payload.
func replayAll(t testing.TB, j *Journal, after uint64) []uint64 {
	t.Helper()
	var got []uint64
	err := j.Replay(after, func(lsn uint64, p []byte) error {
		if !bytes.Equal(p, payload(lsn)) {
			return fmt.Errorf("lsn %d: payload differs", lsn)
		}
		got = append(got, lsn)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", after, err)
	}
	return got
}

func checkRange(t testing.TB, got []uint64, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from+1 || (len(got) > 0 && (got[0] != from || got[len(got)-1] != to)) {
		t.Fatalf("replayed %d records %v..., want %d..%d", len(got), head(got), from, to)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("replay not contiguous at %d: %d after %d", i, got[i], got[i-1])
		}
	}
}

func head(s []uint64) []uint64 { return s[:min(len(s), 5)] }

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := listSegments(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(segs))
	for i, s := range segs {
		names[i] = s.name
	}
	return names
}

func TestRoundTripAcrossRotationAndReopen(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, smallOpts(dir))
	if got := j.LastLSN(); got != 0 {
		t.Fatalf("fresh LastLSN = %d", got)
	}
	checkRange(t, replayAll(t, j, 0), 1, 0)
	appendN(t, j, 300)
	if j.DurableLSN() != 300 {
		t.Fatalf("DurableLSN = %d, want 300", j.DurableLSN())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	if len(segs) < 5 {
		t.Fatalf("only %d segments; rotation did not happen", len(segs))
	}
	if segs[0] != "00000000000000000001.log" {
		t.Fatalf("first segment %q", segs[0])
	}
	for _, s := range segs {
		fi, _ := os.Stat(filepath.Join(dir, s))
		if fi.Size() > 2048 {
			t.Fatalf("segment %s is %d bytes, over SegmentBytesMax", s, fi.Size())
		}
	}

	j = mustOpen(t, smallOpts(dir))
	if j.LastLSN() != 300 || j.DurableLSN() != 300 {
		t.Fatalf("reopened LastLSN %d DurableLSN %d", j.LastLSN(), j.DurableLSN())
	}
	checkRange(t, replayAll(t, j, 0), 1, 300)
	checkRange(t, replayAll(t, j, 123), 124, 300)
	checkRange(t, replayAll(t, j, 300), 301, 300)
	if err := j.Replay(301, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrLSNRange) {
		t.Fatalf("Replay past end = %v, want ErrLSNRange", err)
	}
	stop := errors.New("stop")
	if err := j.Replay(0, func(uint64, []byte) error { return stop }); err != stop {
		t.Fatalf("Replay callback error = %v", err)
	}
	appendN(t, j, 50)
	if err := j.Replay(0, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrReplayAfterAppend) {
		t.Fatalf("Replay after Append = %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, smallOpts(dir))
	checkRange(t, replayAll(t, j, 0), 1, 350)
	j.Close()
}

func TestAPIErrors(t *testing.T) {
	j := mustOpen(t, smallOpts(t.TempDir()))
	if _, err := j.Append(make([]byte, 257), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize Append = %v", err)
	}
	if err := j.Sync(5); !errors.Is(err, ErrLSNRange) {
		t.Fatalf("Sync of unassigned lsn = %v", err)
	}
	if _, err := j.Append(nil, nil); err != nil {
		t.Fatalf("empty payload: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append([]byte("x"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := j.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	for _, o := range []Options{
		{},
		{Dir: "x", RecordBytesMax: 1 << 10, GroupBytesMax: 1 << 10},
		{Dir: "x", SegmentBytesMax: 100},
		{Dir: "x", BufferBytesMax: 1 << 20},
		{Dir: "x", RecordBytesMax: RecordFormatMax + 1},
	} {
		if _, err := Open(o); !errors.Is(err, ErrOptions) {
			t.Fatalf("Open(%+v) = %v, want ErrOptions", o, err)
		}
	}
}

// syncWatcher parses the segment files after every fsync that returned nil
// and remembers the highest LSN on disk at that moment: everything up to it
// is covered by an fsync that has returned.
type syncWatcher struct {
	t         testing.TB
	syncedLSN atomic.Uint64
	syncs     atomic.Int64
}

func (w *syncWatcher) hook(e vfs.Event) {
	if e.Op != vfs.OpSync || e.Err != nil || filepath.Ext(e.Path) != ".log" {
		return
	}
	w.syncs.Add(1)
	data, err := os.ReadFile(e.Path)
	if err != nil || len(data) < segmentHeaderLen {
		return
	}
	b := data[segmentHeaderLen:]
	for len(b) > 0 {
		lsn, _, size, reason := decodeRecord(b)
		if reason != "" {
			break
		}
		if lsn > w.syncedLSN.Load() {
			w.syncedLSN.Store(lsn)
		}
		b = b[size:]
	}
}

// orderCheck is a Completion that insists on LSN order and on durability
// having been observed by the syncWatcher.
type orderCheck struct {
	w       *syncWatcher
	mu      sync.Mutex
	last    uint64
	count   int
	errs    []error
	wantErr bool
}

func (c *orderCheck) Durable(lsn uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	if lsn != c.last+1 {
		c.errs = append(c.errs, fmt.Errorf("completion for lsn %d after %d", lsn, c.last))
	}
	c.last = lsn
	if err != nil && !c.wantErr {
		c.errs = append(c.errs, fmt.Errorf("lsn %d: %v", lsn, err))
	}
	if err == nil && c.w != nil && c.w.syncedLSN.Load() < lsn {
		c.errs = append(c.errs, fmt.Errorf("lsn %d completed before an fsync covered it (synced %d)", lsn, c.w.syncedLSN.Load()))
	}
}

func TestConcurrentAppendersCompleteInOrderAfterSync(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	w := &syncWatcher{t: t}
	efs.SetHook(w.hook)
	o := smallOpts(dir)
	o.FS = efs
	o.SegmentBytesMax = 64 << 10
	o.GroupBytesMax = 8 << 10
	o.BufferBytesMax = 32 << 10
	var syncRecords atomic.Int64
	o.OnSync = func(_ time.Duration, records, bytes int) {
		syncRecords.Add(int64(records))
		if records <= 0 || bytes < records*recordHeaderLen {
			t.Errorf("OnSync(%d records, %d bytes)", records, bytes)
		}
	}
	j := mustOpen(t, o)
	c := &orderCheck{w: w}
	const goroutines, each = 16, 150
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 100)
			for i := 0; i < each; i++ {
				lsn, err := j.Append(p, c)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if i%10 == 0 {
					if err := j.Sync(lsn); err != nil {
						t.Errorf("Sync: %v", err)
					}
					if j.DurableLSN() < lsn {
						t.Errorf("Sync(%d) returned with DurableLSN %d", lsn, j.DurableLSN())
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errs[:min(len(c.errs), 5)] {
		t.Error(e)
	}
	if c.count != goroutines*each || c.last != goroutines*each {
		t.Fatalf("%d completions, last %d; want %d", c.count, c.last, goroutines*each)
	}
	if syncRecords.Load() != goroutines*each {
		t.Fatalf("OnSync counted %d records", syncRecords.Load())
	}
}

// TestGroupCommitSharesOneFsync holds the committer inside an fsync while
// records pile up, and checks that they all go out in the next single group.
func TestGroupCommitSharesOneFsync(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	var syncing atomic.Bool
	efs.SetHook(func(e vfs.Event) {
		if syncing.Load() && e.Op == vfs.OpSync {
			once.Do(func() { close(held); <-release })
		}
	})
	var groups []int
	var mu sync.Mutex
	o := Options{Dir: dir, FS: efs, OnSync: func(_ time.Duration, n, _ int) {
		mu.Lock()
		groups = append(groups, n)
		mu.Unlock()
	}}
	j := mustOpen(t, o)
	syncing.Store(true)
	c := &orderCheck{}
	if _, err := j.Append([]byte("first"), c); err != nil {
		t.Fatal(err)
	}
	<-held // the committer is now inside the first group's fsync
	for i := 0; i < 100; i++ {
		if _, err := j.Append(make([]byte, 200), c); err != nil {
			t.Fatal(err)
		}
	}
	if d := j.DurableLSN(); d != 0 {
		t.Fatalf("DurableLSN %d while the first fsync is held", d)
	}
	close(release)
	if err := j.Sync(101); err != nil {
		t.Fatal(err)
	}
	j.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(groups) != 2 || groups[0] != 1 || groups[1] != 100 {
		t.Fatalf("groups %v, want [1 100]", groups)
	}
	if c.count != 101 || len(c.errs) > 0 {
		t.Fatalf("completions %d, errors %v", c.count, c.errs)
	}
}

func TestBackPressureBlocksAppend(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var armed atomic.Bool
	efs.SetHook(func(e vfs.Event) {
		if armed.Load() && e.Op == vfs.OpSync {
			once.Do(func() { close(held); <-release })
		}
	})
	o := smallOpts(dir)
	o.FS = efs
	o.BufferBytesMax = 1024
	j := mustOpen(t, o)
	armed.Store(true)
	p := make([]byte, 100) // 116 bytes a record
	if _, err := j.Append(p, nil); err != nil {
		t.Fatal(err)
	}
	<-held
	for i := 0; i < 7; i++ { // 8*116 = 928 <= 1024 bytes in the pipeline
		if _, err := j.Append(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	var returned atomic.Bool
	done := make(chan uint64)
	go func() {
		lsn, _ := j.Append(p, nil)
		returned.Store(true)
		done <- lsn
	}()
	time.Sleep(50 * time.Millisecond) // give a broken bound time to show
	if returned.Load() {
		t.Fatal("Append returned although BufferBytesMax was reached")
	}
	close(release)
	if lsn := <-done; lsn != 9 {
		t.Fatalf("blocked Append got lsn %d, want 9", lsn)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// failAndCheck drives a journal whose FS fails the op selected by rule: the
// first record is durable, the second hits the failure while three more are
// queued behind it.
func failAndCheck(t *testing.T, rule vfs.Rule) string {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	held, release := make(chan struct{}), make(chan struct{})
	efs.SetHook(func(e vfs.Event) {
		if e.Err != nil {
			close(held)
			<-release
		}
	})
	o := smallOpts(dir)
	o.FS = efs
	j := mustOpen(t, o)
	c := &orderCheck{wantErr: true}
	if _, err := j.Append(payload(1), c); err != nil {
		t.Fatal(err)
	}
	if err := j.Sync(1); err != nil {
		t.Fatal(err)
	}
	efs.Inject(rule)
	var errs []error
	var mu sync.Mutex
	rec := completionFunc(func(lsn uint64, err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		c.Durable(lsn, err)
	})
	if _, err := j.Append(payload(2), rec); err != nil {
		t.Fatal(err)
	}
	<-held // the committer is stuck right after the failed operation
	for lsn := uint64(3); lsn <= 5; lsn++ {
		if _, err := j.Append(payload(lsn), rec); err != nil {
			t.Fatalf("Append %d before failure is known: %v", lsn, err)
		}
	}
	close(release)
	err := j.Sync(5)
	if !errors.Is(err, ErrFailed) || !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Sync after failure = %v, want ErrFailed wrapping the injected error", err)
	}
	var ioe *IOError
	if !errors.As(err, &ioe) {
		t.Fatalf("failure %T is not *IOError", err)
	}
	if err := j.Sync(1); err != nil {
		t.Fatalf("Sync of a record durable before the failure = %v", err)
	}
	if _, err := j.Append(payload(6), rec); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after failure = %v, want ErrFailed", err)
	}
	if err := j.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close after failure = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 4 {
		t.Fatalf("%d completions for records 2..5, want 4", len(errs))
	}
	for i, e := range errs {
		if !errors.Is(e, ErrFailed) {
			t.Fatalf("completion %d got %v, want the failure", i+2, e)
		}
	}
	if len(c.errs) > 0 || c.last != 5 {
		t.Fatalf("order: %v, last %d", c.errs, c.last)
	}
	if j.DurableLSN() != 1 {
		t.Fatalf("DurableLSN %d, want 1", j.DurableLSN())
	}
	return dir
}

type completionFunc func(uint64, error)

func (f completionFunc) Durable(lsn uint64, err error) { f(lsn, err) }

func TestWriteErrorIsSticky(t *testing.T) {
	dir := failAndCheck(t, vfs.Rule{Op: vfs.OpWrite, Path: ".log", Prefix: 10})
	// The torn group (10 bytes of record 2) is cut on reopen; the next LSN
	// is 2 again because record 2 was never durable.
	j := mustOpen(t, smallOpts(dir))
	if j.LastLSN() != 1 {
		t.Fatalf("LastLSN after torn write = %d, want 1", j.LastLSN())
	}
	checkRange(t, replayAll(t, j, 0), 1, 1)
	appendN(t, j, 3)
	j.Close()
}

func TestFsyncErrorIsSticky(t *testing.T) {
	failAndCheck(t, vfs.Rule{Op: vfs.OpSync, Path: ".log"})
}

func TestRotationFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	efs.Inject(vfs.Rule{Op: vfs.OpSyncDir, Nth: 2}) // 1st: Open's segment; 2nd: first rotation
	o := smallOpts(dir)
	o.FS = efs
	j := mustOpen(t, o)
	var lastErr error
	for i := 0; i < 100 && lastErr == nil; i++ {
		_, lastErr = j.Append(payload(uint64(i+1)), nil)
		if lastErr == nil {
			lastErr = j.Sync(j.LastLSN())
		}
	}
	if !errors.Is(lastErr, ErrFailed) {
		t.Fatalf("rotation failure not sticky: %v", lastErr)
	}
	j.Close()
	// Reopen: the new segment (header only, not acknowledged) is accepted.
	j = mustOpen(t, smallOpts(dir))
	last := j.LastLSN()
	checkRange(t, replayAll(t, j, 0), 1, last)
	appendN(t, j, 20)
	j.Close()
}

func lastSegmentPath(t *testing.T, dir string) string {
	segs := segmentFiles(t, dir)
	return filepath.Join(dir, segs[len(segs)-1])
}

func TestTornTailIsTruncated(t *testing.T) {
	cases := []struct {
		name string
		tear func(t *testing.T, path string)
		last uint64
	}{
		{"partial last record", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-3)
		}, 19},
		{"partial last header", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-int64(len(payload(20)))-5)
		}, 19},
		{"garbage after last record", func(t *testing.T, p string) {
			appendFile(t, p, []byte("\x07\x00\x00\x00garbage that is not a record"))
		}, 20},
		{"zeros after last record", func(t *testing.T, p string) {
			appendFile(t, p, make([]byte, 4096))
		}, 20},
		{"torn header of a new segment", func(t *testing.T, p string) {
			name := filepath.Join(filepath.Dir(p), segmentName(21))
			os.WriteFile(name, []byte("SPJ"), 0o644)
		}, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := smallOpts(dir)
			o.SegmentBytesMax = 64 << 10
			j := mustOpen(t, o)
			appendN(t, j, 20)
			j.Close()
			tc.tear(t, lastSegmentPath(t, dir))
			j = mustOpen(t, o)
			if j.LastLSN() != tc.last {
				t.Fatalf("LastLSN = %d, want %d", j.LastLSN(), tc.last)
			}
			checkRange(t, replayAll(t, j, 0), 1, tc.last)
			appendN(t, j, 5)
			j.Close()
			j = mustOpen(t, o)
			checkRange(t, replayAll(t, j, 0), 1, tc.last+5)
			j.Close()
		})
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(b)
	f.Close()
}

// recordOffset is the offset of lsn in a single-segment journal written by
// appendN.
func recordOffset(lsn uint64) int64 {
	off := int64(segmentHeaderLen)
	for l := uint64(1); l < lsn; l++ {
		off += int64(recordHeaderLen + len(payload(l)))
	}
	return off
}

func flipBit(t *testing.T, path string, off int64) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0x10
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCorruption(t *testing.T) {
	bigSeg := func(dir string) Options { o := smallOpts(dir); o.SegmentBytesMax = 64 << 10; return o }
	cases := []struct {
		name    string
		opts    func(string) Options
		damage  func(t *testing.T, dir string) (segment string, offset int64)
		wantLSN uint64
	}{
		{"flipped payload bit followed by records", bigSeg, func(t *testing.T, dir string) (string, int64) {
			off := recordOffset(7)
			flipBit(t, filepath.Join(dir, segmentName(1)), off+recordHeaderLen+1)
			return segmentName(1), off
		}, 7},
		{"flipped length bit followed by records", bigSeg, func(t *testing.T, dir string) (string, int64) {
			off := recordOffset(12)
			flipBit(t, filepath.Join(dir, segmentName(1)), off+1)
			return segmentName(1), off
		}, 12},
		{"flipped lsn bit followed by records", bigSeg, func(t *testing.T, dir string) (string, int64) {
			off := recordOffset(3)
			flipBit(t, filepath.Join(dir, segmentName(1)), off+9)
			return segmentName(1), off
		}, 3},
		{"truncated non-last segment", smallOpts, func(t *testing.T, dir string) (string, int64) {
			segs := segmentFiles(t, dir)
			p := filepath.Join(dir, segs[1])
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-2)
			return segs[1], -1 // the offset of the cut record, checked loosely below
		}, 0},
		{"missing middle segment", smallOpts, func(t *testing.T, dir string) (string, int64) {
			segs := segmentFiles(t, dir)
			os.Remove(filepath.Join(dir, segs[2]))
			return segs[3], 0
		}, 0},
		{"bad header of non-last segment", smallOpts, func(t *testing.T, dir string) (string, int64) {
			segs := segmentFiles(t, dir)
			flipBit(t, filepath.Join(dir, segs[0]), 9)
			return segs[0], 0
		}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := tc.opts(dir)
			j := mustOpen(t, o)
			appendN(t, j, 100)
			j.Close()
			seg, off := tc.damage(t, dir)
			_, err := Open(o)
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("Open = %v, want *CorruptionError", err)
			}
			if ce.Segment != seg {
				t.Fatalf("corruption in %q, want %q (%v)", ce.Segment, seg, err)
			}
			if off >= 0 && ce.Offset != off {
				t.Fatalf("corruption at offset %d, want %d (%v)", ce.Offset, off, err)
			}
			if off < 0 && ce.Offset <= segmentHeaderLen {
				t.Fatalf("corruption at offset %d, want inside the segment (%v)", ce.Offset, err)
			}
			if tc.wantLSN != 0 && ce.LSN != tc.wantLSN {
				t.Fatalf("corruption lsn %d, want %d", ce.LSN, tc.wantLSN)
			}
			if ce.Reason == "" || ce.Error() == "" {
				t.Fatal("empty reason")
			}
		})
	}
}

// A damaged last record cannot be told from a torn write: it was the tail of
// the last group, so it is cut, like a torn tail.
func TestFlippedLastRecordIsTornTail(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.SegmentBytesMax = 64 << 10
	j := mustOpen(t, o)
	appendN(t, j, 10)
	j.Close()
	flipBit(t, filepath.Join(dir, segmentName(1)), recordOffset(10)+recordHeaderLen)
	j = mustOpen(t, o)
	defer j.Close()
	if j.LastLSN() != 9 {
		t.Fatalf("LastLSN %d, want 9", j.LastLSN())
	}
}

func TestReplayDetectsCorruptionAfterOpen(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	j := mustOpen(t, o)
	appendN(t, j, 40)
	j.Close()
	j = mustOpen(t, o)
	defer j.Close()
	flipBit(t, filepath.Join(dir, segmentName(1)), recordOffset(2)+recordHeaderLen)
	err := j.Replay(0, func(uint64, []byte) error { return nil })
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.LSN != 2 {
		t.Fatalf("Replay = %v, want corruption at lsn 2", err)
	}
}

func TestTruncateBefore(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	j := mustOpen(t, o)
	appendN(t, j, 200)
	before := segmentFiles(t, dir)
	if err := j.TruncateBefore(1); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, dir); len(got) != len(before) {
		t.Fatalf("TruncateBefore(1) removed %d segments", len(before)-len(got))
	}
	const cut = 100
	if err := j.TruncateBefore(cut); err != nil {
		t.Fatal(err)
	}
	after := segmentFiles(t, dir)
	first, _ := parseSegmentName(after[0])
	if first > cut {
		t.Fatalf("first remaining segment starts at %d, past %d: records below were lost", first, cut)
	}
	if len(after) < 2 {
		t.Fatalf("segments after truncation: %v", after)
	}
	second, _ := parseSegmentName(after[1])
	if second <= cut {
		t.Fatalf("segment %s holds only records below %d but was kept", after[0], cut)
	}
	// Everything removes all but the active segment.
	if err := j.TruncateBefore(1 << 40); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, dir); len(got) != 1 || got[0] != before[len(before)-1] {
		t.Fatalf("after TruncateBefore(all): %v", got)
	}
	appendN(t, j, 10)
	j.Close()

	j = mustOpen(t, o)
	defer j.Close()
	active, _ := parseSegmentName(before[len(before)-1])
	if err := j.Replay(0, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrLSNRange) {
		t.Fatalf("Replay from a truncated point = %v, want ErrLSNRange", err)
	}
	checkRange(t, replayAll(t, j, active-1), active, 210)
}
