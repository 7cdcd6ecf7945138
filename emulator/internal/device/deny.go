package device

import (
	"fmt"
	"sort"
	"sync"

	"scenepay/terminals"
)

// Deny-list sync of a bus reader (docs/protocol.md section 16). The gateway
// keeps two retained messages for the bus group, signed with the
// config-signing key Kcfg (not the terminal's key):
//
//	{root}/g/bus/deny/full   {"v":1,"kind":"full","version":F,"cards":[...]}
//	{root}/g/bus/deny/delta  {"v":1,"kind":"delta","from":F,"version":V,"add":[...],"remove":[...]}
//
// The delta is cumulative from the last full list F. A reader holding
// version h (0: no list) follows the document's rule exactly:
//  1. verify the MAC under Kcfg first; drop what does not verify;
//  2. a delta with from <= h <= version: add, remove, hold version; with
//     h < from: take the full list (version from) first, then the delta;
//     with h > version (the gateway's list was reset): take the full list;
//  3. a full list above h: replace the list, hold its version.
//
// Retained messages arrive in any order on subscribe, so a delta that
// needs a full list the reader has not received yet is kept until it
// comes. A delta's "stop_first_rides" is applied from every delta. The
// message format, topics and strict decoder are the wire contract's
// (terminals/deny.go).

// DenyCfgName is the heartbeat "cfg" name a reader reports the applied
// deny-list version under.
const DenyCfgName = terminals.DenyCfgName

// DenyCardsMax bounds the cards a reader holds.
const DenyCardsMax = terminals.DenyCardsMax

// ErrDeny marks a deny-list message the reader refuses.
var ErrDeny = terminals.ErrDeny

// DenyList is the list a reader holds. Its methods are safe for concurrent use.
type DenyList struct {
	mu      sync.Mutex
	version uint64
	cards   map[string]bool
	full    *terminals.DenyMessage // last verified full list (needed when a delta starts above h)
	pending *terminals.DenyMessage // a delta waiting for its full list
	stops   map[string]int32
	applied uint64
	refused uint64
}

// NewDenyList returns an empty list (version 0).
func NewDenyList() *DenyList {
	return &DenyList{cards: map[string]bool{}, stops: map[string]int32{}}
}

// Version is the version held (0: no list yet).
func (l *DenyList) Version() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version
}

// Denied reports whether card ("kind:id") is on the list.
func (l *DenyList) Denied(card string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cards[card]
}

// Cards returns the listed cards, sorted.
func (l *DenyList) Cards() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.cards))
	for c := range l.cards {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// FirstRidesStopped reports whether unknown cards are refused on route
// for transit day day (days since 1970-01-01).
func (l *DenyList) FirstRidesStopped(route string, day int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.stops[route]
	return ok && day <= d
}

// Counts returns how many messages were applied and refused.
func (l *DenyList) Counts() (applied, refused uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied, l.refused
}

// Receive verifies payload (body '\n' mac) under the config-signing key and
// applies it by the rule of section 16. An empty payload (a cleared
// retained topic) is ignored.
func (l *DenyList) Receive(kcfg, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(payload) > terminals.DenyPayloadMax+65 {
		l.refused++
		return fmt.Errorf("%w: %d bytes", ErrDeny, len(payload))
	}
	body, err := terminals.Open(kcfg, payload)
	if err != nil {
		l.refused++
		return fmt.Errorf("%w: %v", ErrDeny, err)
	}
	m, err := terminals.DecodeDeny(body)
	if err != nil {
		l.refused++
		return err
	}
	l.applied++
	if m.Kind == terminals.DenyKindFull {
		l.full = &m
		if m.Version > l.version {
			l.replace(&m)
		}
		if p := l.pending; p != nil {
			l.pending = nil
			l.delta(p)
		}
		return nil
	}
	for _, r := range m.StopFirstRides {
		if len(l.stops) < terminals.DenyStopsMax || l.stops[r] != 0 {
			l.stops[r] = m.StopDay
		}
	}
	l.delta(&m)
	return nil
}

func (l *DenyList) replace(f *terminals.DenyMessage) {
	clear(l.cards)
	for _, c := range f.Cards {
		if len(l.cards) < DenyCardsMax {
			l.cards[c] = true
		}
	}
	l.version = f.Version
}

// delta applies d, taking the held full list first when d needs it, or
// keeps d pending until that full list arrives. l.mu is held.
func (l *DenyList) delta(d *terminals.DenyMessage) {
	if l.version < d.From || l.version > d.Version {
		if l.full == nil || l.full.Version != d.From {
			l.pending = d
			return
		}
		l.replace(l.full)
	}
	for _, c := range d.Add {
		if len(l.cards) < DenyCardsMax {
			l.cards[c] = true
		}
	}
	for _, c := range d.Remove {
		delete(l.cards, c)
	}
	l.version = d.Version
}
