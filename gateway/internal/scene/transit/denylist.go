package transit

// The deny list: the cards readers must refuse offline (cards in debt, and
// cards an operator lists). Every change makes a new version; readers pull
// the changes since the version they hold and report the version they
// applied, so an operator can see which readers lag.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Bounds of the deny list.
const (
	DenyCardsMax     = 1 << 20 // cards on the list
	DenyHistoryMax   = 4096    // changes kept for deltas; older readers get the full list
	DenyTerminalsMax = 1 << 16 // readers whose applied version is tracked
	CardKeyLenMax    = 64      // bytes of a card key (token)
	TerminalLenMax   = 64      // bytes of a terminal id
)

// Deny-list errors.
var (
	ErrDenyFull      = errors.New("transit: deny list full")
	ErrBadKey        = errors.New("transit: bad card key or terminal id")
	ErrTerminalsFull = errors.New("transit: terminal table full")
	ErrFutureVersion = errors.New("transit: reported version is newer than the list")
)

type denyChange struct {
	version uint64
	card    string
	add     bool
}

// DenyList is a versioned set of card keys. Not safe for concurrent use:
// like card state it has one writer.
type DenyList struct {
	version   uint64
	cards     map[string]struct{}
	history   []denyChange // ring, oldest first after normalising; len <= DenyHistoryMax
	terminals map[string]uint64
}

// NewDenyList returns an empty list at version 0.
func NewDenyList() *DenyList {
	return &DenyList{cards: map[string]struct{}{}, terminals: map[string]uint64{}}
}

// Version is the current version.
func (l *DenyList) Version() uint64 { return l.version }

// ErrBaseSet is SetBase on a list that was changed or based already.
var ErrBaseSet = errors.New("transit: deny list base on a list already in use")

// SetBase starts a new, never changed list at version base instead of 0:
// its first change is base+1, and a reader holding any version below base
// (of an earlier list) is told to take the full list (Delta). The gateway
// bases each new data directory's list on the clock, above every version
// an earlier directory's list can have reached, so that a reader that
// missed a reset of the gateway's data never mistakes the new list's
// delta for one it can apply to its old list.
func (l *DenyList) SetBase(base uint64) error {
	if l.version != 0 || len(l.cards) != 0 || len(l.history) != 0 { // readers' reports of version 0 stay true
		return ErrBaseSet
	}
	l.version = base
	return nil
}

// Len is the number of cards listed.
func (l *DenyList) Len() int { return len(l.cards) }

// Has reports whether card is listed.
func (l *DenyList) Has(card string) bool { _, ok := l.cards[card]; return ok }

func validKey(s string, max int) bool {
	return len(s) > 0 && len(s) <= max && !strings.ContainsAny(s, "\x00\n")
}

func (l *DenyList) record(card string, add bool) uint64 {
	l.version++
	if len(l.history) == DenyHistoryMax {
		copy(l.history, l.history[1:])
		l.history = l.history[:DenyHistoryMax-1]
	}
	l.history = append(l.history, denyChange{version: l.version, card: card, add: add})
	return l.version
}

// Add lists card; a card already listed changes nothing (same version).
func (l *DenyList) Add(card string) (uint64, error) {
	if !validKey(card, CardKeyLenMax) {
		return l.version, ErrBadKey
	}
	if _, ok := l.cards[card]; ok {
		return l.version, nil
	}
	if len(l.cards) >= DenyCardsMax {
		return l.version, ErrDenyFull
	}
	l.cards[card] = struct{}{}
	return l.record(card, true), nil
}

// Remove takes card off; a card not listed changes nothing.
func (l *DenyList) Remove(card string) uint64 {
	if _, ok := l.cards[card]; !ok {
		return l.version
	}
	delete(l.cards, card)
	return l.record(card, false)
}

// Delta is what a reader at From must apply to reach To. If Full, the
// reader replaces its list with Add (its version is older than the
// history kept).
type Delta struct {
	From, To uint64
	Full     bool
	Add      []string // sorted
	Remove   []string // sorted
}

// Delta returns the changes since fromVersion: the net effect per card,
// or the full list when fromVersion is older than the kept history (or
// newer than the list, which only a reset list can cause).
func (l *DenyList) Delta(fromVersion uint64) Delta {
	d := Delta{From: fromVersion, To: l.version}
	oldest := l.version - uint64(len(l.history)) // versions after this are in history
	if fromVersion > l.version || fromVersion < oldest {
		d.Full, d.From = true, 0
		for c := range l.cards {
			d.Add = append(d.Add, c)
		}
		slices.Sort(d.Add)
		return d
	}
	net := map[string]bool{}
	for _, ch := range l.history {
		if ch.version > fromVersion {
			net[ch.card] = ch.add
		}
	}
	for c, add := range net {
		// A card added and removed again since fromVersion nets out to
		// whatever it is now; the reader's view at fromVersion decides
		// whether that is a change, so send the final state.
		if add {
			d.Add = append(d.Add, c)
		} else {
			d.Remove = append(d.Remove, c)
		}
	}
	slices.Sort(d.Add)
	slices.Sort(d.Remove)
	return d
}

// Report records the version a terminal says it applied.
func (l *DenyList) Report(terminal string, version uint64) error {
	if !validKey(terminal, TerminalLenMax) {
		return ErrBadKey
	}
	if version > l.version {
		return ErrFutureVersion
	}
	if _, ok := l.terminals[terminal]; !ok && len(l.terminals) >= DenyTerminalsMax {
		return ErrTerminalsFull
	}
	l.terminals[terminal] = version
	return nil
}

// TerminalVersion is a terminal and the version it last reported.
type TerminalVersion struct {
	Terminal string
	Version  uint64
}

// Lagging lists the terminals whose reported version is below minVersion,
// oldest first (then by id).
func (l *DenyList) Lagging(minVersion uint64) []TerminalVersion {
	var out []TerminalVersion
	for t, v := range l.terminals {
		if v < minVersion {
			out = append(out, TerminalVersion{t, v})
		}
	}
	slices.SortFunc(out, func(a, b TerminalVersion) int {
		if a.Version != b.Version {
			if a.Version < b.Version {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Terminal, b.Terminal)
	})
	return out
}

const denyVersion = 1

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

// AppendBinary appends the list's deterministic binary form (version 1):
// version byte, list version (u64), card count (u32) and sorted cards
// (len byte + bytes), history count (u32) and changes (version u64, add
// byte, card), terminal count (u32) and sorted (terminal, version u64).
func (l *DenyList) AppendBinary(dst []byte) []byte {
	dst = append(dst, denyVersion)
	dst = binary.LittleEndian.AppendUint64(dst, l.version)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(l.cards)))
	for _, c := range sortedKeys(l.cards) {
		dst = appendStr(dst, c)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(l.history)))
	for _, h := range l.history {
		dst = binary.LittleEndian.AppendUint64(dst, h.version)
		b := byte(0)
		if h.add {
			b = 1
		}
		dst = append(dst, b)
		dst = appendStr(dst, h.card)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(l.terminals)))
	for _, t := range sortedKeys(l.terminals) {
		dst = appendStr(dst, t)
		dst = binary.LittleEndian.AppendUint64(dst, l.terminals[t])
	}
	return dst
}

// DecodeDenyList reads what AppendBinary wrote.
func DecodeDenyList(b []byte) (*DenyList, error) {
	r := reader{b: b}
	if v := r.u8(); r.err == nil && v != denyVersion {
		return nil, ErrVersion
	}
	l := NewDenyList()
	l.version = r.u64()
	n := r.u32()
	if r.err == nil && (n > DenyCardsMax || uint64(n) > uint64(len(r.b))) {
		r.fail("card count")
	}
	prev := ""
	for i := uint32(0); r.err == nil && i < n; i++ {
		c := r.str(CardKeyLenMax)
		if r.err == nil && (!validKey(c, CardKeyLenMax) || (i > 0 && c <= prev)) {
			r.fail("card order")
		}
		l.cards[c] = struct{}{}
		prev = c
	}
	hn := r.u32()
	if r.err == nil && (hn > DenyHistoryMax || uint64(hn) > l.version || uint64(hn) > uint64(len(r.b))) {
		r.fail("history count")
	}
	for i := uint32(0); r.err == nil && i < hn; i++ {
		v := r.u64()
		add := r.u8()
		c := r.str(CardKeyLenMax)
		want := l.version - uint64(hn) + uint64(i) + 1
		if r.err == nil && (v != want || add > 1 || !validKey(c, CardKeyLenMax)) {
			r.fail(fmt.Sprintf("history entry %d", i))
		}
		l.history = append(l.history, denyChange{version: v, card: c, add: add == 1})
	}
	tn := r.u32()
	if r.err == nil && (tn > DenyTerminalsMax || uint64(tn) > uint64(len(r.b))) {
		r.fail("terminal count")
	}
	prev = ""
	for i := uint32(0); r.err == nil && i < tn; i++ {
		t := r.str(TerminalLenMax)
		v := r.u64()
		if r.err == nil && (!validKey(t, TerminalLenMax) || (i > 0 && t <= prev) || v > l.version) {
			r.fail("terminal entry")
		}
		l.terminals[t] = v
		prev = t
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	return l, nil
}
