package journal

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"scenepay/gateway/internal/vfs"
)

func writeSnap(t *testing.T, fs vfs.FS, dir string, lsn uint64) error {
	t.Helper()
	return WriteSnapshot(fs, dir, lsn, func(w io.Writer) error {
		_, err := io.WriteString(w, "state at "+strconv.FormatUint(lsn, 10))
		return err
	})
}

func TestSnapshotWriteLoadKeepTwo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snap")
	if lsn, data, err := LoadSnapshot(vfs.Default, dir); lsn != 0 || data != nil || err != nil {
		t.Fatalf("empty LoadSnapshot = %d, %q, %v", lsn, data, err)
	}
	for _, lsn := range []uint64{10, 20, 30} {
		if err := writeSnap(t, vfs.Default, dir, lsn); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := vfs.Default.ReadDir(dir)
	if len(names) != 2 || names[0] != snapName(20) || names[1] != snapName(30) {
		t.Fatalf("snapshot dir holds %v, want the newest two", names)
	}
	lsn, data, err := LoadSnapshot(vfs.Default, dir)
	if err != nil || lsn != 30 || string(data) != "state at 30" {
		t.Fatalf("LoadSnapshot = %d, %q, %v", lsn, data, err)
	}
}

func TestSnapshotFallbackWhenNewestCorrupt(t *testing.T) {
	damages := map[string]func(path string){
		"flipped bit": func(p string) {
			b, _ := os.ReadFile(p)
			b[18] ^= 1
			os.WriteFile(p, b, 0o644)
		},
		"truncated": func(p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-1)
		},
		"empty": func(p string) { os.Truncate(p, 0) },
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeSnap(t, vfs.Default, dir, 5)
			writeSnap(t, vfs.Default, dir, 9)
			damage(filepath.Join(dir, snapName(9)))
			lsn, data, err := LoadSnapshot(vfs.Default, dir)
			var fb *SnapshotFallback
			if !errors.As(err, &fb) || fb.LSN != 5 || len(fb.Corrupt) != 1 || fb.Corrupt[0].Segment != snapName(9) {
				t.Fatalf("LoadSnapshot err = %v, want a fallback to 5 naming %s", err, snapName(9))
			}
			if lsn != 5 || string(data) != "state at 5" {
				t.Fatalf("fallback = %d, %q", lsn, data)
			}
			// Both bad: an error, no data.
			damage(filepath.Join(dir, snapName(5)))
			lsn, data, err = LoadSnapshot(vfs.Default, dir)
			var ce *CorruptionError
			if lsn != 0 || data != nil || !errors.As(err, &ce) || errors.As(err, &fb) {
				t.Fatalf("all corrupt: %d, %q, %v", lsn, data, err)
			}
		})
	}
}

func TestSnapshotWriteFailuresLeaveOldIntact(t *testing.T) {
	dir := t.TempDir()
	if err := writeSnap(t, vfs.Default, dir, 1); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := WriteSnapshot(vfs.Default, dir, 2, func(io.Writer) error { return boom }); err != boom {
		t.Fatalf("callback error = %v", err)
	}
	for _, r := range []vfs.Rule{{Op: vfs.OpSync}, {Op: vfs.OpRename}, {Op: vfs.OpWrite, Prefix: 5}} {
		efs := vfs.NewErrorFS(vfs.Default)
		efs.Inject(r)
		if err := writeSnap(t, efs, dir, 3); !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("%v failure: WriteSnapshot = %v", r.Op, err)
		}
	}
	names, _ := vfs.Default.ReadDir(dir)
	if len(names) != 1 || names[0] != snapName(1) {
		t.Fatalf("after failed writes the dir holds %v", names)
	}
	lsn, _, err := LoadSnapshot(vfs.Default, dir)
	if lsn != 1 || err != nil {
		t.Fatalf("LoadSnapshot = %d, %v", lsn, err)
	}
	// A leftover temporary file from a crash is removed by the next write.
	os.WriteFile(filepath.Join(dir, snapName(7)+snapTmpSuffix), []byte("partial"), 0o644)
	if err := writeSnap(t, vfs.Default, dir, 8); err != nil {
		t.Fatal(err)
	}
	names, _ = vfs.Default.ReadDir(dir)
	if len(names) != 2 || names[1] != snapName(8) {
		t.Fatalf("dir holds %v", names)
	}
}
