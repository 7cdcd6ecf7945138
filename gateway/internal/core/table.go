package core

// Fixed-capacity hash tables for the per-shard bounded state (reversible
// purchases, top-up refs, live holds). Go maps would do functionally, but a
// map under steady insert/delete churn may grow or rehash at moments we do
// not choose; these tables allocate once in NewShard and never again, which
// is what lets an approved purchase run with zero allocations.
//
// Layout: values live in slots 0..cap-1; an open-addressing index (linear
// probing, backward-shift deletion so that there are no tombstones) maps a
// key's hash to its slot. The index is at least twice the capacity, so the
// load factor stays at or below one half.

// table indexes keys stored in numbered slots. Each index position holds
// the slot and the low 32 bits of the key's hash: probes compare the tag
// before touching the key, and backward shifts find an entry's home
// position from the tag alone, so most probes touch one cache line.
type table[K comparable] struct {
	keys   []K
	hashes []uint64 // by slot: lets remove find the slot's probe run
	idx    []ipos
	mask   uint64
}

// ipos is one index position: slot+1 (0 = empty) and the hash tag.
type ipos struct {
	slot int32
	tag  uint32
}

func newTable[K comparable](capacity int) table[K] {
	n := 2
	for n < 2*capacity {
		n <<= 1
	}
	return table[K]{
		keys:   make([]K, capacity),
		hashes: make([]uint64, capacity),
		idx:    make([]ipos, n),
		mask:   uint64(n - 1), // < 2^32: the tag holds every home position bit
	}
}

// find returns the slot holding k, or -1.
func (t *table[K]) find(k K, h uint64) int32 {
	tag := uint32(h)
	for p := h & t.mask; ; p = (p + 1) & t.mask {
		e := t.idx[p]
		if e.slot == 0 {
			return -1
		}
		if e.tag == tag && t.keys[e.slot-1] == k {
			return e.slot - 1
		}
	}
}

// insert indexes k at slot, which the caller guarantees is free and k absent.
func (t *table[K]) insert(slot int32, k K, h uint64) {
	t.keys[slot] = k
	t.hashes[slot] = h
	p := h & t.mask
	for t.idx[p].slot != 0 {
		p = (p + 1) & t.mask
	}
	t.idx[p] = ipos{slot: slot + 1, tag: uint32(h)}
}

// remove unindexes slot and clears its key (so the table does not pin
// strings of evicted entries).
func (t *table[K]) remove(slot int32) {
	p := t.hashes[slot] & t.mask
	for t.idx[p].slot != slot+1 {
		p = (p + 1) & t.mask
	}
	t.idx[p] = ipos{}
	// Backward shift: pull later entries of the probe run into the hole
	// when the hole lies between their home position and where they sit.
	hole := p
	for j := (p + 1) & t.mask; t.idx[j].slot != 0; j = (j + 1) & t.mask {
		home := uint64(t.idx[j].tag) & t.mask
		if (j-home)&t.mask >= (j-hole)&t.mask {
			t.idx[hole] = t.idx[j]
			t.idx[j] = ipos{}
			hole = j
		}
	}
	var zero K
	t.keys[slot] = zero
	t.hashes[slot] = 0
}

// fifo is a bounded table that evicts its oldest entry when full. Slot
// numbers follow the ring, so iteration from head is insertion order.
type fifo[K comparable, V any] struct {
	t       table[K]
	vals    []V
	head, n int
}

func newFIFO[K comparable, V any](capacity int) fifo[K, V] {
	return fifo[K, V]{t: newTable[K](capacity), vals: make([]V, capacity)}
}

func (f *fifo[K, V]) get(k K, h uint64) *V {
	if s := f.t.find(k, h); s >= 0 {
		return &f.vals[s]
	}
	return nil
}

// push appends k (which must be absent), evicting the oldest entry if full.
func (f *fifo[K, V]) push(k K, h uint64, v V) {
	c := len(f.vals)
	if f.n == c {
		f.t.remove(int32(f.head))
		var zero V
		f.vals[f.head] = zero
		f.head = (f.head + 1) % c
		f.n--
	}
	s := (f.head + f.n) % c
	f.t.insert(int32(s), k, h)
	f.vals[s] = v
	f.n++
}

// each calls fn oldest first until fn returns false.
func (f *fifo[K, V]) each(fn func(k K, v *V) bool) {
	c := len(f.vals)
	for i := 0; i < f.n; i++ {
		s := (f.head + i) % c
		if !fn(f.t.keys[s], &f.vals[s]) {
			return
		}
	}
}

// pool is a bounded table without eviction: add fails when full.
type pool[K comparable, V any] struct {
	t    table[K]
	vals []V
	live []bool
	free []int32 // stack of free slots
}

func newPool[K comparable, V any](capacity int) pool[K, V] {
	p := pool[K, V]{t: newTable[K](capacity), vals: make([]V, capacity), live: make([]bool, capacity), free: make([]int32, capacity)}
	for i := range p.free {
		p.free[i] = int32(capacity - 1 - i) // pop hands out 0, 1, 2, ...
	}
	return p
}

func (p *pool[K, V]) len() int { return len(p.vals) - len(p.free) }

func (p *pool[K, V]) find(k K, h uint64) int32 { return p.t.find(k, h) }

// add stores k (which must be absent); false when the pool is full.
func (p *pool[K, V]) add(k K, h uint64, v V) bool {
	if len(p.free) == 0 {
		return false
	}
	s := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.t.insert(s, k, h)
	p.vals[s] = v
	p.live[s] = true
	return true
}

func (p *pool[K, V]) del(s int32) {
	p.t.remove(s)
	var zero V
	p.vals[s] = zero
	p.live[s] = false
	p.free = append(p.free, s) // within capacity: never allocates
}

// each calls fn for live entries in slot order until fn returns false.
func (p *pool[K, V]) each(fn func(k K, v *V) bool) {
	for s := range p.vals {
		if p.live[s] && !fn(p.t.keys[s], &p.vals[s]) {
			return
		}
	}
}
