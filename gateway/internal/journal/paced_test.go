package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"scenepay/gateway/internal/vfs"
)

// A pacedWriter hands the file at most one chunk between two fsyncs, never
// crossing a chunk boundary in one write, and keeps the bytes and their
// order; a stop ends it after a chunk.
func TestPacedWriterFlushesInChunks(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	var mu sync.Mutex
	var sinceSync, syncs int
	var bad []string
	efs.SetHook(func(e vfs.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Op {
		case vfs.OpWrite:
			sinceSync += e.N
			if sinceSync > pacedChunkBytes {
				bad = append(bad, "more than a chunk between two fsyncs")
			}
		case vfs.OpSync:
			syncs++
			sinceSync = 0
		}
	})
	f, err := efs.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3*pacedChunkBytes+pacedChunkBytes/2)
	for i := range want {
		want[i] = byte(i * 7 / 5)
	}
	w := &pacedWriter{f: f}
	for p := want; len(p) > 0; {
		k := min(len(p), 300<<10) // pieces that do not line up with the chunks
		if n, err := w.Write(p[:k]); err != nil || n != k {
			t.Fatalf("Write = %d, %v", n, err)
		}
		p = p[k:]
	}
	f.Close()
	mu.Lock()
	if len(bad) > 0 || syncs != 3 {
		t.Fatalf("%d fsyncs (want 3 for 3.5 chunks), problems %v", syncs, bad)
	}
	mu.Unlock()
	got, err := os.ReadFile(filepath.Join(dir, "big"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file differs (%d of %d bytes), %v", len(got), len(want), err)
	}

	g, err := vfs.Default.Create(filepath.Join(dir, "stopped"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sw := &pacedWriter{f: g, stop: func() bool { return true }}
	if n, err := sw.Write(want); !errors.Is(err, errPacedStopped) || n != pacedChunkBytes {
		t.Fatalf("stopped Write = %d, %v; want one chunk and errPacedStopped", n, err)
	}
}
