package vfs

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// On Linux a File's Sync is fdatasync(2): a pipe, which cannot be synced,
// reports the call by name with its errno; a closed file reports an error.
func TestSyncIsFdatasync(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	err = osFile{r}.Sync()
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "fdatasync" || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Sync of a pipe = %v, want fdatasync: EINVAL", err)
	}

	f, err := Default.Create(t.TempDir() + "/f")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err == nil {
		t.Fatal("Sync of a closed file succeeded")
	}
}
