package engine

// Journal retention by age. The engine keeps marks (lsn, t): every record
// with an LSN up to lsn was decided at or before t (a mark is taken after a
// snapshot, with the shards' clock, so every record it covers was stepped
// before it). A segment may go for age once a mark older than the
// retention covers it; the mark that bounds the removed records also
// becomes the journal's horizon (journal.TruncateBeforeAt), which
// JournalTotals reads to refuse a period the journal no longer holds
// whole. Marks cost one entry per snapshot; they live in memory, so after
// a restart segments written before it are kept until a mark taken after
// it is old enough (at most one retention longer).

import (
	"sync"
	"time"
)

// retainMarksMax bounds the marks kept. Past it every other old mark is
// dropped: a record then falls under a later mark, whose time is later, so
// the journal is kept longer, never shorter.
const retainMarksMax = 1024

type retainMark struct {
	lsn uint64
	at  time.Time
}

// retainMarks are ordered by lsn (and, with a clock that does not step
// back, by time).
type retainMarks struct {
	mu sync.Mutex
	m  []retainMark
}

func (r *retainMarks) add(lsn uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.m); n > 0 {
		last := r.m[n-1]
		if lsn <= last.lsn {
			return
		}
		if at.Before(last.at) {
			at = last.at // a clock stepped back: keep marks monotonic
		}
	}
	if len(r.m) >= retainMarksMax {
		kept := r.m[:0]
		for i, m := range r.m {
			if i%2 == 1 || i == len(r.m)-1 {
				kept = append(kept, m)
			}
		}
		r.m = kept
	}
	r.m = append(r.m, retainMark{lsn, at})
}

// agedThrough returns the highest LSN all of whose records up to it were
// decided before cutoff (0 if none is known to be).
func (r *retainMarks) agedThrough(cutoff time.Time) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lsn uint64
	for _, m := range r.m {
		if !m.at.Before(cutoff) {
			break
		}
		lsn = m.lsn
	}
	return lsn
}

// bound returns a time at or after which no record up to lsn was decided.
func (r *retainMarks) bound(lsn uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.m {
		if m.lsn >= lsn {
			return m.at, true
		}
	}
	return time.Time{}, false
}

// dropBelow forgets the marks no later truncation can need: those below
// the one that bounds lsn.
func (r *retainMarks) dropBelow(lsn uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for i < len(r.m)-1 && r.m[i].lsn < lsn {
		i++
	}
	r.m = append(r.m[:0], r.m[i:]...)
}
