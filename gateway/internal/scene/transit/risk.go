package transit

// First-ride risk: an offline reader lets an unknown card ride once (it
// cannot ask the bank); when the upload shows the card has no account, the
// fare is a loss. The bank budgets that loss per route per transit day;
// once spent, readers on the route are told to stop accepting first rides
// on unknown cards until the next transit day.

import (
	"encoding/binary"
	"time"

	"scenepay/terminals"
)

// RiskBook is the first-ride loss per route for one transit day (state
// owned by the caller, one writer, in snapshots). Routes are bounded by
// RoutesMax.
type RiskBook struct {
	Day  int32
	Loss map[string]int64
}

// FirstRideLoss books the fare of an uploaded tap by a card unknown to the
// bank (no account: nothing can be charged or become debt) against the
// route's budget: a tap-in costs the flat fare or, on a distance route,
// the maximum fare (the reader held nothing); a tap-out costs nothing
// more. FlagStopFirstRides is set once the day's loss reaches the budget.
func (e *Engine) FirstRideLoss(b *RiskBook, t *Tap, now time.Time) Decision {
	r := e.routes[t.Route]
	if r == nil {
		return decline(terminals.CodeMalformed, ReasonUnknownRoute)
	}
	if t.Kind != TapIn && t.Kind != TapOut {
		return decline(terminals.CodeMalformed, ReasonBadTap)
	}
	e.rollRisk(b, now)
	d := Decision{Code: terminals.CodeApproved, Reason: ReasonFirstRideLoss, Tap: t.Key()}
	if t.Kind == TapIn {
		d.Loss = r.maxFare
		if _, ok := b.Loss[r.id]; !ok && len(b.Loss) >= RoutesMax {
			// The book is full of routes no longer configured; the loss is
			// still reported in the decision for the ledger.
			return d
		}
		b.Loss[r.id] = satAdd(b.Loss[r.id], d.Loss)
	}
	if b.Loss[r.id] >= r.budget {
		d.Flags |= FlagStopFirstRides
	}
	return d
}

// FirstRidesAllowed reports whether readers on route may accept first
// rides on unknown cards now (the value pushed to them).
func (e *Engine) FirstRidesAllowed(b *RiskBook, routeID string, now time.Time) bool {
	r := e.routes[routeID]
	if r == nil || r.budget == 0 {
		return false
	}
	day, _ := e.TransitDay(now)
	if day != b.Day {
		return true
	}
	return b.Loss[routeID] < r.budget
}

func (e *Engine) rollRisk(b *RiskBook, now time.Time) {
	day, _ := e.TransitDay(now)
	if b.Loss == nil || day > b.Day {
		b.Day, b.Loss = day, map[string]int64{}
	}
}

// AppendBinary appends version 1: version byte, day (u32), count (u32),
// sorted (route, loss i64).
func (b *RiskBook) AppendBinary(dst []byte) []byte {
	dst = append(dst, 1)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(b.Day))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b.Loss)))
	for _, k := range sortedKeys(b.Loss) {
		dst = appendStr(dst, k)
		dst = appendI64(dst, b.Loss[k])
	}
	return dst
}

// DecodeRiskBook reads what AppendBinary wrote into b.
func DecodeRiskBook(data []byte, b *RiskBook) error {
	*b = RiskBook{}
	r := reader{b: data}
	if v := r.u8(); r.err == nil && v != 1 {
		return ErrVersion
	}
	n := RiskBook{Day: int32(r.u32()), Loss: map[string]int64{}}
	cnt := r.u32()
	if r.err == nil && cnt > RoutesMax {
		r.fail("route count")
	}
	prev := ""
	for i := uint32(0); r.err == nil && i < cnt; i++ {
		k := r.str(IDLenMax)
		v := r.i64()
		if r.err == nil && (!validID(k) || (i > 0 && k <= prev) || v < 0) {
			r.fail("route entry")
		}
		n.Loss[k] = v
		prev = k
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return r.err
	}
	*b = n
	return nil
}
