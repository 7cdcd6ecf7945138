package device

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Store keeps a terminal's txn counter. Next must make the new id durable
// before it returns: a terminal that reboots after sending txn n must never
// send n again for different content, or the gateway would refuse it as an
// ID_CONFLICT (or, worse, replay an old reply for a new sale).
type Store interface {
	// Next reserves the next txn id and records it before returning it.
	Next() (uint64, error)
	// Last returns the last reserved id, 0 if none.
	Last() (uint64, error)
}

// ErrTxnExhausted is returned when the counter would wrap: a wrapped counter
// would reuse ids, so it is an error, never a wrap.
var ErrTxnExhausted = errors.New("device: txn counter exhausted")

// MemStore is an in-memory Store for fleets of virtual terminals, where one
// process owns every terminal and a restart starts a new run. Start it from a
// value above anything a previous run used (see fleet: wall-clock based) so
// that a gateway that kept its replay windows does not see old ids again.
type MemStore struct {
	mu   sync.Mutex
	last uint64
}

// NewMemStore returns a MemStore whose first id is last+1.
func NewMemStore(last uint64) *MemStore { return &MemStore{last: last} }

// Next implements Store.
func (m *MemStore) Next() (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == math.MaxUint64 {
		return 0, ErrTxnExhausted
	}
	m.last++
	return m.last, nil
}

// Last implements Store.
func (m *MemStore) Last() (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, nil
}

// FileStore persists the counter of one terminal in a small text file. Each
// Next writes the new value to a temporary file, fsyncs it, renames it over
// the old file and fsyncs the directory, so after a crash the file holds
// either the old or the new value, never a torn one. One fsync pair per txn
// is fine for a single device; fleets use MemStore.
type FileStore struct {
	mu   sync.Mutex
	path string
	last uint64
}

// fileStoreMaxBytes bounds what OpenFileStore reads: the file holds one
// decimal uint64 and a newline.
const fileStoreMaxBytes = 64

// OpenFileStore opens (or creates on first Next) the counter file at path.
func OpenFileStore(path string) (*FileStore, error) {
	fs := &FileStore{path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fs, nil
	case err != nil:
		return nil, fmt.Errorf("device: read txn counter: %w", err)
	}
	if len(b) > fileStoreMaxBytes {
		return nil, fmt.Errorf("device: txn counter file %s is %d bytes, larger than %d", path, len(b), fileStoreMaxBytes)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("device: txn counter file %s is corrupt: %w", path, err)
	}
	fs.last = v
	return fs, nil
}

// Next implements Store.
func (f *FileStore) Next() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == math.MaxUint64 {
		return 0, ErrTxnExhausted
	}
	n := f.last + 1
	if err := f.write(n); err != nil {
		return 0, err
	}
	f.last = n
	return n, nil
}

// Last implements Store.
func (f *FileStore) Last() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, nil
}

func (f *FileStore) write(v uint64) error {
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, ".txn-*")
	if err != nil {
		return fmt.Errorf("device: txn counter: %w", err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("device: txn counter: %w", err)
	}
	if _, err := tmp.Write(strconv.AppendUint(nil, v, 10)); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write([]byte{'\n'}); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("device: txn counter: %w", err)
	}
	if err := os.Rename(name, f.path); err != nil {
		os.Remove(name)
		return fmt.Errorf("device: txn counter: %w", err)
	}
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("device: txn counter dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("device: txn counter dir sync: %w", err)
	}
	return nil
}
