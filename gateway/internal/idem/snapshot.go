package idem

import (
	"encoding/binary"
	"errors"
	"fmt"
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
func (s *Store) AppendSnapshot(dst []byte) []byte {
	type tv struct {
		tid string
		t   *terminal
	}
	var all []tv
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		for tid, t := range st.terms {
			all = append(all, tv{tid, t})
		}
		st.mu.Unlock()
	}
	sort.Slice(all, func(i, j int) bool { return all[i].tid < all[j].tid })
	dst = binary.AppendUvarint(dst, uint64(len(all)))
	for _, x := range all {
		st := s.stripe(x.tid)
		st.mu.Lock()
		dst = binary.AppendUvarint(dst, uint64(len(x.tid)))
		dst = append(dst, x.tid...)
		dst = binary.AppendUvarint(dst, x.t.hwm)
		dst = binary.AppendUvarint(dst, x.t.low)
		ids := make([]uint64, 0, len(x.t.entries))
		for id, e := range x.t.entries {
			if e.st != pending {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		dst = binary.AppendUvarint(dst, uint64(len(ids)))
		for _, id := range ids {
			e := x.t.entries[id]
			dst = binary.AppendUvarint(dst, id)
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
		st.mu.Unlock()
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
