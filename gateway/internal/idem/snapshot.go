package idem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"scenepay/gateway/internal/bincur"
)

// Snapshot format (inside the gateway snapshot, which carries the CRC):
//
//	uvarint terminals
//	per terminal: uvarint len, tid, uvarint hwm, uvarint low, uvarint entries
//	per entry:    uvarint txn, u64 hash, u8 state, u8 decline, uvarint len, reply
//
// Pending entries are not written: a snapshot is taken while the gateway is
// quiescent, and a pending request is not durable anyway.

// AppendSnapshot appends the store's state to dst. Terminals and entries are
// written in sorted order so that equal states give equal bytes.
func (s *Store) AppendSnapshot(dst []byte) []byte { return s.Freeze().AppendTo(dst) }

// Frozen is the store's state at one instant, cheap to take and encoded
// later: the gateway freezes the store while its writers are parked for a
// snapshot and encodes the copy (sorting, and tens of megabytes of stored
// replies) after they resume, so the pause does not grow with the stored
// replies.
//
// It shares entries and reply bytes with the store. That is safe because a
// done or tombstone entry is never changed in place: Complete changes only
// pending entries, and Begin replaces a declined entry with a new one for a
// corrected retry. Pending entries are left out, as in AppendSnapshot.
type Frozen struct {
	terms []frozenTerm
}

type frozenTerm struct {
	tid      string
	hwm, low uint64
	ents     []frozenEntry
}

type frozenEntry struct {
	id uint64
	e  *entry
}

// Freeze copies the store's terminals and the addresses of their durable
// entries, one stripe lock at a time.
func (s *Store) Freeze() *Frozen {
	f := &Frozen{}
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		for tid, t := range st.terms {
			ft := frozenTerm{tid: tid, hwm: t.hwm, low: t.low, ents: make([]frozenEntry, 0, len(t.entries))}
			for id, e := range t.entries {
				if e.st != pending {
					ft.ents = append(ft.ents, frozenEntry{id, e})
				}
			}
			f.terms = append(f.terms, ft)
		}
		st.mu.Unlock()
	}
	return f
}

// AppendTo appends the frozen state to dst in the snapshot format.
func (f *Frozen) AppendTo(dst []byte) []byte {
	dst = f.appendCount(dst)
	for i := range f.terms {
		dst = f.terms[i].appendTo(dst)
	}
	return dst
}

// WriteTo writes the frozen state to w in the snapshot format, through a
// small buffer (the whole encoding can be tens of megabytes).
func (f *Frozen) WriteTo(w io.Writer) (int64, error) {
	var n int64
	buf := f.appendCount(make([]byte, 0, 64<<10))
	for i := range f.terms {
		buf = f.terms[i].appendTo(buf)
		if len(buf) >= 32<<10 || i == len(f.terms)-1 {
			k, err := w.Write(buf)
			n += int64(k)
			if err != nil {
				return n, err
			}
			buf = buf[:0]
		}
	}
	if len(buf) > 0 { // no terminals: the count alone
		k, err := w.Write(buf)
		return n + int64(k), err
	}
	return n, nil
}

// appendCount sorts the terminals and appends their count.
func (f *Frozen) appendCount(dst []byte) []byte {
	sort.Slice(f.terms, func(i, j int) bool { return f.terms[i].tid < f.terms[j].tid })
	return binary.AppendUvarint(dst, uint64(len(f.terms)))
}

func (t *frozenTerm) appendTo(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(t.tid)))
	dst = append(dst, t.tid...)
	dst = binary.AppendUvarint(dst, t.hwm)
	dst = binary.AppendUvarint(dst, t.low)
	sort.Slice(t.ents, func(i, j int) bool { return t.ents[i].id < t.ents[j].id })
	dst = binary.AppendUvarint(dst, uint64(len(t.ents)))
	for _, fe := range t.ents {
		e := fe.e
		dst = binary.AppendUvarint(dst, fe.id)
		dst = binary.LittleEndian.AppendUint64(dst, e.hash)
		dst = append(dst, byte(e.st))
		if e.decline {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
		dst = binary.AppendUvarint(dst, uint64(len(e.reply)))
		dst = append(dst, e.reply...)
	}
	return dst
}

// ErrSnapshot is returned for a snapshot that does not decode.
var ErrSnapshot = errors.New("idem: bad snapshot")

// RestoreSnapshot loads a snapshot into an empty store and returns the bytes
// that follow it.
func (s *Store) RestoreSnapshot(b []byte) (rest []byte, err error) {
	r := bincur.New(b, ErrSnapshot)
	n := r.Uvarint()
	for i := uint64(0); i < n && r.Err == nil; i++ {
		tid := string(r.Bytes())
		t := &terminal{hwm: r.Uvarint(), low: r.Uvarint(), entries: map[uint64]*entry{}}
		ne := r.Uvarint()
		for k := uint64(0); k < ne && r.Err == nil; k++ {
			id := r.Uvarint()
			h := r.Take(8)
			meta := r.Take(2)
			reply := r.Bytes()
			if r.Err != nil {
				break
			}
			e := &entry{hash: binary.LittleEndian.Uint64(h), st: state(meta[0]), decline: meta[1] == 1}
			if e.st != done && e.st != tombstone {
				return nil, fmt.Errorf("%w: entry state %d", ErrSnapshot, meta[0])
			}
			if len(reply) > 0 {
				e.reply = append([]byte(nil), reply...)
			}
			t.entries[id] = e
		}
		if r.Err != nil {
			break
		}
		st := s.stripe(tid)
		st.mu.Lock()
		if st.terms[tid] != nil {
			st.mu.Unlock()
			return nil, fmt.Errorf("%w: terminal %q twice", ErrSnapshot, tid)
		}
		st.terms[tid] = t
		st.mu.Unlock()
		s.mu.Lock()
		s.count++
		s.mu.Unlock()
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return r.B, nil
}
