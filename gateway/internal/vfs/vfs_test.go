package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a")
	f, err := Default.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello world")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(5); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "hello" {
		t.Fatalf("ReadAt = %q, %v", buf, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Default.Rename(p, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := Default.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	names, err := Default.ReadDir(dir)
	if err != nil || len(names) != 1 || names[0] != "b" {
		t.Fatalf("ReadDir = %v, %v", names, err)
	}
	if fi, err := Default.Stat(filepath.Join(dir, "b")); err != nil || fi.Size() != 5 {
		t.Fatalf("Stat = %v, %v", fi, err)
	}
}

func TestErrorFSNthWriteTornAndSticky(t *testing.T) {
	dir := t.TempDir()
	efs := NewErrorFS(Default)
	var events []Event
	efs.SetHook(func(e Event) { events = append(events, e) })
	boom := errors.New("boom")
	efs.Inject(Rule{Op: OpWrite, Path: "target", Nth: 2, Prefix: 3, Err: boom})

	other, err := efs.Create(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := efs.Create(filepath.Join(dir, "target"))
	if err != nil {
		t.Fatal(err)
	}
	// Writes to another path do not count toward the rule.
	for i := 0; i < 3; i++ {
		if _, err := other.Write([]byte("x")); err != nil {
			t.Fatalf("other write %d: %v", i, err)
		}
	}
	if n, err := f.Write([]byte("abcdef")); n != 6 || err != nil {
		t.Fatalf("write 1 = %d, %v", n, err)
	}
	n, err := f.Write([]byte("ghijkl"))
	if n != 3 || !errors.Is(err, boom) {
		t.Fatalf("write 2 = %d, %v; want 3, boom", n, err)
	}
	// Not sticky: the third write goes through.
	if n, err := f.Write([]byte("mn")); n != 2 || err != nil {
		t.Fatalf("write 3 = %d, %v", n, err)
	}
	f.Close()
	other.Close()
	got, _ := os.ReadFile(filepath.Join(dir, "target"))
	if string(got) != "abcdefghimn" {
		t.Fatalf("file = %q, want torn middle write", got)
	}
	var failed int
	for _, e := range events {
		if e.Err != nil {
			failed++
			if e.Op != OpWrite || e.N != 3 {
				t.Fatalf("failed event %+v", e)
			}
		}
	}
	if failed != 1 {
		t.Fatalf("%d failed events, want 1", failed)
	}

	efs.Reset()
	efs.Inject(Rule{Op: OpSync, Path: "target", Sticky: true})
	f, err = efs.OpenFile(filepath.Join(dir, "target"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 3; i++ {
		if err := f.Sync(); !errors.Is(err, ErrInjected) {
			t.Fatalf("sync %d = %v, want injected", i, err)
		}
	}
}

func TestErrorFSSilentTornWrite(t *testing.T) {
	dir := t.TempDir()
	efs := NewErrorFS(Default)
	efs.Inject(Rule{Op: OpWrite, Prefix: 2, Silent: true})
	f, err := efs.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Write([]byte("abcd")); n != 4 || err != nil {
		t.Fatalf("silent torn write = %d, %v", n, err)
	}
	f.Close()
	got, _ := os.ReadFile(filepath.Join(dir, "f"))
	if string(got) != "ab" {
		t.Fatalf("file = %q, want ab", got)
	}
}

func TestErrorFSMetadataOps(t *testing.T) {
	dir := t.TempDir()
	efs := NewErrorFS(Default)
	efs.Inject(Rule{Op: OpSyncDir})
	efs.Inject(Rule{Op: OpRename, Path: "final"})
	efs.Inject(Rule{Op: OpCreate, Path: "nope"})
	if err := efs.SyncDir(dir); !errors.Is(err, ErrInjected) {
		t.Fatalf("SyncDir = %v", err)
	}
	if err := efs.SyncDir(dir); err != nil {
		t.Fatalf("second SyncDir = %v", err)
	}
	if _, err := efs.Create(filepath.Join(dir, "nope")); !errors.Is(err, ErrInjected) {
		t.Fatalf("Create = %v", err)
	}
	f, err := efs.Create(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := efs.Rename(filepath.Join(dir, "tmp"), filepath.Join(dir, "final")); !errors.Is(err, ErrInjected) {
		t.Fatalf("Rename = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "final")); !os.IsNotExist(err) {
		t.Fatalf("failed rename still happened: %v", err)
	}
}
