package engine

import (
	"time"

	"scenepay/gateway/internal/core"
)

// A card's next online tap that ends its open journey as incomplete: one
// past its maximum journey time the sweep has not reached yet, or one
// still within it that the tap, approved, ends (a new tap-in; a tap-out on
// another route). core.ExpireBeforeTap steps the journey expiry record
// that closes it, and the writer journals it here as its own operator
// entry (type 3, the sweep's form) before it steps the tap and appends the
// tap's request entry. So one request can append two entries: settlement
// gives each entry one row (the entry's records merge into it), and the
// expiry's row pays the maximum fare to the boarding reader's merchant
// while the tap's pays only the tap's own fare to the tap's merchant. The
// journal completes entries in LSN order, so the tap is answered only
// after both are durable; replay applies the two entries in order, and a
// snapshot, taken between two work items, never falls between them.
// Offline uploads do not come here (their taps apply at their own times
// inside the upload's record; docs/journal.md).

// expireDone is the journal completion of a journey expiry before a tap:
// nothing waits for it but the journal's health.
type expireDone struct{ e *Engine }

func (d expireDone) Durable(_ uint64, err error) {
	defer d.e.journaling.Done()
	if err != nil {
		d.e.fail(err)
	}
}

// expireBeforeTap journals the expiry core.ExpireBeforeTap steps for the
// request's tap, if any. It reports false when the journal refused the
// entry: the engine has failed and the request is answered SYSTEM_ERROR.
func (s *shard) expireBeforeTap(w *work, now time.Time) bool {
	if w.in.Op != core.OpTapIn && w.in.Op != core.OpTapOut {
		return true
	}
	if !s.c.ExpireBeforeTap(now, &w.in, &w.out) {
		return true
	}
	w.entry = append(append(w.entry[:0], entryOperator), w.out.Record...)
	s.e.journaling.Add(1) // Done in Durable: expireDone's, or w's below
	if _, err := s.e.j.Append(w.entry, expireDone{s.e}); err != nil {
		// A refused append gets no completion. The shard is ahead of the
		// journal: the gateway stops authorizing and rebuilds from it.
		s.e.fail(err)
		w.s = s
		w.Durable(0, err)
		return false
	}
	return true
}
