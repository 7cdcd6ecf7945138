package core

// Incomplete journeys closed without the card: DOMAIN.md says a tap-in
// with no tap-out within the route's maximum journey time is charged the
// maximum fare. The fare rules close such a journey lazily at the card's
// next tap; a card that never comes back would keep its maximum fare held
// forever and the bus company would never be paid. So the gateway sweeps:
// on a timer, each shard's writer asks DueJourneys for cards whose journey
// is past its maximum journey time as of now and steps OpJourneyExpire for
// each, which journals the capture like any other decision.
//
// Design. OpJourneyExpire is a version 2 (tap) record: Capture is the
// whole hold (transit.Engine.Expire: the maximum fare stands, a
// debt-backed part stays debt), Reason incomplete, the card state after
// (journey closed, counted on its boarding day) in Card, and TID and
// Merchant name the boarding reader and its merchant from the journey
// (transit.Journey.Reader/Merchant), so settlement pays the maximum fare
// to the bus company that carried the rider. It is no terminal's request:
// Txn is the record's own sequence number (settlement rows need a non-zero
// txn id; a row's key is the journal LSN), Orig and Hash are 0. Apply runs the same effect as a tap (effectTap)
// and also checks that the card had an open journey and has none after,
// and that the record moves nothing but the capture. The effect is what
// the lazy path would have done (capture the hold in full, count it on the
// journey's day), so the lazy path finds nothing left afterwards.
//
// The card's next tap. ExpireBeforeTap steps the same record for the card
// of an online tap, before the tap itself, when its journey is due at the
// tap's time, and also when it is not but the tap would close it as
// incomplete (a new tap-in, a tap-out on another route: the fare rules
// charge the whole hold then too), so that the maximum fare is not
// captured inside the tap's record, which names the new tap's reader and
// merchant (another bus company, possibly). The gateway journals it as its
// own entry ahead of the tap's.
//
// Finding due journeys. The shard keeps an index of the accounts whose
// card has an open journey (openSet: a slice and a position map,
// maintained by every effect that can open or close a journey, rebuilt by
// Restore). DueJourneys scans at most scanMax entries of it per call from
// a rotating cursor, so one sweep pass is bounded work for the writer; a
// large index is covered over several passes. The index is derived state:
// it is not in snapshots, and which accounts a pass looks at has no effect
// on replay, since every expiry is a journaled decision.

import (
	"fmt"
	"time"

	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// openSet is the set of account indexes whose card has an open journey.
type openSet struct {
	idx  []int32
	pos  map[int32]int32
	next int // DueJourneys' cursor into idx
}

func (o *openSet) set(ai int32, open bool) {
	if o.pos == nil {
		o.pos = make(map[int32]int32)
	}
	p, in := o.pos[ai]
	switch {
	case open && !in:
		o.pos[ai] = int32(len(o.idx))
		o.idx = append(o.idx, ai)
	case !open && in:
		last := o.idx[len(o.idx)-1]
		o.idx[p] = last
		o.pos[last] = p
		o.idx = o.idx[:len(o.idx)-1]
		delete(o.pos, ai)
	}
}

// trackJourney keeps account ai in the open-journey index in step with its card.
func (s *Shard) trackJourney(ai int32, a *account) {
	if ai >= 0 && a != nil {
		s.open.set(ai, a.card != nil && a.card.Open)
	}
}

// OpenJourneys is the number of cards of the shard with an open journey.
func (s *Shard) OpenJourneys() int { return len(s.open.idx) }

// DueJourneys appends to dst the account keys whose open journey is past
// its maximum journey time at now under the current fare policy, looking
// at no more than scanMax cards of the open-journey index (from where the
// previous call stopped) and appending at most dueMax keys. The caller
// steps OpJourneyExpire for each. It changes nothing but the cursor.
func (s *Shard) DueJourneys(now time.Time, scanMax, dueMax int, dst []string) []string {
	o := &s.open
	n := len(o.idx)
	if n == 0 || scanMax <= 0 || dueMax <= 0 {
		return dst
	}
	if o.next >= n {
		o.next = 0
	}
	found := 0
	k := 0
	for ; k < min(scanMax, n) && found < dueMax; k++ {
		a := &s.accounts[o.idx[(o.next+k)%n]]
		if a.card == nil || !a.card.Open {
			continue // unreachable: the index follows the cards
		}
		if at, ok := s.cfg.Transit.ExpiresAt(a.card); ok && !now.Before(at) {
			dst = append(dst, a.key)
			found++
		}
	}
	o.next = (o.next + k) % n
	return dst
}

// decideJourneyExpire decides OpJourneyExpire for in.Account at the
// record's time. Not journaled: an unknown account (CodeUnknownInstrument),
// and a card without a journey or whose journey is not due yet
// (CodeApproved: nothing to do, the lazy path or an earlier sweep was
// first), unless ExpireBeforeTap steps it for a tap that would close the
// journey (s.closing).
func (s *Shard) decideJourneyExpire(in *Input, r *Record) (terminals.Code, bool) {
	_, a := s.lookup(in.Account)
	if a == nil {
		return terminals.CodeUnknownInstrument, false
	}
	if a.card == nil || !a.card.Open {
		return terminals.CodeApproved, false
	}
	c := &s.card
	*c = *a.card
	j := c.Journey // Expire clears it
	at := time.Unix(0, r.Time)
	if s.closing {
		// ExpireBeforeTap: the tap would close the journey before its
		// maximum journey time as incomplete. The fare rules charge it as
		// an expired one (the whole hold), so expire it as of that time.
		if due, ok := s.cfg.Transit.ExpiresAt(c); ok && at.Before(due) {
			at = due
		}
	}
	d := s.cfg.Transit.Expire(c, at)
	if d.Code != terminals.CodeApproved || d.Reason != transit.ReasonIncomplete {
		return terminals.CodeApproved, false
	}
	r.TID, r.Merchant, r.Route, r.Stop = j.Reader, j.Merchant, j.Route, j.Stop
	r.Txn, r.Orig, r.Hash, r.Ref = s.seq+1, 0, 0, "" // Txn: the record's own Seq (Step gives it s.seq+1)
	r.Tap = TapAmounts{Fare: d.Fare, Capture: d.Capture, Reason: uint8(d.Reason), Flags: uint16(d.Flags)}
	r.Amount = d.Capture
	s.cardBuf = c.AppendState(s.cardBuf[:0])
	r.Card = string(s.cardBuf)
	return terminals.CodeApproved, true
}

// effectJourneyExpire applies an approved OpJourneyExpire record: only a
// capture of the open journey's whole hold, and the card's journey closed.
func (s *Shard) effectJourneyExpire(r *Record, a *account) error {
	t := &r.Tap
	if r.Txn != r.Seq || r.Orig != 0 {
		return fmt.Errorf("journey expiry with txn %d orig %d, want txn = seq %d and no orig", r.Txn, r.Orig, r.Seq)
	}
	if t.PrevCapture != 0 || t.Release != 0 || t.Charge != 0 || t.Hold != 0 {
		return fmt.Errorf("journey expiry moves more than a capture: %+v", *t)
	}
	if a.card == nil || !a.card.Open {
		return fmt.Errorf("journey expiry of account %q without an open journey", r.Account)
	}
	if err := s.effectTap(r, a); err != nil {
		return err
	}
	if a.card.Open {
		return fmt.Errorf("journey expiry of account %q leaves a journey open", r.Account)
	}
	return nil
}

// ExpireBeforeTap closes, with its own OpJourneyExpire record, the open
// journey of the card of an online tap (OpTapIn, OpTapOut) that the tap
// would otherwise close inside its own record, before the caller steps
// the tap. That record names the new tap's reader and merchant, and
// settlement, which pays a record's money to the merchant the record
// names, would pay the old journey's maximum fare to that merchant,
// possibly another bus company. With the journey closed first, it settles
// to its boarding reader's merchant and the tap's record moves only the
// tap's own money. Two cases:
//
//   - the journey is past its maximum journey time at now: closed as the
//     sweep would have, whatever the tap's outcome and merchants (a
//     declined or refused tap still finds it closed), so the record
//     depends only on the card's state and now, like a sweep pass;
//   - it is not, but the tap is one the fare rules approve and that ends
//     the journey as incomplete (a tap-in while the journey is open: the
//     rider boards again without having tapped out; a tap-out on another
//     distance route): closed with the same record, since the rules charge
//     it the same (the whole hold, counted on the card's day). Whether the
//     tap does so is decided by a dry run of the tap (decide, which changes
//     nothing), so a tap that is declined, refused, or closes nothing
//     (a tap-out on the journey's route, or on a flat route; a late
//     tap-in of an earlier day) leaves the journey as it is. After the
//     close the same tap is approved again with the same amounts: the
//     available balance is unchanged (balance and held both lose the
//     hold), the card's day spend already counts the journey, and the
//     e-CNY limits see the same day and year totals with a smaller single
//     amount.
//
// Only who is paid changes: the money moved is what the tap's own record
// would have moved. A tap-out's reply amount, which is its record's, is
// then 0 (the tap finds no journey), as after the sweep.
//
// It reports whether it stepped a record into out (out.Record, out.Seq
// as Step gives them); the caller journals that record as its own entry,
// ahead of the tap's, then steps the tap. Any other input, an unknown
// account, or a card without an open journey steps nothing.
func (s *Shard) ExpireBeforeTap(now time.Time, in *Input, out *Output) bool {
	if in.Op != OpTapIn && in.Op != OpTapOut {
		return false
	}
	_, a := s.lookup(in.Account)
	if a == nil || a.card == nil || !a.card.Open {
		return false // nearly every tap-in: no journey left open
	}
	if at, ok := s.cfg.Transit.ExpiresAt(a.card); !ok || now.Before(at) {
		if !s.tapCloses(now, in, a) {
			return false
		}
		s.closing = true
	}
	ex := Input{Op: OpJourneyExpire, Account: in.Account}
	s.Step(now, &ex, out)
	s.closing = false
	return len(out.Record) > 0
}

// tapCloses reports whether the online tap in, stepped at now, would be
// approved and close a's open journey (not yet due) inside its record.
// A tap-out on the journey's own route never does (it ends or cancels the
// journey, or finds none). Otherwise the tap is decided on Step's scratch
// record without its effect: the journey is closed when the card after
// the decision no longer has it open.
func (s *Shard) tapCloses(now time.Time, in *Input, a *account) bool {
	j := a.card.Journey
	if in.Op == OpTapOut && in.Route == j.Route {
		return false // every tap-out of an ordinary journey
	}
	r := &s.rec
	*r = Record{Version: RecordVersionTap, Op: in.Op, Shard: s.id, Time: now.UnixNano(), Account: in.Account,
		TID: in.TID, Txn: in.Txn, Merchant: in.Merchant, Route: in.Route, Stop: in.Stop}
	if code, _ := s.decide(in, r); code != terminals.CodeApproved {
		return false
	}
	// decideTap's card after the tap. A new journey equal to the old in
	// every field (same boarding time, reader and merchant) would not be
	// told apart; the tap's record then pays the same merchant anyway.
	return !s.card.Open || s.card.Journey != j
}

// rebuildOpen rebuilds the open-journey index from the cards (Restore).
func (s *Shard) rebuildOpen() {
	s.open = openSet{}
	for i := range s.accounts {
		s.trackJourney(int32(i), &s.accounts[i])
	}
}
