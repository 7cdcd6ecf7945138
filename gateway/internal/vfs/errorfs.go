package vfs

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// ErrInjected is the error an ErrorFS returns when a Rule fires without its
// own Err.
var ErrInjected = errors.New("vfs: injected error")

// Op names a kind of filesystem operation that ErrorFS can fail or observe.
type Op uint8

// Operations that Rules select and Events report.
const (
	OpWrite    Op = iota + 1 // File.Write
	OpSync                   // File.Sync
	OpSyncDir                // FS.SyncDir
	OpCreate                 // FS.Create and FS.OpenFile
	OpRemove                 // FS.Remove
	OpRename                 // FS.Rename
	OpTruncate               // File.Truncate
)

var opNames = [...]string{"?", "write", "sync", "syncdir", "create", "remove", "rename", "truncate"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Rule says which operations to fail and how. The zero Rule except Op fails
// the first matching operation once, writing nothing.
type Rule struct {
	Op Op
	// Path selects operations whose path contains it; "" selects every path.
	Path string
	// Nth is the 1-based index, among operations matching Op and Path, of the
	// one to fail; 0 means 1.
	Nth int
	// Sticky also fails every later matching operation, the way a dead disk
	// does.
	Sticky bool
	// Prefix, for OpWrite, is how many bytes of the buffer reach the inner
	// file before the write fails: a torn write. 0 writes nothing.
	Prefix int
	// Silent, for OpWrite, reports success for a torn write (the short count
	// aside it returns len(p), nil), modelling data that a crash later loses.
	Silent bool
	// Err is returned by the failed operation; nil means ErrInjected.
	Err error
}

// Event reports one completed operation to the hook set by SetHook.
type Event struct {
	Op   Op
	Path string
	N    int   // bytes written, for OpWrite
	Err  error // the operation's result, injected or real
}

// ErrorFS wraps an FS and fails operations selected by Rules. It is safe for
// concurrent use. Reads are never failed: the journal's read path is
// exercised by corrupt files instead.
type ErrorFS struct {
	inner FS

	mu    sync.Mutex
	rules []*ruleState
	hook  func(Event)
}

type ruleState struct {
	Rule
	seen int
}

// NewErrorFS wraps inner.
func NewErrorFS(inner FS) *ErrorFS { return &ErrorFS{inner: inner} }

// Inject adds a rule. Rules are checked in the order added; the first that
// fires decides the operation's fate, but every matching rule counts it.
func (e *ErrorFS) Inject(r Rule) {
	if r.Nth <= 0 {
		r.Nth = 1
	}
	if r.Err == nil {
		r.Err = ErrInjected
	}
	e.mu.Lock()
	e.rules = append(e.rules, &ruleState{Rule: r})
	e.mu.Unlock()
}

// Reset removes every rule.
func (e *ErrorFS) Reset() {
	e.mu.Lock()
	e.rules = nil
	e.mu.Unlock()
}

// SetHook installs fn, called after every write, sync, syncdir, create,
// remove, rename and truncate returns, with its outcome. Tests use it to see
// the order of fsyncs relative to other events. fn must not call back into e.
func (e *ErrorFS) SetHook(fn func(Event)) {
	e.mu.Lock()
	e.hook = fn
	e.mu.Unlock()
}

// check counts op on path against every rule and returns the rule that
// fires, if any.
func (e *ErrorFS) check(op Op, path string) *Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	var fired *Rule
	for _, r := range e.rules {
		if r.Op != op || (r.Path != "" && !strings.Contains(path, r.Path)) {
			continue
		}
		r.seen++
		if fired == nil && (r.seen == r.Nth || (r.Sticky && r.seen > r.Nth)) {
			rc := r.Rule
			fired = &rc
		}
	}
	return fired
}

func (e *ErrorFS) report(ev Event) {
	e.mu.Lock()
	h := e.hook
	e.mu.Unlock()
	if h != nil {
		h(ev)
	}
}

func (e *ErrorFS) simple(op Op, path string, do func() error) error {
	var err error
	if r := e.check(op, path); r != nil {
		err = r.Err
	} else {
		err = do()
	}
	e.report(Event{Op: op, Path: path, Err: err})
	return err
}

func (e *ErrorFS) wrap(f File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &errFile{File: f, fs: e}, nil
}

// Create implements FS.
func (e *ErrorFS) Create(name string) (File, error) {
	var f File
	err := e.simple(OpCreate, name, func() (err error) { f, err = e.inner.Create(name); return })
	return e.wrap(f, err)
}

// OpenFile implements FS; it counts as OpCreate when flag has os.O_CREATE.
func (e *ErrorFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&os.O_CREATE == 0 {
		return e.wrap(e.inner.OpenFile(name, flag, perm))
	}
	var f File
	err := e.simple(OpCreate, name, func() (err error) { f, err = e.inner.OpenFile(name, flag, perm); return })
	return e.wrap(f, err)
}

// Open implements FS.
func (e *ErrorFS) Open(name string) (File, error) { return e.wrap(e.inner.Open(name)) }

// Remove implements FS.
func (e *ErrorFS) Remove(name string) error {
	return e.simple(OpRemove, name, func() error { return e.inner.Remove(name) })
}

// Rename implements FS; rules match the new name.
func (e *ErrorFS) Rename(oldname, newname string) error {
	return e.simple(OpRename, newname, func() error { return e.inner.Rename(oldname, newname) })
}

// MkdirAll implements FS.
func (e *ErrorFS) MkdirAll(dir string, perm os.FileMode) error { return e.inner.MkdirAll(dir, perm) }

// ReadDir implements FS.
func (e *ErrorFS) ReadDir(dir string) ([]string, error) { return e.inner.ReadDir(dir) }

// Stat implements FS.
func (e *ErrorFS) Stat(name string) (os.FileInfo, error) { return e.inner.Stat(name) }

// SyncDir implements FS.
func (e *ErrorFS) SyncDir(dir string) error {
	return e.simple(OpSyncDir, dir, func() error { return e.inner.SyncDir(dir) })
}

type errFile struct {
	File
	fs *ErrorFS
}

func (f *errFile) Write(p []byte) (int, error) {
	var (
		n   int
		err error
	)
	if r := f.fs.check(OpWrite, f.Name()); r != nil {
		k := min(max(r.Prefix, 0), len(p))
		if k > 0 {
			n, err = f.File.Write(p[:k])
		}
		if err == nil {
			if r.Silent {
				n = len(p)
			} else {
				err = r.Err
			}
		}
	} else {
		n, err = f.File.Write(p)
	}
	f.fs.report(Event{Op: OpWrite, Path: f.Name(), N: n, Err: err})
	return n, err
}

func (f *errFile) Sync() error {
	return f.fs.simple(OpSync, f.Name(), f.File.Sync)
}

func (f *errFile) Truncate(size int64) error {
	return f.fs.simple(OpTruncate, f.Name(), func() error { return f.File.Truncate(size) })
}
