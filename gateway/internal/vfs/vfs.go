// Package vfs owns the small filesystem interface through which the durable
// parts of the gateway (the journal and its snapshots) touch the disk.
//
// Going through an interface instead of the os package costs one indirect
// call per operation and buys the ability to test what happens when the disk
// misbehaves: ErrorFS fails the Nth write, fails fsync, or writes only a
// prefix of a buffer (a torn write), selected per path. The shape follows
// cockroachdb/pebble's vfs and vfs/errorfs packages, cut down to what the
// journal uses.
package vfs

import (
	"io"
	"os"
	"path/filepath"
	"sort"
)

// File is an open file. Implementations need not be safe for concurrent use
// except where noted by their users; the journal gives each file one owner.
type File interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.Seeker
	io.Closer
	// Sync flushes the file's data (and the metadata needed to read it back)
	// to stable storage. After Sync returns an error the state of the page
	// cache is unknown; callers must not retry and assume success.
	Sync() error
	Stat() (os.FileInfo, error)
	Truncate(size int64) error
	// Name is the path the file was opened with.
	Name() string
}

// FS is a filesystem. Paths are ordinary OS paths.
type FS interface {
	// Create creates or truncates name for reading and writing.
	Create(name string) (File, error)
	// OpenFile is os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Open opens name read-only.
	Open(name string) (File, error)
	Remove(name string) error
	// Rename atomically replaces newname with oldname (POSIX rename).
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the names of the entries in dir, sorted.
	ReadDir(dir string) ([]string, error)
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable. A new file is not durable until its directory is synced.
	SyncDir(dir string) error
}

// Default is the FS of the operating system.
var Default FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (osFS) Create(name string) (File, error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Stat(name string) (os.FileInfo, error)       { return os.Stat(name) }

func (osFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return serr
	}
	return cerr
}
