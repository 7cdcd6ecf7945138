package engine

// Hooks for the settlement handoff (package handoff), which reads the
// journal on its own goroutine and never touches the request path: it
// decodes entries with EntryRecord, tells the engine to refuse new payments
// with SetHandoffBusy when its backlog passes its bound, and bounds journal
// retention through Config.HandedOff (see retainJournal).

import (
	"fmt"

	"scenepay/terminals"
)

// EntryRecord returns the core record carried by a journal entry payload
// (a terminal request or an operator ledger operation), or nil for an entry
// without one (a terminal registration, a config version, a request that
// was answered without a ledger decision). tid is the terminal of a request
// entry ("" otherwise). rec aliases payload.
func EntryRecord(payload []byte) (tid string, rec []byte, err error) {
	if len(payload) == 0 {
		return "", nil, fmt.Errorf("%w: empty", errEntry)
	}
	switch payload[0] {
	case entryRequest:
		var te txnEntry
		if err := decodeTxnEntry(payload, &te); err != nil {
			return "", nil, err
		}
		return te.tid, te.record, nil
	case entryOperator:
		return "", payload[1:], nil
	case entryTerminal, entryConfig:
		return "", nil, nil
	default:
		return "", nil, fmt.Errorf("%w: unknown type %d", errEntry, payload[0])
	}
}

// SetHandoffBusy switches the refusal of new payments (purchase, tap-in)
// with BUSY on or off. The handoff turns it on while its backlog is past
// its bound, so that an unreachable settlement store cannot make the
// journal grow without limit; reversals and tap-outs still proceed, since
// they finish or undo money already moved.
func (e *Engine) SetHandoffBusy(on bool) { e.handoffBusy.Store(on) }

// handoffRefuses reports whether a request of type typ is refused because
// the handoff backlog is past its bound.
func (e *Engine) handoffRefuses(typ string) bool {
	return e.handoffBusy.Load() && (typ == terminals.TypePurchase || typ == terminals.TypeTapIn)
}

// retainJournal removes journal segments no longer needed after a snapshot
// at lsn, the previous one being at prev: recovery needs everything after
// prev (the older snapshot stays replayable if the newest is corrupt) and
// the handoff everything after what it has handed off. Without a HandedOff
// hook the journal is kept whole.
func (e *Engine) retainJournal(prev uint64) {
	if e.cfg.HandedOff == nil {
		return
	}
	keep := min(prev+1, e.cfg.HandedOff()+1)
	if err := e.j.TruncateBefore(keep); err != nil {
		e.log.Error("journal retention failed", "keep_from_lsn", keep, "err", err)
	}
}
