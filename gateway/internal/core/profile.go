package core

// Concession profiles (senior, student, disabled) of county transit cards.
// The fare rules (scene/transit) price a tap by Card.Profile; the profile
// is set by the operator with OpSetProfile, a version 1 record whose Orig
// carries the new profile number. The card state of tap records and
// snapshots already carries the profile, so replay of a set-profile record
// only has to write that one byte: no new record version, and journals
// from before profiles (every card adult) replay unchanged.

import (
	"fmt"

	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// validProfile reports whether p is one of the profiles the fare rules
// know (the transit package keeps its count unexported).
func validProfile(p transit.Profile) bool {
	q, ok := transit.ParseProfile(p.String())
	return ok && q == p
}

// decideProfile decides an OpSetProfile. Precedence: unknown account (not
// journaled: an operator op), not a county card or a profile out of range
// (refusals, CodeMalformed: only county cards ride on concessions), then
// the profile the card already has (approved without effect, not
// journaled).
func (s *Shard) decideProfile(in *Input, r *Record) (terminals.Code, bool) {
	_, a := s.lookup(in.Account)
	switch {
	case a == nil:
		return terminals.CodeUnknownInstrument, false
	case a.kind != kindCounty || !validProfile(in.Profile):
		return terminals.CodeMalformed, false
	case cardProfile(a) == in.Profile:
		return terminals.CodeApproved, false
	}
	r.Amount, r.Orig = 0, uint64(in.Profile)
	return terminals.CodeApproved, true
}

// effectProfile applies an approved OpSetProfile record: the card gets the
// profile in Orig (a card that never tapped gets its state now, as a tap
// would create it). An open journey keeps its hold; its tap-out is priced
// by the profile at that time, as the fare rules decide.
func effectProfile(r *Record, a *account) error {
	p := transit.Profile(r.Orig)
	switch {
	case r.Orig > 255 || !validProfile(p):
		return fmt.Errorf("profile %d out of range", r.Orig)
	case a.kind != kindCounty:
		return fmt.Errorf("profile on account %q, not a county card", a.key)
	case r.Amount != 0:
		return fmt.Errorf("profile record moves %d fen", r.Amount)
	}
	if a.card == nil {
		a.card = new(transit.Card)
	}
	a.card.Profile = p
	return nil
}

func cardProfile(a *account) transit.Profile {
	if a.card == nil {
		return transit.ProfileAdult
	}
	return a.card.Profile
}
