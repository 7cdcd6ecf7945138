package market

// UsedCodes is the bounded set of consumer codes already used, each kept
// until it expires (after which Verify refuses it as expired anyway).
// Entries are kept in insertion order in a ring, so the encoding is
// deterministic and expiry is a walk from the head. A set full of live
// codes refuses new codes (ErrUsedFull) rather than forget one that could
// then be replayed.
type UsedCodes struct {
	ring []usedEntry
	head int
	n    int
	idx  map[[tagLen]byte]struct{}
}

type usedEntry struct {
	tag [tagLen]byte
	exp int64 // Unix seconds; the entry may go once now >= exp
}

// usedIndexHint is the initial size of the used-code index: the map grows
// with use up to the bound, so an idle shard does not pay for a full one.
const usedIndexHint = 1024

// NewUsedCodes returns an empty set for at most max codes.
func NewUsedCodes(max int) *UsedCodes {
	if max < 1 {
		max = 1
	}
	if max > usedCodesMaxLimit {
		max = usedCodesMaxLimit
	}
	return &UsedCodes{ring: make([]usedEntry, max), idx: make(map[[tagLen]byte]struct{}, min(max, usedIndexHint))}
}

// Len is the number of codes remembered.
func (u *UsedCodes) Len() int { return u.n }

// Seen reports whether the code with this tag was used.
func (u *UsedCodes) Seen(tag [tagLen]byte) bool {
	_, ok := u.idx[tag]
	return ok
}

// purge forgets expired codes from the head. Codes are added in roughly
// issue order; a younger expiry behind an older one waits a little longer,
// which is safe (remembering too long only costs room).
func (u *UsedCodes) purge(now int64) {
	for u.n > 0 && u.ring[u.head].exp <= now {
		delete(u.idx, u.ring[u.head].tag)
		u.ring[u.head] = usedEntry{}
		u.head = (u.head + 1) % len(u.ring)
		u.n--
	}
}

// Room purges expired codes and reports whether one more fits.
func (u *UsedCodes) Room(now int64) bool {
	u.purge(now)
	return u.n < len(u.ring)
}

// Add marks pc used until its expiry. Call it in the step that debits.
func (u *UsedCodes) Add(r *Rules, pc *PayCode, now int64) error {
	if u.Seen(pc.Tag) {
		return ErrCodeReused
	}
	if !u.Room(now) {
		return ErrUsedFull
	}
	u.ring[(u.head+u.n)%len(u.ring)] = usedEntry{tag: pc.Tag, exp: r.Expiry(pc)}
	u.n++
	u.idx[pc.Tag] = struct{}{}
	return nil
}

// AppendBinary appends: version, capacity u32, count u32, then count
// entries oldest first (tag 16 bytes, expiry i64), little endian.
func (u *UsedCodes) AppendBinary(dst []byte) []byte {
	dst = append(dst, stateVersion)
	dst = appendU32(dst, uint32(len(u.ring)))
	dst = appendU32(dst, uint32(u.n))
	for i := 0; i < u.n; i++ {
		e := &u.ring[(u.head+i)%len(u.ring)]
		dst = append(dst, e.tag[:]...)
		dst = appendU64(dst, uint64(e.exp))
	}
	return dst
}

// DecodeBinary replaces u with the set encoded in b. On error u is left
// unchanged.
func (u *UsedCodes) DecodeBinary(b []byte) error {
	r := *newReader(b)
	r.Version("used codes")
	capacity := int(r.U32())
	n := int(r.U32())
	if r.Err == nil && (capacity < 1 || capacity > usedCodesMaxLimit || n > capacity) {
		r.Fail("capacity %d, count %d out of bounds", capacity, n)
	}
	if r.Err == nil && len(b)-r.Off != n*(tagLen+8) {
		r.Fail("count %d does not match %d entry bytes", n, len(b)-r.Off)
	}
	if r.Err != nil {
		return r.Err
	}
	nu := NewUsedCodes(capacity)
	for i := 0; i < n; i++ {
		var e usedEntry
		copy(e.tag[:], r.Take(tagLen))
		e.exp = r.I64()
		if _, dup := nu.idx[e.tag]; dup {
			r.Fail("duplicate code at entry %d", i)
			return r.Err
		}
		nu.ring[i] = e
		nu.idx[e.tag] = struct{}{}
	}
	nu.n = n
	if err := r.Done(); err != nil {
		return err
	}
	*u = *nu
	return nil
}
