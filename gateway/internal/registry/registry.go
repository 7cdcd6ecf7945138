// Package registry owns the gateway's table of terminals: id, kind, merchant,
// key version (with the previous version during a rotation overlap), blocked
// flag, the MAC signers derived from the bank's master key, and the runtime
// status (last seen, online/offline) that is not journaled. Changes are
// journaled by the gateway (Encode/Decode give the record) and rebuilt on
// restart; the master key itself never leaves memory.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

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
	// PrevKeyVersion and OverlapUntilMS describe a key rotation in overlap:
	// until OverlapUntilMS (Unix milliseconds, UTC) a request MACed under
	// PrevKeyVersion is still accepted, so a fleet can take the new key over
	// minutes instead of all at the same instant. Zero means no overlap;
	// records journaled before rotation existed decode with zeros.
	PrevKeyVersion uint32 `json:"prev_key_version,omitempty"`
	OverlapUntilMS int64  `json:"overlap_until_ms,omitempty"`
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
	if t.PrevKeyVersion != 0 && (t.PrevKeyVersion == t.KeyVersion || t.OverlapUntilMS <= 0) {
		return errors.New("prev_key_version needs overlap_until_ms and must differ from key_version")
	}
	if t.PrevKeyVersion == 0 && t.OverlapUntilMS != 0 {
		return errors.New("overlap_until_ms without prev_key_version")
	}
	return nil
}

// OverlapMax bounds a rotation overlap: an old key that stays valid for
// longer than a week is not a rotation.
const OverlapMax = 7 * 24 * time.Hour

// Rotated returns t with its key version bumped. With overlap > 0 the old
// version stays accepted until now+overlap; with 0 it stops at once.
func Rotated(t Terminal, now time.Time, overlap time.Duration) (Terminal, error) {
	if overlap < 0 || overlap > OverlapMax {
		return t, fmt.Errorf("overlap must be 0..%s", OverlapMax)
	}
	if t.KeyVersion == ^uint32(0) {
		return t, errors.New("key_version exhausted")
	}
	n := t
	n.KeyVersion = t.KeyVersion + 1
	n.PrevKeyVersion, n.OverlapUntilMS = 0, 0
	if overlap > 0 {
		n.PrevKeyVersion = t.KeyVersion
		n.OverlapUntilMS = now.Add(overlap).UnixMilli()
	}
	return n, nil
}

// Entry is a registered terminal with its signer. Seal and Open serialize on
// the entry, since an HMAC state is not safe for concurrent use.
//
// During a rotation overlap the entry has a sibling entry (prev) holding the
// previous key's signer. OpenAt returns the entry whose key verified the
// request, so that everything sealed for that request afterwards (refusals,
// the stored reply) uses the key the terminal used: a terminal that has not
// taken the new key yet can still read its answers. A sibling reads its
// record from its parent and never opens.
type Entry struct {
	mu     sync.Mutex
	t      Terminal
	signer *terminals.Signer
	prev   *Entry // previous key's sibling during an overlap, else nil
	parent *Entry // set on a sibling only

	lastSeenMS atomic.Int64 // last authenticated message, Unix ms (runtime only)
	status     atomic.Int32 // StatusUnknown, StatusOnline, StatusOffline
	statusMS   atomic.Int64 // when the status last changed, Unix ms
}

// Terminal status as reported on {root}/t/{tid}/status.
const (
	StatusUnknown int32 = iota
	StatusOnline
	StatusOffline
)

// Terminal returns a copy of the record.
func (e *Entry) Terminal() Terminal {
	if e.parent != nil {
		return e.parent.Terminal()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.t
}

// OpenAt verifies a payload's MAC under the terminal's current key and,
// until the overlap ends at now, under the previous key. It returns the
// authenticated body and the entry whose key verified it (e itself or its
// previous-key sibling); seal everything for this request with that entry.
func (e *Entry) OpenAt(now time.Time, payload []byte) ([]byte, *Entry, error) {
	body, mac, err := terminals.Split(payload) // a framing error fails under every key
	if err != nil {
		return nil, e, err
	}
	e.mu.Lock()
	ok := e.signer.Verify(body, mac)
	prev, until := e.prev, e.t.OverlapUntilMS
	e.mu.Unlock()
	if ok {
		return body, e, nil
	}
	if prev != nil && now.UnixMilli() < until {
		prev.mu.Lock()
		ok = prev.signer.Verify(body, mac)
		prev.mu.Unlock()
		if ok {
			return body, prev, nil
		}
	}
	return nil, e, errBadMAC
}

// errBadMAC is shared: a flood of forged messages allocates nothing.
var errBadMAC = &terminals.Error{Code: terminals.CodeBadMAC, Msg: "MAC does not verify"}

// Touch records an authenticated message at now (for last_seen).
func (e *Entry) Touch(now time.Time) {
	if e.parent != nil {
		e = e.parent
	}
	if ms := now.UnixMilli(); ms > e.lastSeenMS.Load() {
		e.lastSeenMS.Store(ms)
	}
}

// SetStatus records an online/offline report at now.
func (e *Entry) SetStatus(online bool, now time.Time) {
	st := StatusOffline
	if online {
		st = StatusOnline
	}
	e.status.Store(st)
	e.statusMS.Store(now.UnixMilli())
}

// Status returns the last reported status, when it was reported and when the
// terminal's last authenticated message arrived (Unix ms, 0 = never).
func (e *Entry) Status() (status int32, statusMS, lastSeenMS int64) {
	return e.status.Load(), e.statusMS.Load(), e.lastSeenMS.Load()
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
	master   []byte
	max      int
	changeMu sync.Mutex // serializes Change
	mu       sync.RWMutex
	m        map[string]*Entry
}

// ErrFull is returned when TerminalsMax terminals are registered.
var ErrFull = errors.New("registry: terminal bound reached")

// ErrNotFound is returned by Change for an unregistered terminal.
var ErrNotFound = errors.New("registry: no such terminal")

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
		// A fresh sibling each time: one held by a request in flight keeps
		// the key it verified with.
		if t.PrevKeyVersion == 0 {
			e.prev = nil
		} else if e.prev == nil || e.t.PrevKeyVersion != t.PrevKeyVersion {
			e.prev = r.sibling(e, t)
		}
		e.t = t
		e.mu.Unlock()
		return nil
	}
	if len(r.m) >= r.max {
		return ErrFull
	}
	e := &Entry{t: t, signer: terminals.NewSigner(terminals.DeriveKey(r.master, t.TID, t.KeyVersion))}
	if t.PrevKeyVersion != 0 {
		e.prev = r.sibling(e, t)
	}
	r.m[t.TID] = e
	return nil
}

func (r *Registry) sibling(parent *Entry, t Terminal) *Entry {
	return &Entry{parent: parent, signer: terminals.NewSigner(terminals.DeriveKey(r.master, t.TID, t.PrevKeyVersion))}
}

// Change runs a read-modify-write of terminal tid: f computes the new record
// from the current one and commit makes it durable (the engine journals it
// and calls Put). Changes are serialized so that two rotations at once bump
// the version twice instead of both writing the same version.
func (r *Registry) Change(tid string, f func(Terminal) (Terminal, error), commit func(Terminal) error) (Terminal, error) {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	e, ok := r.Get(tid)
	if !ok {
		return Terminal{}, ErrNotFound
	}
	n, err := f(e.Terminal())
	if err != nil {
		return n, err
	}
	if err := n.Validate(); err != nil {
		return n, err
	}
	return n, commit(n)
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
