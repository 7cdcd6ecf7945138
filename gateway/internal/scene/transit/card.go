package transit

// Card state: everything the fare rules remember about one card, owned by
// the caller (the core keeps it beside the account in the card's shard) and
// mutated only by this package. Its binary form goes into shard snapshots.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// SeenMax is how many uploaded tap ids a card remembers for duplicate
// detection. A card makes a few taps a day, so this covers more than the
// default UploadMaxAge (7 days) for ordinary riders; an older tap is
// refused by age instead.
const SeenMax = 64

// TapKey identifies an uploaded tap: FNV-1a 64 of the reader id and the
// reader's sequence number (the reader id itself is not kept in card
// state, so the state has a fixed size).
type TapKey struct {
	Reader uint64
	Seq    uint64
}

// Journey is an open distance-route journey (a tap-in awaiting tap-out).
type Journey struct {
	Route   string // route id (<= IDLenMax bytes)
	Stop    string // boarding stop
	BoardAt int64  // UTC Unix nanoseconds
	Day     int32  // transit day of the boarding: the journey counts there
	Week    int32
	// Held is the amount held in the ledger at tap-in; Debt the part booked
	// as debt instead (an offline tap-in the card could not cover).
	Held int64
	Debt int64
	// Transfer: boarded as a transfer. PrevAnchor/PrevAnchorRoute restore
	// the transfer anchor if the journey is cancelled.
	Transfer        bool
	PrevAnchor      int64
	PrevAnchorRoute string
	// Reader and Merchant are the boarding reader's terminal id and its
	// merchant (<= PartyLenMax bytes each, "" when unknown or longer; the
	// core fills them from the tap): whom the maximum fare is owed when
	// the journey is closed as incomplete without a tap by the card (the
	// gateway's sweep). Since card state version 2.
	Reader   string
	Merchant string
}

// PartyLenMax bounds a journey's Reader and Merchant (bytes): terminal
// ids are at most 32 bytes and merchant ids at most 64.
const PartyLenMax = 64

// PastDaysMax is how many transit days before Day a card remembers the
// spend of (Card.Past): a late offline tap of one of those days is capped
// together with that day's other taps. It covers the default upload age
// limit (7 days) with a day to spare, since a tap up to 7 x 24 h old can
// be 8 transit days behind.
const PastDaysMax = 8

// Card is the per-card transit state.
type Card struct {
	Profile Profile
	// Day and Week are the transit day number (days since 1970-01-01 of the
	// Asia/Shanghai transit day) and the first day of the transit week that
	// DaySpent and WeekSpent count; older counters reset lazily.
	Day       int32
	DaySpent  int64
	Week      int32
	WeekSpent int64
	// Past is what the card paid on each of the PastDaysMax transit days
	// before Day: Past[0] is Day-1, Past[1] Day-2, ... (0 for a day
	// without taps). It shifts when Day moves on; a late uploaded tap of
	// such a day is capped against, and added to, its entry. Since card
	// state version 2.
	Past [PastDaysMax]int64
	// Anchor is the last paid boarding (UTC Unix ns, 0 none) and its route:
	// the start of the transfer window.
	Anchor      int64
	AnchorRoute string
	Open        bool
	Journey     Journey
	// Debt is what uploaded taps could not charge; > 0 puts the card on
	// the deny list.
	Debt int64
	// OfflineTaps counts uploaded taps since the card's last online tap,
	// against the readers' floor limit.
	OfflineTaps uint16
	seen        [SeenMax]TapKey
	seenN       uint8 // valid entries
	seenNext    uint8 // next slot to overwrite
}

func (c *Card) seenHas(k TapKey) bool {
	for i := 0; i < int(c.seenN); i++ {
		if c.seen[i] == k {
			return true
		}
	}
	return false
}

func (c *Card) seenAdd(k TapKey) {
	c.seen[c.seenNext] = k
	c.seenNext = uint8((int(c.seenNext) + 1) % SeenMax)
	if c.seenN < SeenMax {
		c.seenN++
	}
}

// Errors of the binary decoders.
var (
	ErrTruncated = errors.New("transit: truncated state")
	ErrVersion   = errors.New("transit: unknown state version")
	ErrCorrupt   = errors.New("transit: corrupt state")
)

// cardVersion is the version of the state AppendState and AppendBinary
// write. Version 2 added the past days' spend and the journey's reader
// and merchant; version 1 state (journal records and snapshots written
// before) still decodes, with those empty.
const (
	cardVersion   = 2
	cardVersionV1 = 1
)

func appendStr(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

func appendI64(dst []byte, v int64) []byte { return binary.LittleEndian.AppendUint64(dst, uint64(v)) }

// AppendBinary appends the card's deterministic binary form (version 2,
// little endian): version, profile, flags (bit 0 open, bit 1 transfer),
// day, week (int32), day spent, week spent, anchor (int64), anchor route
// (len byte + bytes), debt, offline taps (uint16), past count n (u8, the
// entries up to the last non-zero one) and n past days' spend (int64),
// then if open: route, stop, board time, day, week, held, debt, prev
// anchor, prev anchor route, reader, merchant; then seen count, next slot
// and the seen keys (16 bytes each). Version 1 had neither the past days
// nor the reader and merchant.
func (c *Card) AppendBinary(dst []byte) []byte {
	dst = c.appendCore(dst)
	dst = append(dst, c.seenN, c.seenNext)
	for i := 0; i < int(c.seenN); i++ {
		dst = binary.LittleEndian.AppendUint64(dst, c.seen[i].Reader)
		dst = binary.LittleEndian.AppendUint64(dst, c.seen[i].Seq)
	}
	return dst
}

// AppendState appends the card's state without its upload dedupe ring:
// AppendBinary's bytes up to, not including, the seen count. An online tap
// never changes the ring, so this is what a journal record of an online
// tap carries (at most StateBytesMax bytes) to rebuild the card on replay
// without re-running fare policy.
func (c *Card) AppendState(dst []byte) []byte { return c.appendCore(dst) }

// StateBytesMax bounds AppendState's output: the fixed fields plus three
// strings of IDLenMax (anchor route, journey route and stop) and the
// journey's previous anchor route.
const StateBytesMax = 3 + 4 + 4 + 8*3 + 1 + IDLenMax + 8 + 2 + 1 + 8*PastDaysMax + (1+IDLenMax)*2 + 8 + 4 + 4 + 8*3 + 1 + IDLenMax + 2*(1+PartyLenMax)

// SetState overwrites c with state written by AppendState, keeping c's
// upload dedupe ring. It checks every bound and invariant DecodeCard
// checks; on error c is unchanged.
func (c *Card) SetState(b []byte) error { return c.setState(reader{b: b}) }

// SetStateString is SetState of a string (a journal record's field).
func (c *Card) SetStateString(s string) error {
	return c.setState(reader{b: []byte(s)})
}

func (c *Card) setState(r reader) error {
	var n Card
	if err := decodeCore(&r, &n); err != nil {
		return err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: trailing bytes", ErrCorrupt)
	}
	n.seen, n.seenN, n.seenNext = c.seen, c.seenN, c.seenNext
	*c = n
	return nil
}

func (c *Card) appendCore(dst []byte) []byte {
	dst = append(dst, cardVersion, byte(c.Profile))
	var flags byte
	if c.Open {
		flags |= 1
		if c.Journey.Transfer {
			flags |= 2
		}
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(c.Day))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(c.Week))
	dst = appendI64(dst, c.DaySpent)
	dst = appendI64(dst, c.WeekSpent)
	dst = appendI64(dst, c.Anchor)
	dst = appendStr(dst, c.AnchorRoute)
	dst = appendI64(dst, c.Debt)
	dst = binary.LittleEndian.AppendUint16(dst, c.OfflineTaps)
	n := len(c.Past)
	for n > 0 && c.Past[n-1] == 0 {
		n--
	}
	dst = append(dst, byte(n))
	for _, v := range c.Past[:n] {
		dst = appendI64(dst, v)
	}
	if c.Open {
		j := &c.Journey
		dst = appendStr(dst, j.Route)
		dst = appendStr(dst, j.Stop)
		dst = appendI64(dst, j.BoardAt)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(j.Day))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(j.Week))
		dst = appendI64(dst, j.Held)
		dst = appendI64(dst, j.Debt)
		dst = appendI64(dst, j.PrevAnchor)
		dst = appendStr(dst, j.PrevAnchorRoute)
		dst = appendStr(dst, clipParty(j.Reader))
		dst = appendStr(dst, clipParty(j.Merchant))
	}
	return dst
}

// clipParty keeps a reader or merchant id only if it fits PartyLenMax: a
// cut id would name another party.
func clipParty(s string) string {
	if len(s) > PartyLenMax {
		return ""
	}
	return s
}

// reader is a bounds-checked cursor; the first failure sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = ErrTruncated
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (r *reader) i64() int64 { return int64(r.u64()) }

func (r *reader) str(max int) string {
	n := int(r.u8())
	if r.err == nil && n > max {
		r.err = fmt.Errorf("%w: string of %d bytes over %d", ErrCorrupt, n, max)
		return ""
	}
	return string(r.take(n))
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorrupt, msg)
	}
}

// DecodeCard reads what AppendBinary wrote into c (which it overwrites). It
// checks every bound and invariant; on error c is left zero.
func DecodeCard(b []byte, c *Card) error {
	*c = Card{}
	r := reader{b: b}
	var n Card
	if err := decodeCore(&r, &n); err != nil {
		return err
	}
	n.seenN = r.u8()
	n.seenNext = r.u8()
	if r.err == nil && (n.seenN > SeenMax || n.seenNext >= SeenMax || (n.seenN < SeenMax && n.seenNext != n.seenN)) {
		r.fail("seen ring")
	}
	for i := 0; r.err == nil && i < int(n.seenN); i++ {
		n.seen[i] = TapKey{Reader: r.u64(), Seq: r.u64()}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return r.err
	}
	*c = n
	return nil
}

// decodeCore reads appendCore's fields into n and checks their invariants.
func decodeCore(r *reader, n *Card) error {
	v := r.u8()
	if r.err == nil && v != cardVersion && v != cardVersionV1 {
		return ErrVersion
	}
	n.Profile = Profile(r.u8())
	flags := r.u8()
	n.Day = int32(r.u32())
	n.Week = int32(r.u32())
	n.DaySpent = r.i64()
	n.WeekSpent = r.i64()
	n.Anchor = r.i64()
	n.AnchorRoute = r.str(IDLenMax)
	n.Debt = r.i64()
	n.OfflineTaps = r.u16()
	if v >= 2 {
		np := int(r.u8())
		if r.err == nil && np > PastDaysMax {
			r.fail("past days")
		}
		for i := 0; r.err == nil && i < np; i++ {
			n.Past[i] = r.i64()
			if r.err == nil && (n.Past[i] < 0 || n.Past[i] > CapMax*100 || (i == np-1 && n.Past[i] == 0)) {
				r.fail("past day spend")
			}
		}
	}
	if flags&^3 != 0 || flags == 2 {
		r.fail("flags")
	}
	if flags&1 != 0 {
		n.Open = true
		j := &n.Journey
		j.Transfer = flags&2 != 0
		j.Route = r.str(IDLenMax)
		j.Stop = r.str(IDLenMax)
		j.BoardAt = r.i64()
		j.Day = int32(r.u32())
		j.Week = int32(r.u32())
		j.Held = r.i64()
		j.Debt = r.i64()
		j.PrevAnchor = r.i64()
		j.PrevAnchorRoute = r.str(IDLenMax)
		if v >= 2 {
			j.Reader = r.str(PartyLenMax)
			j.Merchant = r.str(PartyLenMax)
		}
		if r.err == nil && (j.Route == "" || j.Stop == "" || j.Held < 0 || j.Debt < 0 || j.Held > FareMax || j.Debt > FareMax || j.Day != n.Day || j.Week != n.Week) {
			r.fail("journey")
		}
	}
	if r.err == nil {
		switch {
		case n.Profile >= profileCount:
			r.fail("profile")
		case n.DaySpent < 0 || n.WeekSpent < 0 || n.Debt < 0 || n.DaySpent > CapMax*100 || n.WeekSpent > CapMax*100:
			r.fail("negative or oversize counter")
		case n.Week > n.Day || n.Day-n.Week > 6:
			r.fail("week")
		case n.Anchor == 0 && n.AnchorRoute != "":
			r.fail("anchor")
		}
	}
	return r.err
}
