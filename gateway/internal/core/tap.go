package core

// Transit taps in the shard step: the fare rules (scene/transit) decide on
// a copy of the card's state with the account's available balance, the
// ledger checks of the core (blocked, e-CNY limits) run in the same step,
// and the record carries the decision's amounts and the card state after
// it, so that replay rebuilds both without consulting fares again.

import (
	"fmt"
	"time"

	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// TapAmounts are a tap decision's ledger amounts (fen) as journaled. The
// effect applies them in this order: PrevCapture (an open journey left
// without tap-out: its hold is captured in full), Capture and Release (the
// journey this tap-out closes), Charge (a flat fare, a debit) and Hold
// (the maximum fare held for the journey that starts).
type TapAmounts struct {
	Fare        int64 // payable fare before caps, for receipts; no ledger effect
	PrevCapture int64
	Capture     int64
	Release     int64
	Charge      int64
	Hold        int64
	Reason      uint8  // transit.Reason
	Flags       uint16 // transit.Flags
}

// decideTap decides a tap-in or tap-out. An open journey the tap closes as
// incomplete (PrevCapture, or a tap-out's Capture of a journey past its
// maximum journey time or on another route) is captured in this record,
// for the tap's merchant: the gateway closes such a journey with its own
// record first (ExpireBeforeTap, sweep.go: a journey already due, or one
// this tap, approved, would close), so that it is paid to its boarding
// reader's merchant, and the tap then finds no journey to close. The lazy
// close here stays the safety net of a caller that does not. Precedence:
// malformed route or stop (refusal), unknown account, blocked (tap-in
// only: a tap-out closes a journey whose money is already held, as a
// capture of a blocked account proceeds), then the fare rules (in debt,
// funds, unknown route or stop),
// then the e-CNY limits (tap-in only, on everything it debits or holds:
// the journey's later capture is within the hold that passed them).
func (s *Shard) decideTap(in *Input, r *Record) (terminals.Code, bool) {
	if in.Route == "" || len(in.Route) > transit.IDLenMax || len(in.Stop) > transit.IDLenMax {
		return terminals.CodeMalformed, false
	}
	_, a := s.lookup(in.Account)
	if a == nil {
		return terminals.CodeUnknownInstrument, true
	}
	if a.blocked && in.Op == OpTapIn {
		return terminals.CodeInstrumentBlocked, true
	}
	c := &s.card
	if a.card != nil {
		*c = *a.card
	} else {
		*c = transit.Card{}
	}
	kind := transit.TapIn
	if in.Op == OpTapOut {
		kind = transit.TapOut
	}
	// Reader and Merchant go into a journey the tap opens: a sweep that
	// closes it pays the maximum fare to that merchant.
	t := transit.Tap{Kind: kind, Route: in.Route, Stop: in.Stop, At: time.Unix(0, r.Time), Reader: in.TID, Merchant: in.Merchant}
	d := s.cfg.Transit.Tap(c, &t, a.available())
	if d.Code != terminals.CodeApproved {
		// Decisions (funds, in debt) are journaled like a purchase's; a
		// refusal (unknown route or stop) is not: the terminal's config
		// is wrong and a corrected retry must not find its id burnt.
		return d.Code, d.Code.Class() == terminals.ClassDecline
	}
	if in.Op == OpTapIn {
		if code := s.limitCheck(a, d.PrevCapture+d.Charge+d.Hold, r.Time, true); code != terminals.CodeApproved {
			return code, true
		}
	}
	r.Tap = TapAmounts{Fare: d.Fare, PrevCapture: d.PrevCapture, Capture: d.Capture, Release: d.Release,
		Charge: d.Charge, Hold: d.Hold, Reason: uint8(d.Reason), Flags: uint16(d.Flags)}
	r.Amount = d.Charge + d.Hold + d.Capture
	s.cardBuf = c.AppendState(s.cardBuf[:0])
	r.Card = string(s.cardBuf) // the one allocation of an approved tap
	return terminals.CodeApproved, true
}

// effectTap applies an approved tap record to a: the amounts move money
// between balance and held, and the card takes the recorded state. It
// checks that the amounts agree with the card's journey before and after
// (what was held is exactly what is captured and released, and the new
// journey holds exactly Hold), so a record that does not fit the card is
// corruption, not a silent repair.
func (s *Shard) effectTap(r *Record, a *account) error {
	t := &r.Tap
	for _, v := range [...]int64{t.Fare, t.PrevCapture, t.Capture, t.Release, t.Charge, t.Hold} {
		if v < 0 || v > transit.FareMax {
			return fmt.Errorf("tap amount %d out of 0..%d", v, transit.FareMax)
		}
	}
	if r.Amount != t.Charge+t.Hold+t.Capture {
		return fmt.Errorf("tap amount %d, parts sum to %d", r.Amount, t.Charge+t.Hold+t.Capture)
	}
	c := &s.card
	if a.card != nil {
		*c = *a.card
	} else {
		*c = transit.Card{}
	}
	oldHeld := journeyHeld(c)
	if err := c.SetStateString(r.Card); err != nil {
		return fmt.Errorf("tap card state: %v", err)
	}
	closed := t.PrevCapture + t.Capture + t.Release
	switch {
	case closed != 0 && closed != oldHeld:
		return fmt.Errorf("tap closes %d fen of a journey holding %d", closed, oldHeld)
	case closed == 0 && oldHeld != 0 && t.Hold != 0:
		return fmt.Errorf("tap holds %d fen while a journey still holds %d", t.Hold, oldHeld)
	case journeyHeld(c) != oldHeld-closed+t.Hold:
		return fmt.Errorf("card journey holds %d fen, the amounts give %d", journeyHeld(c), oldHeld-closed+t.Hold)
	}
	return s.applyCardMoney(r, a, c, closed, "tap")
}

// applyCardMoney applies the money of an approved tap or upload record
// (what = "tap" or "upload", for the errors) whose amounts were checked
// against the card: the spent parts leave the balance, the journey hold
// changes by Hold less what was closed, the floor still holds, the e-CNY
// day and year counters count the spending, and the card takes state c.
// Every amount is bounded by the caller (FareMax, uploadAmountMax).
func (s *Shard) applyCardMoney(r *Record, a *account, c *transit.Card, closed int64, what string) error {
	t := &r.Tap
	spent := t.PrevCapture + t.Capture + t.Charge // each bounded by the caller: no overflow
	nb, ok := sub64(a.balance, spent)
	if !ok {
		return fmt.Errorf("%s of %d fen overflows balance %d", what, spent, a.balance)
	}
	nh, ok := add64(a.held, t.Hold-closed)
	if !ok {
		return fmt.Errorf("%s hold of %d fen overflows held %d", what, t.Hold, a.held)
	}
	if free, ok := sub64(nb, nh); !ok || free < a.floor {
		return fmt.Errorf("%s leaves balance %d - held %d below floor %d", what, nb, nh, a.floor)
	}
	if spent > 0 {
		c, ok := s.spend(a, r.Time, spent)
		if !ok {
			return fmt.Errorf("%s of %d fen overflows the day or year counter", what, spent)
		}
		a.count(c)
	}
	a.balance, a.held = nb, nh
	if a.card == nil {
		a.card = new(transit.Card)
	}
	*a.card = *c
	return nil
}

func journeyHeld(c *transit.Card) int64 {
	if c == nil || !c.Open {
		return 0
	}
	return c.Journey.Held
}

// Card returns the transit card state of an account (false if the account
// does not exist or never tapped).
func (s *Shard) Card(key string) (transit.Card, bool) {
	_, a := s.lookup(key)
	if a == nil || a.card == nil {
		return transit.Card{}, false
	}
	return *a.card, true
}
