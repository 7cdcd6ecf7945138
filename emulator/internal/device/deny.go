package device

import (
	"bytes"
	"encoding/json"
	"errors"
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
// comes. A delta's "stop_first_rides" is applied from every delta.

// DenyGroup is the terminal group that receives the deny list.
const DenyGroup = "bus"

// DenyCfgName is the heartbeat "cfg" name a reader reports the applied
// deny-list version under.
const DenyCfgName = "deny"

// Deny-list bounds.
const (
	// DenyPayloadMax bounds a deny-list payload the reader reads (a full
	// list is not bound by the 4096-byte request frame limit).
	DenyPayloadMax = 1 << 20
	// DenyCardsMax bounds the cards a reader holds.
	DenyCardsMax = 100_000
	// denyStopsMax bounds the stopped routes kept.
	denyStopsMax = 256
)

// ErrDeny marks a deny-list message the reader refuses.
var ErrDeny = errors.New("device: deny-list message")

// DenyTopicFull and DenyTopicDelta are the bus group's retained deny-list topics.
func DenyTopicFull(t terminals.Topics) string { return t.Root + "/g/" + DenyGroup + "/deny/full" }

// DenyTopicDelta: see DenyTopicFull.
func DenyTopicDelta(t terminals.Topics) string { return t.Root + "/g/" + DenyGroup + "/deny/delta" }

// DenyMessage is a decoded deny-list body.
type DenyMessage struct {
	V              int      `json:"v"`
	Kind           string   `json:"kind"` // "full" or "delta"
	From           uint64   `json:"from"`
	Version        uint64   `json:"version"`
	Cards          []string `json:"cards"`
	Add            []string `json:"add"`
	Remove         []string `json:"remove"`
	StopFirstRides []string `json:"stop_first_rides"`
	StopDay        int32    `json:"stop_day"`
}

// DecodeDeny reads an authenticated deny-list body: one JSON object with
// the keys above and no others, v 1, kind full (cards, no from, add or
// remove) or delta (from <= version, no cards), at most DenyCardsMax cards
// per list, card keys 1..terminals.MaxInstrumentIDLen+7 bytes.
func DecodeDeny(body []byte) (DenyMessage, error) {
	var m DenyMessage
	if len(body) > DenyPayloadMax {
		return m, fmt.Errorf("%w: %d bytes", ErrDeny, len(body))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return DenyMessage{}, fmt.Errorf("%w: %v", ErrDeny, err)
	}
	if dec.More() {
		return DenyMessage{}, fmt.Errorf("%w: trailing data", ErrDeny)
	}
	if m.V != 1 {
		return DenyMessage{}, fmt.Errorf("%w: v %d", ErrDeny, m.V)
	}
	switch m.Kind {
	case "full":
		if m.From != 0 || m.Add != nil || m.Remove != nil || m.StopFirstRides != nil {
			return DenyMessage{}, fmt.Errorf("%w: a full list carries only cards", ErrDeny)
		}
	case "delta":
		if m.Cards != nil || m.From > m.Version {
			return DenyMessage{}, fmt.Errorf("%w: a delta runs from <= version and carries no cards", ErrDeny)
		}
	default:
		return DenyMessage{}, fmt.Errorf("%w: kind %q", ErrDeny, m.Kind)
	}
	for _, l := range [][]string{m.Cards, m.Add, m.Remove, m.StopFirstRides} {
		if len(l) > DenyCardsMax {
			return DenyMessage{}, fmt.Errorf("%w: %d entries", ErrDeny, len(l))
		}
		for _, c := range l {
			if len(c) == 0 || len(c) > terminals.MaxInstrumentIDLen+8 {
				return DenyMessage{}, fmt.Errorf("%w: entry of %d bytes", ErrDeny, len(c))
			}
		}
	}
	if len(m.StopFirstRides) > denyStopsMax {
		return DenyMessage{}, fmt.Errorf("%w: %d stopped routes", ErrDeny, len(m.StopFirstRides))
	}
	return m, nil
}

// DenyList is the list a reader holds. Its methods are safe for concurrent use.
type DenyList struct {
	mu      sync.Mutex
	version uint64
	cards   map[string]bool
	full    *DenyMessage // last verified full list (needed when a delta starts above h)
	pending *DenyMessage // a delta waiting for its full list
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
	if len(payload) > DenyPayloadMax+65 {
		l.refused++
		return fmt.Errorf("%w: %d bytes", ErrDeny, len(payload))
	}
	body, err := terminals.Open(kcfg, payload)
	if err != nil {
		l.refused++
		return fmt.Errorf("%w: %v", ErrDeny, err)
	}
	m, err := DecodeDeny(body)
	if err != nil {
		l.refused++
		return err
	}
	l.applied++
	if m.Kind == "full" {
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
		if len(l.stops) < denyStopsMax || l.stops[r] != 0 {
			l.stops[r] = m.StopDay
		}
	}
	l.delta(&m)
	return nil
}

func (l *DenyList) replace(f *DenyMessage) {
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
func (l *DenyList) delta(d *DenyMessage) {
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
