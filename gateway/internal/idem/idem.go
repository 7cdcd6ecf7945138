// Package idem owns the per-terminal idempotency and replay state of the
// gateway: for every terminal the highest txn id seen and the stored replies
// of its last Window txn ids, so that a duplicate (QoS 1 redelivery, terminal
// retry, offline re-upload) gets the byte-identical reply, a changed request
// under a used id is refused, and a txn id older than the window is refused as
// a replay. It also keeps the tombstones of reversals that arrived before
// their original, so that the late original is refused.
//
// It is pure in-memory state with striped locks; durability comes from the
// journal: every stored reply is journaled by the gateway, and Restore
// rebuilds the store on restart. Nothing here does I/O.
package idem

import (
	"errors"
	"hash/maphash"
	"sync"

	"scenepay/terminals"
)

// Config bounds the store.
type Config struct {
	// Window is how many txn ids below a terminal's highest one are still
	// answered from the store; older ids are refused as replays.
	Window uint64
	// TerminalsMax bounds the number of terminals tracked.
	TerminalsMax int
}

// DefaultConfig: window 1024 txn ids, 100k terminals. Worst-case memory is
// TerminalsMax x Window x (reply size ~300 B); a town fleet of a few thousand
// terminals keeps well under a gigabyte.
func DefaultConfig() Config { return Config{Window: 1024, TerminalsMax: 100_000} }

// Verdict is the answer of Begin.
type Verdict uint8

const (
	// Admitted: not seen; a pending entry was made and dispatch was called.
	Admitted Verdict = iota + 1
	// Duplicate: the same request was answered; Reply holds the stored bytes.
	Duplicate
	// Waiting: the same request is being processed; the reply will be sent
	// again for this copy when it completes.
	Waiting
	// Conflict: the id was used with different content and the first result stands.
	Conflict
	// TooOld: the id is older than the window.
	TooOld
	// Reversed: a reversal for this id came first; the request has no effect.
	Reversed
	// Busy: dispatch refused the work (a bound was reached); nothing was kept.
	Busy
	// Full: too many terminals tracked.
	Full
	// Stale: not a duplicate, and its timestamp is outside the allowed skew.
	Stale
)

type state uint8

const (
	pending state = iota + 1
	done
	tombstone
)

// entry is one txn id's state. Once done or a tombstone it is never changed
// in place (a frozen store shares it, snapshot.go): only pending entries are
// written to, and a corrected retry of a decline gets a new entry.
type entry struct {
	hash    uint64
	st      state
	decline bool   // the stored result was a decline: a corrected retry may reuse the id
	reply   []byte // sealed reply bytes (done)
	waiters int    // duplicates waiting on a pending entry
}

type terminal struct {
	hwm     uint64 // highest txn id admitted
	low     uint64 // no entry below this txn id remains
	entries map[uint64]*entry
}

type stripe struct {
	mu    sync.Mutex
	terms map[string]*terminal
}

const stripes = 64

// Store is the idempotency store. Safe for concurrent use.
type Store struct {
	cfg     Config
	seed    maphash.Seed
	stripes [stripes]stripe
	mu      sync.Mutex // guards count
	count   int
}

// New returns an empty store.
func New(cfg Config) *Store {
	if cfg.Window == 0 {
		cfg.Window = DefaultConfig().Window
	}
	if cfg.TerminalsMax <= 0 {
		cfg.TerminalsMax = DefaultConfig().TerminalsMax
	}
	s := &Store{cfg: cfg, seed: maphash.MakeSeed()}
	for i := range s.stripes {
		s.stripes[i].terms = make(map[string]*terminal)
	}
	return s
}

func (s *Store) stripe(tid string) *stripe {
	return &s.stripes[maphash.String(s.seed, tid)%stripes]
}

func (s *Store) terminal(st *stripe, tid string, create bool) *terminal {
	t := st.terms[tid]
	if t == nil && create {
		s.mu.Lock()
		if s.count >= s.cfg.TerminalsMax {
			s.mu.Unlock()
			return nil
		}
		s.count++
		s.mu.Unlock()
		t = &terminal{entries: make(map[uint64]*entry)}
		st.terms[tid] = t
	}
	return t
}

func (s *Store) tooOld(t *terminal, txn uint64) bool {
	return t.hwm > s.cfg.Window && txn <= t.hwm-s.cfg.Window
}

// advance raises the terminal's high-water mark and evicts entries that fell
// out of the window.
func (s *Store) advance(t *terminal, txn uint64) {
	if txn <= t.hwm {
		return
	}
	t.hwm = txn
	if t.hwm <= s.cfg.Window {
		return
	}
	floor := t.hwm - s.cfg.Window // ids <= floor are out
	if floor < t.low {
		return
	}
	if floor-t.low > uint64(len(t.entries)) {
		for id := range t.entries {
			if id <= floor {
				delete(t.entries, id)
			}
		}
	} else {
		for id := t.low; id <= floor; id++ {
			delete(t.entries, id)
		}
	}
	t.low = floor + 1
}

// Request describes one request to Begin.
type Request struct {
	TID  string
	Txn  uint64
	Hash uint64
	// Reversal marks a reversal of Orig. If Orig was never seen (and is
	// inside the window), a tombstone is placed for it so that the late
	// original is refused; Begin reports that in Result.Tombstoned.
	Reversal bool
	Orig     uint64
	// Stale marks a request whose timestamp is outside the allowed skew. A
	// stale duplicate still gets its stored reply (a terminal that re-sends
	// the exact bytes much later is answered); a stale new request is refused.
	Stale bool
}

// Result is what Begin decided.
type Result struct {
	Verdict    Verdict
	Reply      []byte // Duplicate: the stored reply (do not modify)
	Tombstoned bool   // Admitted reversal: a tombstone was placed for Orig
}

// Begin admits a request. For Admitted, dispatch is called under the terminal's
// lock, so that two requests of one terminal reach their shard queues in the
// order they were admitted; if dispatch returns false (queue full) the
// admission is undone and Busy returned.
func (s *Store) Begin(r Request, dispatch func(tombstoned bool) bool) Result {
	st := s.stripe(r.TID)
	st.mu.Lock()
	defer st.mu.Unlock()
	t := s.terminal(st, r.TID, true)
	if t == nil {
		return Result{Verdict: Full}
	}
	if s.tooOld(t, r.Txn) {
		return Result{Verdict: TooOld}
	}
	e := t.entries[r.Txn]
	var prev *entry
	if e != nil {
		switch e.st {
		case tombstone:
			return Result{Verdict: Reversed}
		case pending:
			if e.hash == r.Hash {
				e.waiters++
				return Result{Verdict: Waiting}
			}
			return Result{Verdict: Conflict}
		case done:
			if e.hash == r.Hash {
				return Result{Verdict: Duplicate, Reply: e.reply}
			}
			if !e.decline {
				return Result{Verdict: Conflict}
			}
			prev = e // a corrected retry of a declined request
		}
	}
	if r.Stale {
		return Result{Verdict: Stale}
	}
	tomb := false
	if r.Reversal && r.Orig < r.Txn && !s.tooOld(t, r.Orig) && t.entries[r.Orig] == nil {
		t.entries[r.Orig] = &entry{st: tombstone}
		tomb = true
	}
	ne := &entry{hash: r.Hash, st: pending}
	t.entries[r.Txn] = ne
	if !dispatch(tomb) {
		if prev != nil {
			t.entries[r.Txn] = prev
		} else {
			delete(t.entries, r.Txn)
		}
		if tomb {
			delete(t.entries, r.Orig)
		}
		return Result{Verdict: Busy}
	}
	s.advance(t, r.Txn)
	return Result{Verdict: Admitted, Tombstoned: tomb}
}

// Complete stores the sealed reply of an admitted request, once its journal
// record is durable, and returns how many duplicate copies were waiting for it
// (the caller sends the reply that many more times).
func (s *Store) Complete(tid string, txn, hash uint64, class terminals.Class, reply []byte) (waiters int) {
	st := s.stripe(tid)
	st.mu.Lock()
	defer st.mu.Unlock()
	t := st.terms[tid]
	if t == nil {
		return 0
	}
	e := t.entries[txn]
	if e == nil || e.st != pending || e.hash != hash {
		// Evicted by a window jump while pending; nothing to store.
		return 0
	}
	e.st = done
	e.decline = class == terminals.ClassDecline
	e.reply = reply
	w := e.waiters
	e.waiters = 0
	return w
}

// Restore replays one journaled outcome into the store (startup). A later
// record for the same id replaces an earlier one (corrected retry of a decline).
func (s *Store) Restore(tid string, txn, hash uint64, class terminals.Class, reply []byte, tombstoneOrig uint64) error {
	st := s.stripe(tid)
	st.mu.Lock()
	defer st.mu.Unlock()
	t := s.terminal(st, tid, true)
	if t == nil {
		return errors.New("idem: terminal bound reached during restore")
	}
	if tombstoneOrig != 0 && t.entries[tombstoneOrig] == nil && !s.tooOld(t, tombstoneOrig) {
		t.entries[tombstoneOrig] = &entry{st: tombstone}
	}
	t.entries[txn] = &entry{hash: hash, st: done, decline: class == terminals.ClassDecline, reply: reply}
	s.advance(t, txn)
	return nil
}

// Lookup reports the state of (tid, txn) for tests and audits: found, and the stored reply.
func (s *Store) Lookup(tid string, txn uint64) (reply []byte, found bool) {
	st := s.stripe(tid)
	st.mu.Lock()
	defer st.mu.Unlock()
	t := st.terms[tid]
	if t == nil {
		return nil, false
	}
	e := t.entries[txn]
	if e == nil {
		return nil, false
	}
	return e.reply, true
}

// HighWater returns the highest admitted txn id of tid.
func (s *Store) HighWater(tid string) uint64 {
	st := s.stripe(tid)
	st.mu.Lock()
	defer st.mu.Unlock()
	if t := st.terms[tid]; t != nil {
		return t.hwm
	}
	return 0
}
