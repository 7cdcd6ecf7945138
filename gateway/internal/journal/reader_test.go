package journal

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
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
