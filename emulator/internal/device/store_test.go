package device

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMemStoreExhaustionIsAnError(t *testing.T) {
	m := NewMemStore(math.MaxUint64 - 1)
	if v, err := m.Next(); err != nil || v != math.MaxUint64 {
		t.Fatalf("Next = %d, %v", v, err)
	}
	if _, err := m.Next(); !errors.Is(err, ErrTxnExhausted) {
		t.Fatalf("err = %v, want ErrTxnExhausted", err)
	}
}

func TestFileStorePersistsEveryID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "txn")
	f, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		got, err := f.Next()
		if err != nil || got != want {
			t.Fatalf("Next = %d, %v; want %d", got, err, want)
		}
		g, err := OpenFileStore(path) // what a reboot right now would see
		if err != nil {
			t.Fatal(err)
		}
		if last, _ := g.Last(); last != want {
			t.Fatalf("after Next()=%d the file says %d", want, last)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
}

func TestFileStoreCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"garbage": "12x\n", "huge": string(make([]byte, 100))} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := OpenFileStore(p); err == nil {
			t.Errorf("%s: OpenFileStore accepted a corrupt file", name)
		}
	}
}

func TestFullJitterBounds(t *testing.T) {
	base, limit := 10*time.Millisecond, 300*time.Millisecond
	for attempt := range 100 {
		ceil := limit
		if attempt < 5 {
			ceil = base << attempt
		}
		for range 50 {
			d := fullJitter(base, limit, attempt)
			if d < 0 || d >= ceil {
				t.Fatalf("attempt %d: %v outside [0,%v)", attempt, d, ceil)
			}
		}
	}
	if fullJitter(0, limit, 3) != 0 {
		t.Fatal("zero base must not wait")
	}
}
