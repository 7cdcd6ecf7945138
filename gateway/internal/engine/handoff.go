package engine

// Hooks for the settlement handoff (package handoff), which reads the
// journal on its own goroutine and never touches the request path: it
// decodes entries with EntryRecord, tells the engine to refuse new payments
// with SetHandoffBusy when its backlog passes its bound, and bounds journal
// retention through Config.HandedOff (see retainJournal).

import (
	"fmt"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/scene/hospital"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// EntryRecord returns the core record carried by a journal entry payload
// (a terminal request or an operator ledger operation), or nil for an entry
// without one (a terminal registration, a config version, a request that
// was answered without a ledger decision) or with nothing to settle (a
// card's profile change, core.OpSetProfile). tid is the terminal of a request
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
		if len(te.record) == 0 {
			// Answered without a ledger decision (a reversal of an unseen
			// original, a refusal by the core): the entry's record field
			// is present but empty, and there is nothing to settle.
			return te.tid, nil, nil
		}
		return te.tid, te.record, nil
	case entryOperator:
		if len(payload) > 2 && core.Op(payload[2]) == core.OpSetProfile {
			// A card's concession profile moves no money: nothing to
			// settle, so settlement never has to know the op.
			return "", nil, nil
		}
		return "", payload[1:], nil
	case entryHospital:
		// A hospital entry may hold several core records (EntryRecords);
		// this one-record view gives the first money-moving one.
		tid, recs, err := hospitalRecords(payload)
		if err != nil || len(recs) == 0 {
			return tid, nil, err
		}
		for _, r := range recs {
			if len(r) > 1 && (core.Op(r[1]) == core.OpCapture || core.Op(r[1]) == core.OpPurchase) {
				return tid, r, nil
			}
		}
		return tid, recs[0], nil
	case entryStall:
		return stallEntryRecord(payload)
	case entryTerminal, entryConfig, entryDeny:
		return "", nil, nil
	default:
		return "", nil, fmt.Errorf("%w: unknown type %d", errEntry, payload[0])
	}
}

// EntryRecords calls fn for every core record of a journal entry payload,
// in order: none, one, or (a hospital entry, type 5) several. Settlement
// must read hospital entries through it: a capture spanning two deposit
// holds has two capture records in one entry.
func EntryRecords(payload []byte, fn func(tid string, rec []byte) error) error {
	if len(payload) > 0 && payload[0] == entryHospital {
		tid, recs, err := hospitalRecords(payload)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(tid, r); err != nil {
				return err
			}
		}
		return nil
	}
	tid, rec, err := EntryRecord(payload)
	if err != nil || rec == nil {
		return err
	}
	return fn(tid, rec)
}

// SetHandoffBusy switches the refusal of new payments (purchase, tap-in, qr_pay)
// with BUSY on or off. The handoff turns it on while its backlog is past
// its bound, so that an unreachable settlement store cannot make the
// journal grow without limit; reversals, refunds and tap-outs still
// proceed, since they finish or undo money already moved.
func (e *Engine) SetHandoffBusy(on bool) { e.handoffBusy.Store(on) }

// handoffRefuses reports whether a request of type typ is refused because
// the handoff backlog is past its bound.
func (e *Engine) handoffRefuses(typ string) bool {
	return e.handoffBusy.Load() && (typ == terminals.TypePurchase || typ == terminals.TypeTapIn || typ == terminals.TypeQRPay)
}

// retainJournal removes journal segments no longer needed after a snapshot
// at lsn, the previous one being at prev: recovery needs everything after
// prev (the older snapshot stays replayable if the newest is corrupt), the
// handoff everything after what it has handed off, and reconciliation
// (JournalTotals) every record younger than JournalRetain. Without a
// HandedOff hook the journal is kept whole.
func (e *Engine) retainJournal(prev uint64) {
	if e.cfg.HandedOff == nil {
		return
	}
	now := e.cfg.Clock()
	// Every record up to the snapshot's LSN was decided before now.
	e.marks.add(e.lastSnp.Load(), now)
	keep := min(prev+1, e.cfg.HandedOff()+1)
	if e.cfg.JournalRetain > 0 {
		keep = min(keep, e.marks.agedThrough(now.Add(-e.cfg.JournalRetain))+1)
	}
	if keep <= 1 {
		return
	}
	at, ok := e.marks.bound(keep - 1)
	if !ok {
		return // cannot happen: the snapshot's mark bounds every kept-from LSN
	}
	if err := e.j.TruncateBeforeAt(keep, at); err != nil {
		e.log.Error("journal retention failed", "keep_from_lsn", keep, "err", err)
		return
	}
	e.marks.dropBelow(keep - 1)
}

// EntrySplit returns the insurance split recorded in a hospital entry
// (type 5): the fen the pooled fund and the personal account pay, with ok
// false for any other entry or a hospital entry without a split. The
// handoff adds them as insurance legs of the entry's row.
func EntrySplit(payload []byte) (pooled, personal int64, ok bool, err error) {
	if len(payload) == 0 || payload[0] != entryHospital {
		return 0, 0, false, nil
	}
	he, err := decodeHospitalEntry(payload)
	if err != nil || he.legs == nil {
		return 0, 0, false, err
	}
	if he.legs[0] > uint64(terminals.MaxAmount) || he.legs[1] > uint64(terminals.MaxAmount) {
		return 0, 0, false, fmt.Errorf("%w: insurance split beyond the protocol maximum", errEntry)
	}
	return int64(he.legs[0]), int64(he.legs[1]), true, nil
}

// SettlementPayees names, from the current configuration, who receives
// what the journal records do not name: the insurance payers of the
// hospital rules (the last "hospital" document, else Config.Hospital or
// the defaults) and the transit debt payee (the last "transit" document's
// debt_payee_merchant, else transit.DefaultDebtPayee).
func (e *Engine) SettlementPayees() handoff.Payees {
	hc := e.hospitalRules().Config()
	if d, ok := e.Config("hospital"); ok {
		if c, err := hospital.DecodeConfig(d.Body); err == nil {
			hc = c
		}
	}
	tc := transit.DefaultConfig()
	if d, ok := e.Config("transit"); ok {
		if c, err := transit.DecodeConfig(d.Body); err == nil {
			tc = c
		}
	}
	return handoff.Payees{InsPooled: hc.PooledFundPayer, InsPersonal: hc.PersonalAccountPayer, Debt: tc.DebtPayeeMerchant()}
}

// HandoffExtras is the handoff's Config.Extras for this engine.
func (e *Engine) HandoffExtras() handoff.Extras {
	return handoff.Extras{Split: EntrySplit, Payees: e.SettlementPayees}
}
