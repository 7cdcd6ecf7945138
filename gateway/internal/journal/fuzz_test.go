package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"scenepay/gateway/internal/vfs"
)

// noSyncFS skips fsync: the fuzz target checks parsing, not durability, and
// a real fsync per input would make it crawl.
type noSyncFS struct{ vfs.FS }

type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error            { return nil }
func (noSyncFS) SyncDir(dir string) error { return nil }

func (fs noSyncFS) Create(name string) (vfs.File, error) {
	f, err := fs.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

func (fs noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

// fuzzSeeds are well-formed and damaged segments, also committed under
// testdata/fuzz/FuzzOpen.
func fuzzSeeds() [][]byte {
	valid := appendSegmentHeader(nil, 1)
	for lsn := uint64(1); lsn <= 5; lsn++ {
		valid = appendRecord(valid, lsn, payload(lsn))
	}
	flipped := bytes.Clone(valid)
	flipped[recordOffset(2)+recordHeaderLen] ^= 1
	wrongLSN := appendRecord(appendSegmentHeader(nil, 1), 2, []byte("x"))
	return [][]byte{
		valid,
		valid[:len(valid)-3],
		append(bytes.Clone(valid), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		flipped,
		wrongLSN,
		appendSegmentHeader(nil, 1)[:10],
		{},
	}
}

// FuzzOpen writes arbitrary bytes as the only segment and opens it. Open
// must not panic; when it succeeds, what it kept must be a prefix of the
// input made of records whose checksums verify with contiguous LSNs from 1,
// and the journal must accept and keep a new record.
func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(1))
		if err := os.WriteFile(path, seg, 0o644); err != nil {
			t.Fatal(err)
		}
		o := Options{FS: noSyncFS{vfs.Default}, Dir: dir, SegmentBytesMax: 1 << 20, GroupBytesMax: 64 << 10, BufferBytesMax: 64 << 10, RecordBytesMax: 1 << 10}
		j, err := Open(o)
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("Open failed with %T %v, want *CorruptionError", err, err)
			}
			return
		}
		// Rebuild the file from what Replay returns: it must be a prefix of
		// the input (or a fresh header if the input's header was torn).
		rebuilt := appendSegmentHeader(nil, 1)
		want := uint64(1)
		err = j.Replay(0, func(lsn uint64, p []byte) error {
			if lsn != want {
				t.Fatalf("replayed lsn %d, want %d", lsn, want)
			}
			want++
			rebuilt = appendRecord(rebuilt, lsn, p)
			return nil
		})
		if err != nil {
			t.Fatalf("Replay after a successful Open: %v", err)
		}
		if len(rebuilt) > segmentHeaderLen && !bytes.HasPrefix(seg, rebuilt) {
			t.Fatalf("replayed records are not a prefix of the segment")
		}
		if j.LastLSN() != want-1 {
			t.Fatalf("LastLSN %d, replayed up to %d", j.LastLSN(), want-1)
		}
		lsn, err := j.Append([]byte("next"), nil)
		if err != nil || lsn != want {
			t.Fatalf("Append = %d, %v; want %d", lsn, err, want)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		onDisk, _ := os.ReadFile(path)
		if !bytes.Equal(onDisk, appendRecord(rebuilt, lsn, []byte("next"))) {
			t.Fatalf("segment after append is not the kept prefix plus the new record")
		}
	})
}
