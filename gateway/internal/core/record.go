package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// RecordVersion is the version byte of the record encoding written by this
// package. A decoder meeting another version refuses it rather than guess.
const RecordVersion = 1

// RecordVersionTap is the version of tap records (OpTapIn, OpTapOut): the
// version 1 layout followed by the tap extension (doc.go). Records of the
// other ops stay version 1, so journals written before taps existed
// replay unchanged; a version that does not match its op is corruption.
const RecordVersionTap = 2

// RecordVersionMarket is the version of market records (OpQRPay,
// OpRefund): the version 1 layout followed by the market extension
// (doc.go). Like taps, it leaves older records unchanged.
const RecordVersionMarket = 3

func recordVersionOf(op Op) uint8 {
	if op.tap() {
		return RecordVersionTap
	}
	if op.market() {
		return RecordVersionMarket
	}
	return RecordVersion
}

// Record layout (little endian), see doc.go for the table with meanings.
const (
	recHeaderLen = 86
	recCRCLen    = 4
	// MinRecordLen is the length of a record with four empty strings.
	MinRecordLen = recHeaderLen + recCRCLen
	// MaxFieldLen bounds each string field (account, tid, merchant, ref) in
	// bytes; it is the largest length the one-byte length prefix can carry.
	MaxFieldLen = 255
	// tapExtMax is the longest tap extension: route, stop, six amounts,
	// reason, flags and the card state.
	tapExtFixed = 1 + 1 + 6*8 + 1 + 2 + 2
	tapExtMax   = tapExtFixed + 2*transit.IDLenMax + uploadCardMax
	// mktExtFixed is the market extension without the operator merchant:
	// class, flags, tag, expiry, paid-at, stall, operator, merchant
	// length, QR day, QR spent.
	mktExtFixed = 1 + 1 + market.TagLen + 8 + 8 + 8 + 8 + 1 + 4 + 8
	mktExtMax   = mktExtFixed + market.MaxIDLen
	// MaxRecordLen is the length of the longest record: maximal strings
	// and the longer of the tap and market extensions.
	MaxRecordLen = MinRecordLen + 4*MaxFieldLen + max(tapExtMax, mktExtMax)

	mktFlagStatic = 1 << 0

	flagBlocked  = 1 << 0
	flagUnsynced = 1 << 1 // OpECNYOffline approved: payee's value not spendable until the wallet syncs
	flagsKnown   = flagBlocked | flagUnsynced
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is the decoded form of one journal record: the decision the shard
// took, the inputs it took it on, and the state of the account after the
// effect. Apply replays it; audit and settlement read it.
type Record struct {
	Version  uint8
	Op       Op
	Code     terminals.Code // approved or a decline; never a refusal or fault
	Shard    uint32
	Seq      uint64 // shard sequence, 1, 2, 3, ... without gaps
	Time     int64  // gateway time of the decision, UTC Unix nanoseconds
	Account  string
	Amount   int64 // fen; for OpRelease the remainder released
	TID      string
	Txn      uint64
	Orig     uint64
	Hash     uint64
	Merchant string
	Ref      string
	Class    uint8 // account's e-CNY class after apply (0 for other kinds)
	Floor    int64 // account's floor after apply
	Blocked  bool  // account's blocked flag after apply
	Unsynced bool  // OpECNYOffline approved: the payee's value is not spendable until the wallet syncs
	Balance  int64 // account's balance after apply (0 if the account does not exist)
	Held     int64 // account's held total after apply (0 if the account does not exist)
	// Tap records only (version 2): the tap's route and stop, the fare
	// decision's amounts, and the card state after the tap
	// (transit.Card.AppendState; empty for declines).
	Route string
	Stop  string
	Tap   TapAmounts
	Card  string // a string so that a Record stays comparable
	// Market records only (version 3): QR class, code, legs and the QR
	// counter after the effect (zero for declines).
	Market MarketAmounts
}

// Available is the account's available balance after the record, as the
// reply to the terminal reported it.
func (r *Record) Available() int64 { return r.Balance - r.Held - r.Floor }

// AppendBinary appends the encoding of r to dst. Strings longer than
// MaxFieldLen are not representable; Step never produces them (it refuses
// such inputs as CodeMalformed), and AppendBinary truncates them rather than
// write a record its own decoder would refuse.
func (r *Record) AppendBinary(dst []byte) []byte {
	acct, tid, merch, ref := clip(r.Account), clip(r.TID), clip(r.Merchant), clip(r.Ref)
	n := MinRecordLen + len(acct) + len(tid) + len(merch) + len(ref)
	ext := r.Version == RecordVersionTap
	route, stop, card := clipN(r.Route, transit.IDLenMax), clipN(r.Stop, transit.IDLenMax), r.Card
	if len(card) > cardLenMax(r.Op) {
		card = card[:0] // unrepresentable; decodes but never applies
	}
	if ext {
		n += tapExtFixed + len(route) + len(stop) + len(card)
	}
	mext := r.Version == RecordVersionMarket
	opm := clipN(r.Market.OpMerch, market.MaxIDLen)
	if mext {
		n += mktExtFixed + len(opm)
	}
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	b := dst[start:]
	le := binary.LittleEndian
	b[0] = r.Version
	b[1] = byte(r.Op)
	b[2], b[3] = codeBytes(r.Code)
	le.PutUint32(b[4:], r.Shard)
	le.PutUint64(b[8:], r.Seq)
	le.PutUint64(b[16:], uint64(r.Time))
	le.PutUint64(b[24:], uint64(r.Amount))
	le.PutUint64(b[32:], r.Txn)
	le.PutUint64(b[40:], r.Orig)
	le.PutUint64(b[48:], r.Hash)
	le.PutUint64(b[56:], uint64(r.Floor))
	le.PutUint64(b[64:], uint64(r.Balance))
	le.PutUint64(b[72:], uint64(r.Held))
	b[80] = r.Class
	var flags byte
	if r.Blocked {
		flags |= flagBlocked
	}
	if r.Unsynced {
		flags |= flagUnsynced
	}
	b[81] = flags
	b[82], b[83], b[84], b[85] = byte(len(acct)), byte(len(tid)), byte(len(merch)), byte(len(ref))
	p := recHeaderLen
	p += copy(b[p:], acct)
	p += copy(b[p:], tid)
	p += copy(b[p:], merch)
	p += copy(b[p:], ref)
	if ext {
		b[p] = byte(len(route))
		p++
		p += copy(b[p:], route)
		b[p] = byte(len(stop))
		p++
		p += copy(b[p:], stop)
		t := &r.Tap
		for _, v := range [...]int64{t.Fare, t.PrevCapture, t.Capture, t.Release, t.Charge, t.Hold} {
			le.PutUint64(b[p:], uint64(v))
			p += 8
		}
		b[p] = t.Reason
		le.PutUint16(b[p+1:], t.Flags)
		le.PutUint16(b[p+3:], uint16(len(card)))
		p += 5
		p += copy(b[p:], card)
	}
	if mext {
		m := &r.Market
		b[p] = m.Class
		b[p+1] = 0
		if m.Static {
			b[p+1] = mktFlagStatic
		}
		p += 2
		p += copy(b[p:], m.Tag[:])
		for _, v := range [...]int64{m.Expiry, m.PaidAt, m.Stall, m.Operator} {
			le.PutUint64(b[p:], uint64(v))
			p += 8
		}
		b[p] = byte(len(opm))
		p++
		p += copy(b[p:], opm)
		le.PutUint32(b[p:], uint32(m.QRDay))
		le.PutUint64(b[p+4:], uint64(m.QRSpent))
		p += 12
	}
	le.PutUint32(b[p:], crc32.Checksum(b[:p], castagnoli))
	return dst
}

func clip(s string) string { return clipN(s, MaxFieldLen) }

func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func codeBytes(c terminals.Code) (byte, byte) {
	if len(c) != 2 {
		return 0, 0 // decodes as an unknown code: a corrupt record, never a wrong one
	}
	return c[0], c[1]
}

// recordCodes are the codes a record may carry: the decisions of the core.
// Refusals and faults are answered without a record.
var recordCodes = func() []terminals.Code {
	var cs []terminals.Code
	for _, ci := range terminals.Catalogue() {
		if ci.Class == terminals.ClassApproved || ci.Class == terminals.ClassDecline {
			cs = append(cs, ci.Code)
		}
	}
	return cs
}()

// ErrCorrupt is matched (errors.Is) by every error that means stored bytes
// are not what this package wrote: bad records, bad snapshots, and replay
// divergence.
var ErrCorrupt = errors.New("core: corrupt")

// DecodeError reports why a record could not be decoded.
type DecodeError struct {
	Field  string // the field at fault ("length", "crc", "op", ...)
	Offset int    // byte offset of the field in the record
	Msg    string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("core: record %s at offset %d: %s", e.Field, e.Offset, e.Msg)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *DecodeError) Is(target error) bool { return target == ErrCorrupt }

// DecodeRecord decodes b, which must be exactly one record, into r. It
// never panics and refuses anything AppendBinary would not have written, so
// a decoded record re-encodes to the same bytes.
func DecodeRecord(b []byte, r *Record) error {
	if len(b) < MinRecordLen {
		return &DecodeError{Field: "length", Offset: 0, Msg: fmt.Sprintf("%d bytes, shorter than %d", len(b), MinRecordLen)}
	}
	if len(b) > MaxRecordLen {
		return &DecodeError{Field: "length", Offset: 0, Msg: fmt.Sprintf("%d bytes, longer than %d", len(b), MaxRecordLen)}
	}
	n := MinRecordLen + int(b[82]) + int(b[83]) + int(b[84]) + int(b[85])
	var ext tapExt
	if b[0] == RecordVersionTap {
		if !Op(b[1]).tap() {
			return &DecodeError{Field: "version", Offset: 0, Msg: fmt.Sprintf("version %d record of op %v", b[0], Op(b[1]))}
		}
		var err error
		if ext, err = parseTapExt(b, n-recCRCLen); err != nil {
			return err
		}
		n += ext.len
	}
	mextAt := n - recCRCLen
	if b[0] == RecordVersionMarket {
		if !Op(b[1]).market() {
			return &DecodeError{Field: "version", Offset: 0, Msg: fmt.Sprintf("version %d record of op %v", b[0], Op(b[1]))}
		}
		at := mextAt + 2 + market.TagLen + 4*8
		if at+1 > len(b) {
			return &DecodeError{Field: "length", Offset: at, Msg: "truncated before the operator merchant"}
		}
		if int(b[at]) > market.MaxIDLen {
			return &DecodeError{Field: "operator", Offset: at, Msg: fmt.Sprintf("%d bytes over %d", b[at], market.MaxIDLen)}
		}
		n += mktExtFixed + int(b[at])
	}
	if n != len(b) {
		return &DecodeError{Field: "length", Offset: 82, Msg: fmt.Sprintf("string lengths give %d bytes, have %d", n, len(b))}
	}
	le := binary.LittleEndian
	body := n - recCRCLen
	if got, want := crc32.Checksum(b[:body], castagnoli), le.Uint32(b[body:]); got != want {
		return &DecodeError{Field: "crc", Offset: body, Msg: fmt.Sprintf("computed %08x, stored %08x", got, want)}
	}
	if b[0] != RecordVersion && b[0] != RecordVersionTap && b[0] != RecordVersionMarket {
		return &DecodeError{Field: "version", Offset: 0, Msg: fmt.Sprintf("version %d, want %d, %d or %d", b[0], RecordVersion, RecordVersionTap, RecordVersionMarket)}
	}
	op := Op(b[1])
	if !op.journaled() {
		return &DecodeError{Field: "op", Offset: 1, Msg: fmt.Sprintf("op %d is not a journaled op", b[1])}
	}
	if recordVersionOf(op) != b[0] {
		return &DecodeError{Field: "version", Offset: 0, Msg: fmt.Sprintf("version %d record of op %v", b[0], op)}
	}
	code, ok := lookupRecordCode(b[2], b[3])
	if !ok {
		return &DecodeError{Field: "code", Offset: 2, Msg: fmt.Sprintf("%q is not a decision code", b[2:4])}
	}
	if b[80] > 4 {
		return &DecodeError{Field: "class", Offset: 80, Msg: fmt.Sprintf("class %d out of 0..4", b[80])}
	}
	if b[81]&^flagsKnown != 0 {
		return &DecodeError{Field: "flags", Offset: 81, Msg: fmt.Sprintf("unknown flag bits %02x", b[81])}
	}
	if b[81]&flagUnsynced != 0 && (op != OpECNYOffline || code != terminals.CodeApproved) {
		return &DecodeError{Field: "flags", Offset: 81, Msg: "unsynced flag on a record that is not an approved offline e-CNY payment"}
	}
	*r = Record{
		Version:  b[0],
		Op:       op,
		Code:     code,
		Shard:    le.Uint32(b[4:]),
		Seq:      le.Uint64(b[8:]),
		Time:     int64(le.Uint64(b[16:])),
		Amount:   int64(le.Uint64(b[24:])),
		Txn:      le.Uint64(b[32:]),
		Orig:     le.Uint64(b[40:]),
		Hash:     le.Uint64(b[48:]),
		Floor:    int64(le.Uint64(b[56:])),
		Balance:  int64(le.Uint64(b[64:])),
		Held:     int64(le.Uint64(b[72:])),
		Class:    b[80],
		Blocked:  b[81]&flagBlocked != 0,
		Unsynced: b[81]&flagUnsynced != 0,
	}
	p := recHeaderLen
	str := func(l byte) string {
		s := string(b[p : p+int(l)])
		p += int(l)
		return s
	}
	r.Account = str(b[82])
	r.TID = str(b[83])
	r.Merchant = str(b[84])
	r.Ref = str(b[85])
	if b[0] == RecordVersionTap {
		r.Route = string(b[ext.route : ext.route+ext.routeLen])
		r.Stop = string(b[ext.stop : ext.stop+ext.stopLen])
		q := ext.stop + ext.stopLen
		var a [6]int64
		for i := range a {
			a[i] = int64(le.Uint64(b[q:]))
			q += 8
		}
		r.Tap = TapAmounts{Fare: a[0], PrevCapture: a[1], Capture: a[2], Release: a[3], Charge: a[4], Hold: a[5],
			Reason: b[q], Flags: le.Uint16(b[q+1:])}
		if ext.cardLen > 0 {
			r.Card = string(b[ext.card : ext.card+ext.cardLen])
		}
	}
	if b[0] == RecordVersionMarket {
		q := mextAt
		m := &r.Market
		m.Class = b[q]
		if m.Class > 4 {
			return &DecodeError{Field: "qr class", Offset: q, Msg: fmt.Sprintf("class %d out of 0..4", m.Class)}
		}
		if b[q+1]&^mktFlagStatic != 0 {
			return &DecodeError{Field: "market flags", Offset: q + 1, Msg: fmt.Sprintf("unknown flag bits %02x", b[q+1])}
		}
		m.Static = b[q+1]&mktFlagStatic != 0
		q += 2
		copy(m.Tag[:], b[q:])
		q += market.TagLen
		m.Expiry, m.PaidAt = int64(le.Uint64(b[q:])), int64(le.Uint64(b[q+8:]))
		m.Stall, m.Operator = int64(le.Uint64(b[q+16:])), int64(le.Uint64(b[q+24:]))
		q += 32
		l := int(b[q])
		if l > 0 {
			m.OpMerch = string(b[q+1 : q+1+l])
		}
		q += 1 + l
		m.QRDay, m.QRSpent = int32(le.Uint32(b[q:])), int64(le.Uint64(b[q+4:]))
	}
	return nil
}

// tapExt locates the tap extension of a version 2 record.
type tapExt struct {
	len             int // bytes of the extension
	route, routeLen int
	stop, stopLen   int
	card, cardLen   int
}

// parseTapExt reads the extension's length fields starting at off (just
// after the four strings), checking each against the buffer and its bound.
func parseTapExt(b []byte, off int) (tapExt, error) {
	bad := func(field string, at int, msg string) (tapExt, error) {
		return tapExt{}, &DecodeError{Field: field, Offset: at, Msg: msg}
	}
	var x tapExt
	p := off
	if p+1 > len(b) {
		return bad("length", p, "truncated before the route")
	}
	x.route, x.routeLen = p+1, int(b[p])
	if x.routeLen > transit.IDLenMax {
		return bad("route", p, fmt.Sprintf("%d bytes over %d", x.routeLen, transit.IDLenMax))
	}
	p = x.route + x.routeLen
	if p+1 > len(b) {
		return bad("length", p, "truncated before the stop")
	}
	x.stop, x.stopLen = p+1, int(b[p])
	if x.stopLen > transit.IDLenMax {
		return bad("stop", p, fmt.Sprintf("%d bytes over %d", x.stopLen, transit.IDLenMax))
	}
	p = x.stop + x.stopLen + 6*8 + 3
	if p+2 > len(b) {
		return bad("length", p, "truncated before the card state")
	}
	x.card, x.cardLen = p+2, int(binary.LittleEndian.Uint16(b[p:]))
	if x.cardLen > cardLenMax(Op(b[1])) {
		return bad("card", p, fmt.Sprintf("%d bytes over %d", x.cardLen, cardLenMax(Op(b[1]))))
	}
	x.len = x.card + x.cardLen - off
	return x, nil
}

func lookupRecordCode(c0, c1 byte) (terminals.Code, bool) {
	for _, c := range recordCodes {
		if c[0] == c0 && c[1] == c1 {
			return c, true
		}
	}
	return "", false
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
