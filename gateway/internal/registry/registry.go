// Package registry owns the gateway's table of terminals: id, kind, merchant,
// key version and blocked flag, and the MAC signers derived from the bank's
// master key. Changes are journaled by the gateway (Encode/Decode give the
// record) and rebuilt on restart; the master key itself never leaves memory.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"scenepay/terminals"
)

// Terminal kinds.
const (
	KindBus   = "bus"
	KindStall = "stall"
	KindKiosk = "kiosk"
)

// Terminal is one registered terminal.
type Terminal struct {
	TID        string `json:"tid"`
	Kind       string `json:"kind"`
	Merchant   string `json:"merchant"`
	KeyVersion uint32 `json:"key_version"`
	Blocked    bool   `json:"blocked"`
}

// Validate checks a terminal record.
func (t *Terminal) Validate() error {
	if !terminals.ValidID(t.TID, terminals.MaxTerminalIDLen) {
		return errors.New("tid must be 1..32 of [A-Za-z0-9._-]")
	}
	switch t.Kind {
	case KindBus, KindStall, KindKiosk:
	default:
		return errors.New("kind must be bus, stall or kiosk")
	}
	if !terminals.ValidID(t.Merchant, 64) {
		return errors.New("merchant must be 1..64 of [A-Za-z0-9._-]")
	}
	if t.KeyVersion == 0 {
		return errors.New("key_version must be >= 1")
	}
	return nil
}

// Entry is a registered terminal with its signer. Seal and Open serialize on
// the entry, since an HMAC state is not safe for concurrent use.
type Entry struct {
	mu     sync.Mutex
	t      Terminal
	signer *terminals.Signer
}

// Terminal returns a copy of the record.
func (e *Entry) Terminal() Terminal {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.t
}

// Open verifies a payload's MAC under the terminal's key.
func (e *Entry) Open(payload []byte) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.signer.Open(payload)
}

// Seal appends the framed body to dst.
func (e *Entry) Seal(dst, body []byte) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.signer.Seal(dst, body)
}

// Registry is the terminal table. Safe for concurrent use.
type Registry struct {
	master []byte
	max    int
	mu     sync.RWMutex
	m      map[string]*Entry
}

// ErrFull is returned when TerminalsMax terminals are registered.
var ErrFull = errors.New("registry: terminal bound reached")

// New returns an empty registry over master key, bounded to max terminals.
func New(master []byte, max int) *Registry {
	return &Registry{master: append([]byte(nil), master...), max: max, m: map[string]*Entry{}}
}

// Get returns the entry of tid.
func (r *Registry) Get(tid string) (*Entry, bool) {
	r.mu.RLock()
	e, ok := r.m[tid]
	r.mu.RUnlock()
	return e, ok
}

// Put inserts or replaces a terminal record (after validation).
func (r *Registry) Put(t Terminal) error {
	if err := t.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[t.TID]; ok {
		e.mu.Lock()
		if e.t.KeyVersion != t.KeyVersion {
			e.signer = terminals.NewSigner(terminals.DeriveKey(r.master, t.TID, t.KeyVersion))
		}
		e.t = t
		e.mu.Unlock()
		return nil
	}
	if len(r.m) >= r.max {
		return ErrFull
	}
	r.m[t.TID] = &Entry{t: t, signer: terminals.NewSigner(terminals.DeriveKey(r.master, t.TID, t.KeyVersion))}
	return nil
}

// Len is the number of registered terminals.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

// All returns every record sorted by id.
func (r *Registry) All() []Terminal {
	r.mu.RLock()
	out := make([]Terminal, 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e.Terminal())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].TID < out[j].TID })
	return out
}

// Encode is the journal/snapshot encoding of one record.
func Encode(t Terminal) []byte {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // a struct of plain fields always marshals
	}
	return b
}

// Decode parses and validates Encode's output.
func Decode(b []byte) (Terminal, error) {
	var t Terminal
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("registry: decode: %w", err)
	}
	if err := t.Validate(); err != nil {
		return t, fmt.Errorf("registry: decode: %w", err)
	}
	return t, nil
}
