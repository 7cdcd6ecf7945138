package core

import (
	"math/rand/v2"
	"testing"
)

// The fixed tables against a Go map: random adds, deletes and lookups,
// with a deliberately weak hash so that probe runs collide and wrap, which
// is where backward-shift deletion goes wrong if it does.
func TestPoolAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const capacity = 48
	p := newPool[uint64, int](capacity)
	model := map[uint64]int{}
	weak := func(k uint64) uint64 { return k % 7 * 0x9e3779b9 } // 7 distinct hashes
	for i := 0; i < 200000; i++ {
		k := uint64(rng.IntN(100))
		h := weak(k)
		s := p.find(k, h)
		v, ok := model[k]
		if (s >= 0) != ok || (ok && p.vals[s] != v) {
			t.Fatalf("op %d: find(%d) got slot %d, model has %v %v", i, k, s, v, ok)
		}
		switch {
		case ok && rng.IntN(2) == 0:
			p.del(s)
			delete(model, k)
		case !ok:
			added := p.add(k, h, i)
			if added != (len(model) < capacity) {
				t.Fatalf("op %d: add with %d live got %v", i, len(model), added)
			}
			if added {
				model[k] = i
			}
		}
		if p.len() != len(model) {
			t.Fatalf("op %d: len %d, model %d", i, p.len(), len(model))
		}
	}
}

func TestFIFOEvictsOldest(t *testing.T) {
	f := newFIFO[uint64, uint64](5)
	for k := uint64(1); k <= 12; k++ {
		f.push(k, k%3, k*10) // three hashes: long shared probe runs
	}
	var got []uint64
	f.each(func(k uint64, v *uint64) bool {
		if *v != k*10 {
			t.Errorf("key %d holds %d", k, *v)
		}
		got = append(got, k)
		return true
	})
	want := []uint64{8, 9, 10, 11, 12}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for k := uint64(1); k <= 12; k++ {
		if found := f.get(k, k%3) != nil; found != (k >= 8) {
			t.Errorf("get(%d) found %v", k, found)
		}
	}
}
