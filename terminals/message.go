package terminals

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
)

// Version is the protocol version carried in every body ("v").
const Version = 1

// Message types of protocol v1. Requests flow terminal -> gateway on the
// request topic; each reply carries the same type back on the reply topic.
const (
	TypePurchase  = "purchase"  // debit the instrument for a sale
	TypeReversal  = "reversal"  // void an earlier request of the same terminal ("orig")
	TypeBalance   = "balance"   // balance inquiry; no ledger effect
	TypeHeartbeat = "heartbeat" // liveness; no ledger effect, no txn id needed
	TypeTapIn     = "tap_in"    // bus boarding: the gateway's fare rules charge or hold ("route", "stop")
	TypeTapOut    = "tap_out"   // bus alighting: capture the journey's fare, release the rest
	TypeHold      = "hold"      // hospital kiosk: open an inpatient deposit (no orig) or top it up (orig = opening txn)
	TypeCapture   = "capture"   // hospital kiosk: charge a service order against a deposit (orig = opening txn)
	TypeRelease   = "release"   // hospital kiosk: discharge; capture the last charges (amt, may be 0), release the rest
	TypeQRPay     = "qr_pay"    // market stall: debit the account a scanned consumer payment code is bound to ("code")
	TypeRefund    = "refund"    // market stall: return part or all of an earlier qr_pay of the same terminal ("orig")
)

// MaxPayCodeLen bounds "code" of a qr_pay: the longest consumer payment code
// (paycode.go: "SPC1" and the base32 of a 67-byte payload). TestPayCodeMaxLen
// keeps it equal to the format's longest code, and a gateway test to the
// gateway's market.MaxCodeLen.
const MaxPayCodeLen = 112

// ReplyDepositLow is the type of the gateway's unsolicited notice that a
// deposit fell below the hospital's low-balance threshold (docs/protocol.md).
const ReplyDepositLow = "deposit_low"

// Insurance is the medical insurance platform's split of a hospital bill
// (purchase "ins"): pooled fund, personal account and self-pay, in fen.
// Only Self is charged to the instrument; the gateway checks the legs sum to
// the purchase amount.
type Insurance struct {
	Pool     int64 `json:"pool"`
	Personal int64 `json:"personal"`
	Self     int64 `json:"self"`
	Set      bool  `json:"-"` // the request carried "ins"
}

// MaxRouteIDLen bounds "route" and "stop" of a tap (the fare table's id bound).
const MaxRouteIDLen = 32

// Reserved for the scene messages; a v1 gateway that does not implement them
// answers UNSUPPORTED.
var reservedTypes = map[string]bool{}

// Instrument kinds.
const (
	InstCounty = "county" // county transit/citizen card, stored value
	InstBank   = "bank"   // bank debit card, by token (never a PAN)
	InstECNY   = "ecny"   // digital RMB wallet
)

// Field bounds. Money is integer fen.
const (
	MaxTerminalIDLen   = 32
	MaxInstrumentIDLen = 64
	// MaxAmount is the largest amount one message may carry (10,000,000.00 CNY).
	MaxAmount int64 = 1_000_000_000
)

// Instrument names the account a request draws on.
type Instrument struct {
	Kind  string `json:"k"`
	ID    string `json:"id"`
	Last4 string `json:"last4,omitempty"` // bank cards: last four digits for receipts
}

// Key is the ledger account key, "kind:id".
func (in Instrument) Key() string { return in.Kind + ":" + in.ID }

// Request is the body of a terminal -> gateway message.
type Request struct {
	V    int        `json:"v"`
	Type string     `json:"type"`
	TID  string     `json:"tid"`
	Txn  uint64     `json:"txn"`  // terminal txn id: monotonic, persisted by the terminal before sending
	TS   int64      `json:"ts"`   // terminal time, Unix milliseconds UTC
	Amt  int64      `json:"amt"`  // fen
	Inst Instrument `json:"inst"` // not for heartbeat
	Orig uint64     `json:"orig,omitempty"`
	// Cfg is optional and only on a heartbeat: the configuration versions
	// the terminal has applied, e.g. {"transit":3}.
	Cfg CfgVersions `json:"cfg"`
	// OBK is optional and only on a heartbeat: the reader's offline upload
	// backlog, {"n":<taps waiting>,"oldest":<Unix ms>} (backlog.go).
	OBK Backlog `json:"obk,omitzero"`
	// Route and Stop are for tap_in / tap_out only: the route id and the
	// stop id (the stop is required on distance routes; flat routes ignore it).
	Route string `json:"route,omitempty"`
	Stop  string `json:"stop,omitempty"`
	// Item (purchase, optional) is a hospital pay-first item code; Ins
	// (purchase, optional) is an insurance split of the amount.
	Item string    `json:"item,omitempty"`
	Ins  Insurance `json:"ins,omitzero"`
	// PayCode (qr_pay only, required) is the consumer payment code the
	// stall terminal scanned, as read: 1..MaxPayCodeLen of A-Z 0-9. It names
	// the account it is bound to, so "inst" is optional on a qr_pay.
	PayCode string `json:"code,omitempty"`
	// Taps (offline_upload only, required) are one card's offline taps
	// (upload.go).
	Taps UploadTaps `json:"taps"`
}

// Reply is the body of a gateway -> terminal message.
type Reply struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	TID  string `json:"tid"`
	Txn  uint64 `json:"txn"`
	Code Code   `json:"code"`
	Auth string `json:"auth,omitempty"` // gateway authorization reference (journal LSN)
	Amt  *int64 `json:"amt,omitempty"`  // fen: charged, held or captured by a tap; debited or credited; taken from the balance by an offline_upload
	Debt *int64 `json:"debt,omitempty"` // offline_upload: fen of the uploaded fares that became debt on the card (present only when > 0)
	Bal  *int64 `json:"bal,omitempty"`  // available balance after the request, fen
	Out  string `json:"out,omitempty"`  // offline_upload: one outcome letter per tap (upload.go)
	GTS  int64  `json:"gts"`            // gateway time, Unix milliseconds UTC
}

// Error is a coded protocol error.
type Error struct {
	Code  Code
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s %s: %s: %s", e.Code, e.Code.Name(), e.Field, e.Msg)
	}
	return fmt.Sprintf("%s %s: %s", e.Code, e.Code.Name(), e.Msg)
}

// ValidID reports whether s is a topic-safe identifier: 1..max characters of
// A-Z a-z 0-9 '-' '_' '.'.
func ValidID(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func bad(field, msg string) error { return &Error{Code: CodeMalformed, Field: field, Msg: msg} }

// DecodeRequest parses and validates an authenticated request body.
func DecodeRequest(body []byte) (*Request, error) {
	r := new(Request)
	if err := DecodeRequestInto(body, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Request keys, as bits of a seen-set so that a duplicate key is refused.
const (
	keyV = 1 << iota
	keyType
	keyTID
	keyTxn
	keyTS
	keyAmt
	keyInst
	keyOrig
	keyCode
	keyAuth
	keyBal
	keyGTS
	keyInstK
	keyInstID
	keyInstLast4
	keyCfg
	keyRoute
	keyStop
	keyItem
	keyIns
	keyTaps
	keyOut
	keyOBK
	keyDebt
)

// maxVersionValue bounds the "v" field while decoding; anything that fits but
// is not Version is answered UNSUPPORTED by Validate.
const maxVersionValue = 1<<31 - 1

// DecodeRequestInto is DecodeRequest into a caller-owned Request. Strings
// that equal the ones r already holds are reused, so a gateway that keeps one
// Request per worker decodes a typical purchase with few allocations.
//
// Beyond JSON syntax it requires: keys exactly as specified (case-sensitive),
// each at most once, no unknown keys, no null values, integers without
// fraction or exponent, UTF-8 strings, no newline anywhere in the body and
// nothing after the object. Then it runs Validate.
//
// On error r holds what was read before the error, so that a refusal can
// echo the request's type and txn id; Type is kept only when it is a v1 or
// reserved type name, so that an echo never carries attacker-sized text.
func DecodeRequestInto(body []byte, r *Request) error {
	err := decodeRequest(body, r)
	if err != nil && r.Type != "" && !knownType(r.Type) {
		r.Type = ""
	}
	return err
}

func knownType(t string) bool {
	switch t {
	case TypePurchase, TypeReversal, TypeBalance, TypeHeartbeat, TypeTapIn, TypeTapOut,
		TypeHold, TypeCapture, TypeRelease, TypeQRPay, TypeRefund:
		return true
	}
	return reservedTypes[t]
}

func decodeRequest(body []byte, r *Request) error {
	prevTID, prevID, prevLast4 := r.TID, r.Inst.ID, r.Inst.Last4
	*r = Request{}
	if len(body) > MaxPayload {
		return &Error{Code: CodeOversize, Msg: "body exceeds 4096 bytes"}
	}
	if bytes.IndexByte(body, '\n') >= 0 {
		return bad("", "newline inside body")
	}
	s := scanner{b: body}
	empty, err := s.objectStart("")
	if err != nil {
		return err
	}
	var seen uint32
	for more := !empty; more; {
		k, err := s.key("")
		if err != nil {
			return err
		}
		bit, name := requestKey(k)
		if bit == 0 {
			return unknownKey(k, "")
		}
		if seen&bit != 0 {
			return bad(name, "duplicate key")
		}
		seen |= bit
		switch bit {
		case keyV:
			v, err := s.int(name, maxVersionValue)
			if err != nil {
				return err
			}
			r.V = int(v)
		case keyType:
			b, err := s.str(name)
			if err != nil {
				return err
			}
			r.Type = internType(b)
		case keyTID:
			b, err := s.str(name)
			if err != nil {
				return err
			}
			r.TID = keep(b, prevTID)
		case keyTxn:
			if r.Txn, err = s.uint(name, math.MaxUint64); err != nil {
				return err
			}
		case keyTS:
			if r.TS, err = s.int(name, math.MaxInt64); err != nil {
				return err
			}
		case keyAmt:
			if r.Amt, err = s.int(name, math.MaxInt64); err != nil {
				return err
			}
		case keyOrig:
			if r.Orig, err = s.uint(name, math.MaxUint64); err != nil {
				return err
			}
		case keyInst:
			if err := decodeInstrument(&s, &r.Inst, prevID, prevLast4); err != nil {
				return err
			}
		case keyCfg:
			if err := decodeCfgVersions(&s, &r.Cfg); err != nil {
				return err
			}
		case keyOBK:
			if err := decodeBacklog(&s, &r.OBK); err != nil {
				return err
			}
		case keyItem:
			b, err := s.str(name)
			if err != nil {
				return err
			}
			if !ValidID(string(b), MaxRouteIDLen) {
				return bad(name, "must be 1..32 of [A-Za-z0-9._-]")
			}
			r.Item = string(b)
		case keyIns:
			if err := decodeInsurance(&s, &r.Ins); err != nil {
				return err
			}
		case keyTaps:
			if err := decodeUploadTaps(&s, &r.Taps); err != nil {
				return err
			}
		case keyCode:
			b, err := s.str(name)
			if err != nil {
				return err
			}
			if !validPayCode(b) {
				return bad(name, "a payment code is 1..112 of [A-Z0-9]")
			}
			r.PayCode = string(b)
		case keyRoute, keyStop:
			b, err := s.str(name)
			if err != nil {
				return err
			}
			if !ValidID(string(b), MaxRouteIDLen) {
				return bad(name, "must be 1..32 of [A-Za-z0-9._-]")
			}
			if bit == keyRoute {
				r.Route = string(b)
			} else {
				r.Stop = string(b)
			}
		}
		if more, err = s.after(""); err != nil {
			return err
		}
	}
	if err := s.end(); err != nil {
		return err
	}
	return r.Validate()
}

func requestKey(k []byte) (uint32, string) {
	switch string(k) {
	case "v":
		return keyV, "v"
	case "type":
		return keyType, "type"
	case "tid":
		return keyTID, "tid"
	case "txn":
		return keyTxn, "txn"
	case "ts":
		return keyTS, "ts"
	case "amt":
		return keyAmt, "amt"
	case "inst":
		return keyInst, "inst"
	case "orig":
		return keyOrig, "orig"
	case "cfg":
		return keyCfg, "cfg"
	case "route":
		return keyRoute, "route"
	case "stop":
		return keyStop, "stop"
	case "item":
		return keyItem, "item"
	case "ins":
		return keyIns, "ins"
	case "code":
		return keyCode, "code"
	case "taps":
		return keyTaps, "taps"
	case "obk":
		return keyOBK, "obk"
	}
	return 0, ""
}

// validPayCode reports whether b has the shape of a consumer payment code:
// 1..MaxPayCodeLen of A-Z 0-9 (QR alphanumeric, upper case). Whether it
// verifies is the gateway's decision; the shape keeps hostile bytes out of
// the request path.
func validPayCode(b []byte) bool {
	if len(b) == 0 || len(b) > MaxPayCodeLen {
		return false
	}
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// unknownKey names the key in the error only when it is a short plain
// identifier, so that hostile bytes never reach a log line verbatim.
func unknownKey(k []byte, parent string) error {
	name := string(k)
	if !ValidID(name, 32) {
		name = "?"
	}
	if parent != "" {
		name = parent + "." + name
	}
	return bad(name, "unknown key")
}

func decodeInstrument(s *scanner, in *Instrument, prevID, prevLast4 string) error {
	empty, err := s.objectStart("inst")
	if err != nil {
		return err
	}
	var seen uint32
	for more := !empty; more; {
		k, err := s.key("inst")
		if err != nil {
			return err
		}
		var bit uint32
		var name string
		switch string(k) {
		case "k":
			bit, name = keyInstK, "inst.k"
		case "id":
			bit, name = keyInstID, "inst.id"
		case "last4":
			bit, name = keyInstLast4, "inst.last4"
		default:
			return unknownKey(k, "inst")
		}
		if seen&bit != 0 {
			return bad(name, "duplicate key")
		}
		seen |= bit
		b, err := s.str(name)
		if err != nil {
			return err
		}
		switch bit {
		case keyInstK:
			in.Kind = internKind(b)
		case keyInstID:
			in.ID = keep(b, prevID)
		case keyInstLast4:
			in.Last4 = keep(b, prevLast4)
		}
		if more, err = s.after("inst"); err != nil {
			return err
		}
	}
	return nil
}

func decodeInsurance(s *scanner, in *Insurance) error {
	empty, err := s.objectStart("ins")
	if err != nil {
		return err
	}
	in.Set = true
	var seen uint32
	for more := !empty; more; {
		k, err := s.key("ins")
		if err != nil {
			return err
		}
		var bit uint32
		var name string
		var dst *int64
		switch string(k) {
		case "pool":
			bit, name, dst = 1, "ins.pool", &in.Pool
		case "personal":
			bit, name, dst = 2, "ins.personal", &in.Personal
		case "self":
			bit, name, dst = 4, "ins.self", &in.Self
		default:
			return unknownKey(k, "ins")
		}
		if seen&bit != 0 {
			return bad(name, "duplicate key")
		}
		seen |= bit
		if *dst, err = s.int(name, MaxAmount); err != nil {
			return err
		}
		if more, err = s.after("ins"); err != nil {
			return err
		}
	}
	if seen != 7 {
		return bad("ins", "an insurance split has pool, personal and self")
	}
	return nil
}

// internType returns the constant for a known type so that decoding it does
// not allocate.
func internType(b []byte) string {
	switch string(b) {
	case TypePurchase:
		return TypePurchase
	case TypeReversal:
		return TypeReversal
	case TypeBalance:
		return TypeBalance
	case TypeHeartbeat:
		return TypeHeartbeat
	case TypeTapIn:
		return TypeTapIn
	case TypeTapOut:
		return TypeTapOut
	case TypeHold:
		return TypeHold
	case TypeCapture:
		return TypeCapture
	case TypeRelease:
		return TypeRelease
	case TypeQRPay:
		return TypeQRPay
	case TypeRefund:
		return TypeRefund
	case TypeOfflineUpload:
		return TypeOfflineUpload
	case TypeECNYOffline:
		return TypeECNYOffline
	}
	return string(b)
}

func internKind(b []byte) string {
	switch string(b) {
	case InstCounty:
		return InstCounty
	case InstBank:
		return InstBank
	case InstECNY:
		return InstECNY
	}
	return string(b)
}

// Validate checks field presence and ranges for the request's type.
func (r *Request) Validate() error {
	if r.V != Version {
		return &Error{Code: CodeUnsupported, Field: "v", Msg: "unsupported protocol version " + strconv.Itoa(r.V)}
	}
	if !ValidID(r.TID, MaxTerminalIDLen) {
		return bad("tid", "terminal id must be 1..32 of [A-Za-z0-9._-]")
	}
	switch r.Type {
	case TypeHeartbeat:
		// The gateway checks a heartbeat's clock skew, so ts is required;
		// txn is optional (0 is fine) because heartbeats are not deduplicated.
		if r.TS <= 0 {
			return bad("ts", "timestamp must be Unix milliseconds")
		}
		if r.Amt != 0 || r.Orig != 0 || r.Inst != (Instrument{}) || r.PayCode != "" {
			return bad("amt", "a heartbeat carries no amount, instrument, original or payment code")
		}
		if r.Route != "" || r.Stop != "" {
			return bad("route", "only a tap names a route and stop")
		}
		if r.OBK.Set {
			return r.OBK.check()
		}
		return nil
	case TypePurchase, TypeReversal, TypeBalance, TypeTapIn, TypeTapOut, TypeHold, TypeCapture, TypeRelease,
		TypeQRPay, TypeRefund, TypeOfflineUpload, TypeECNYOffline:
		if r.Cfg.Len() != 0 {
			return bad("cfg", "only a heartbeat reports configuration versions")
		}
		if r.OBK.Set {
			return bad("obk", "only a heartbeat reports an offline upload backlog")
		}
		if (r.Type == TypeOfflineUpload) != (r.Taps.Len() != 0) {
			return bad("taps", "an offline_upload, and only it, carries taps")
		}
		if r.Type == TypeOfflineUpload && (r.Amt != 0 || r.Orig != 0 || r.Route != "" || r.Stop != "") {
			return bad("amt", "an offline_upload carries no amount, original, route or stop (each tap names its own)")
		}
		tap := r.Type == TypeTapIn || r.Type == TypeTapOut
		if !tap && (r.Route != "" || r.Stop != "") {
			return bad("route", "only a tap names a route and stop")
		}
		if tap && r.Route == "" {
			return bad("route", "a tap names its route")
		}
	default:
		if reservedTypes[r.Type] {
			return &Error{Code: CodeUnsupported, Field: "type", Msg: "message type " + strconv.Quote(r.Type) + " is reserved and not served by this gateway"}
		}
		return &Error{Code: CodeUnsupported, Field: "type", Msg: "unknown message type"}
	}
	if r.Txn == 0 {
		return bad("txn", "txn id must be >= 1")
	}
	if r.TS <= 0 {
		return bad("ts", "timestamp must be Unix milliseconds")
	}
	// A qr_pay may leave "inst" out: the code names its account, and the
	// gateway reads it from there (docs/protocol.md section 15).
	if r.Type != TypeQRPay || r.Inst != (Instrument{}) {
		if err := r.Inst.validate(); err != nil {
			return err
		}
	}
	if r.Type != TypeQRPay && r.PayCode != "" {
		return bad("code", "only a qr_pay carries a payment code")
	}
	if r.Type != TypePurchase && (r.Item != "" || r.Ins.Set) {
		return bad("item", "only a purchase names an item or an insurance split")
	}
	switch r.Type {
	case TypePurchase, TypeECNYOffline:
		if r.Amt <= 0 || r.Amt > MaxAmount {
			return &Error{Code: CodeInvalidAmount, Field: "amt", Msg: "amount must be 1..1000000000 fen"}
		}
		if r.Orig != 0 {
			return bad("orig", "only a reversal names an original")
		}
		if r.Type == TypeECNYOffline && r.Inst.Kind != InstECNY {
			return bad("inst.k", "only an e-CNY wallet pays double offline")
		}
	case TypeReversal:
		if r.Orig == 0 || r.Orig >= r.Txn {
			return bad("orig", "a reversal names an earlier txn id of the same terminal")
		}
		if r.Amt <= 0 || r.Amt > MaxAmount {
			return &Error{Code: CodeInvalidAmount, Field: "amt", Msg: "a reversal carries the original amount"}
		}
	case TypeTapIn, TypeTapOut:
		// The fare is the gateway's decision, never the reader's claim.
		if r.Amt != 0 {
			return bad("amt", "a tap carries no amount: the gateway's fare table decides")
		}
		if r.Orig != 0 {
			return bad("orig", "only a reversal names an original")
		}
	case TypeHold, TypeCapture:
		if r.Amt <= 0 || r.Amt > MaxAmount {
			return &Error{Code: CodeInvalidAmount, Field: "amt", Msg: "amount must be 1..1000000000 fen"}
		}
		if r.Type == TypeCapture && r.Orig == 0 {
			return bad("orig", "a capture names its deposit (the opening hold's txn id)")
		}
		if r.Orig >= r.Txn {
			return bad("orig", "a deposit is named by an earlier txn id of the same terminal")
		}
	case TypeRelease:
		if r.Amt < 0 || r.Amt > MaxAmount {
			return &Error{Code: CodeInvalidAmount, Field: "amt", Msg: "the last charges must be 0..1000000000 fen"}
		}
		if r.Orig == 0 || r.Orig >= r.Txn {
			return bad("orig", "a release names its deposit (an earlier txn id of the same terminal)")
		}
	case TypeQRPay:
		if r.PayCode == "" {
			return bad("code", "a qr_pay carries the scanned payment code")
		}
		if r.Amt <= 0 || r.Amt > MaxAmount {
			return &Error{Code: CodeInvalidAmount, Field: "amt", Msg: "amount must be 1..1000000000 fen"}
		}
		if r.Orig != 0 {
			return bad("orig", "only a reversal or refund names an original")
		}
	case TypeRefund:
		if r.Orig == 0 || r.Orig >= r.Txn {
			return bad("orig", "a refund names an earlier qr_pay txn id of the same terminal")
		}
		if r.Amt <= 0 || r.Amt > MaxAmount {
			return &Error{Code: CodeInvalidAmount, Field: "amt", Msg: "the refund must be 1..1000000000 fen"}
		}
	case TypeBalance:
		if r.Amt != 0 {
			return bad("amt", "a balance inquiry carries no amount")
		}
		if r.Orig != 0 {
			return bad("orig", "only a reversal names an original")
		}
	}
	return nil
}

func (in Instrument) validate() error {
	switch in.Kind {
	case InstCounty, InstECNY:
		if in.Last4 != "" {
			return bad("inst.last4", "last4 is for bank cards only")
		}
	case InstBank:
		if len(in.ID) < 5 || in.ID[:4] != "tok_" {
			return bad("inst.id", "bank cards travel as a token (tok_...), never as a card number")
		}
		if len(in.Last4) != 4 || !allDigits(in.Last4) {
			return bad("inst.last4", "last4 must be four digits")
		}
	default:
		return bad("inst.k", "instrument kind must be county, bank or ecny")
	}
	if !ValidID(in.ID, MaxInstrumentIDLen) {
		return bad("inst.id", "instrument id must be 1..64 of [A-Za-z0-9._-]")
	}
	if LooksLikePAN(in.ID) {
		return bad("inst.id", "instrument id looks like a card number; send a token")
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// panRunMax bounds the digits LooksLikePAN gathers from one run; a longer
// run is reported as PAN-like outright (it contains many 13..19-digit
// windows, and no honest identifier needs it).
const panRunMax = 64

// LooksLikePAN reports whether s holds something that may be a card number:
// such a value must never be stored or logged. Digits are read in runs; a run
// may be split into groups by single spaces or hyphens, because that is how
// card numbers are printed and typed ("4111 1111 1111 1111"). A run is
// PAN-like when some span of whole groups has 13..19 digits and passes the
// Luhn check, or when one group is longer than 19 digits and a 13..19-digit
// window inside it passes (a card number glued to other digits). A 13..19
// digit number that fails Luhn is not a card number and passes: county card
// and wallet numbers are often long digit runs.
func LooksLikePAN(s string) bool {
	var (
		d      [panRunMax]byte // digits of the current run
		starts [panRunMax]int  // index in d where each group begins
		n, g   int
	)
	check := func() bool {
		starts[g] = n // sentinel: end of the last group
		for i := 0; i < g; i++ {
			if glen := starts[i+1] - starts[i]; glen > 19 {
				grp := d[starts[i]:starts[i+1]]
				for w := 13; w <= 19; w++ {
					for off := 0; off+w <= len(grp); off++ {
						if luhn(grp[off : off+w]) {
							return true
						}
					}
				}
			}
			for j := i + 1; j <= g; j++ {
				span := starts[j] - starts[i]
				if span > 19 {
					break
				}
				if span >= 13 && luhn(d[starts[i]:starts[j]]) {
					return true
				}
			}
		}
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n == panRunMax-1 {
				return true // see panRunMax
			}
			if n == 0 {
				starts[0], g = 0, 1
			}
			d[n] = c
			n++
			continue
		case (c == ' ' || c == '-') && n > 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			starts[g] = n // a separator inside a run starts a new group
			g++
			continue
		}
		if n >= 13 && check() {
			return true
		}
		n, g = 0, 0
	}
	return n >= 13 && check()
}

func luhn(d []byte) bool {
	sum := 0
	dbl := false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if dbl {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		dbl = !dbl
	}
	return sum%10 == 0
}

// AppendJSON appends the canonical JSON encoding of r (fixed field order, no
// spaces) to dst. Terminals and the emulator use it to build request bodies.
func (r *Request) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(r.V), 10)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, r.Type)
	dst = append(dst, `,"tid":`...)
	dst = appendJSONString(dst, r.TID)
	dst = append(dst, `,"txn":`...)
	dst = strconv.AppendUint(dst, r.Txn, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, r.TS, 10)
	if r.Type != TypeHeartbeat {
		dst = append(dst, `,"amt":`...)
		dst = strconv.AppendInt(dst, r.Amt, 10)
	}
	if r.Type != TypeHeartbeat && (r.Type != TypeQRPay || r.Inst != (Instrument{})) {
		dst = append(dst, `,"inst":{"k":`...)
		dst = appendJSONString(dst, r.Inst.Kind)
		dst = append(dst, `,"id":`...)
		dst = appendJSONString(dst, r.Inst.ID)
		if r.Inst.Last4 != "" {
			dst = append(dst, `,"last4":`...)
			dst = appendJSONString(dst, r.Inst.Last4)
		}
		dst = append(dst, '}')
	}
	if r.Orig != 0 {
		dst = append(dst, `,"orig":`...)
		dst = strconv.AppendUint(dst, r.Orig, 10)
	}
	if r.Cfg.Len() != 0 {
		dst = append(dst, `,"cfg":`...)
		dst = r.Cfg.appendJSON(dst)
	}
	if r.OBK.Set {
		dst = append(dst, `,"obk":`...)
		dst = r.OBK.appendJSON(dst)
	}
	if r.Route != "" {
		dst = append(dst, `,"route":`...)
		dst = appendJSONString(dst, r.Route)
	}
	if r.Stop != "" {
		dst = append(dst, `,"stop":`...)
		dst = appendJSONString(dst, r.Stop)
	}
	if r.Item != "" {
		dst = append(dst, `,"item":`...)
		dst = appendJSONString(dst, r.Item)
	}
	if r.Ins.Set {
		dst = append(dst, `,"ins":{"pool":`...)
		dst = strconv.AppendInt(dst, r.Ins.Pool, 10)
		dst = append(dst, `,"personal":`...)
		dst = strconv.AppendInt(dst, r.Ins.Personal, 10)
		dst = append(dst, `,"self":`...)
		dst = strconv.AppendInt(dst, r.Ins.Self, 10)
		dst = append(dst, '}')
	}
	if r.PayCode != "" {
		dst = append(dst, `,"code":`...)
		dst = appendJSONString(dst, r.PayCode)
	}
	if r.Taps.Len() != 0 {
		dst = append(dst, `,"taps":`...)
		dst = r.Taps.appendJSON(dst)
	}
	return append(dst, '}')
}

// AppendJSON appends the canonical JSON encoding of a reply to dst. The
// gateway stores these exact bytes (sealed) so that a duplicate request gets
// a byte-identical reply.
func (p *Reply) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(p.V), 10)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, p.Type)
	dst = append(dst, `,"tid":`...)
	dst = appendJSONString(dst, p.TID)
	dst = append(dst, `,"txn":`...)
	dst = strconv.AppendUint(dst, p.Txn, 10)
	dst = append(dst, `,"code":`...)
	dst = appendJSONString(dst, string(p.Code))
	if p.Auth != "" {
		dst = append(dst, `,"auth":`...)
		dst = appendJSONString(dst, p.Auth)
	}
	if p.Amt != nil {
		dst = append(dst, `,"amt":`...)
		dst = strconv.AppendInt(dst, *p.Amt, 10)
	}
	if p.Debt != nil {
		dst = append(dst, `,"debt":`...)
		dst = strconv.AppendInt(dst, *p.Debt, 10)
	}
	if p.Bal != nil {
		dst = append(dst, `,"bal":`...)
		dst = strconv.AppendInt(dst, *p.Bal, 10)
	}
	if p.Out != "" {
		dst = append(dst, `,"out":`...)
		dst = appendJSONString(dst, p.Out)
	}
	dst = append(dst, `,"gts":`...)
	dst = strconv.AppendInt(dst, p.GTS, 10)
	return append(dst, '}')
}

// DecodeReply parses a reply body (after Open) under the same strict rules
// as DecodeRequestInto, and checks the version, the terminal id shape and
// that the code is in the catalogue.
func DecodeReply(body []byte) (*Reply, error) {
	if len(body) > MaxPayload {
		return nil, &Error{Code: CodeOversize, Msg: "body exceeds 4096 bytes"}
	}
	if bytes.IndexByte(body, '\n') >= 0 {
		return nil, bad("", "newline inside body")
	}
	p := new(Reply)
	s := scanner{b: body}
	empty, err := s.objectStart("")
	if err != nil {
		return nil, err
	}
	var seen uint32
	for more := !empty; more; {
		k, err := s.key("")
		if err != nil {
			return nil, err
		}
		var bit uint32
		switch string(k) {
		case "v":
			bit = keyV
		case "type":
			bit = keyType
		case "tid":
			bit = keyTID
		case "txn":
			bit = keyTxn
		case "code":
			bit = keyCode
		case "auth":
			bit = keyAuth
		case "bal":
			bit = keyBal
		case "amt":
			bit = keyAmt
		case "debt":
			bit = keyDebt
		case "gts":
			bit = keyGTS
		case "out":
			bit = keyOut
		default:
			return nil, unknownKey(k, "")
		}
		name := string(k)
		if seen&bit != 0 {
			return nil, bad(name, "duplicate key")
		}
		seen |= bit
		var b []byte
		switch bit {
		case keyV:
			var v int64
			v, err = s.int(name, maxVersionValue)
			p.V = int(v)
		case keyTxn:
			p.Txn, err = s.uint(name, math.MaxUint64)
		case keyGTS:
			p.GTS, err = s.int(name, math.MaxInt64)
		case keyBal:
			var v int64
			if v, err = s.int(name, math.MaxInt64); err == nil {
				p.Bal = &v
			}
		case keyAmt:
			var v int64
			if v, err = s.int(name, math.MaxInt64); err == nil {
				p.Amt = &v
			}
		case keyDebt:
			var v int64
			if v, err = s.int(name, math.MaxInt64); err == nil {
				p.Debt = &v
			}
		default: // string fields
			if b, err = s.str(name); err == nil {
				switch bit {
				case keyType:
					p.Type = internType(b)
				case keyTID:
					p.TID = string(b)
				case keyCode:
					p.Code = Code(b)
				case keyAuth:
					p.Auth = string(b)
				case keyOut:
					p.Out = string(b)
				}
			}
		}
		if err != nil {
			return nil, err
		}
		if more, err = s.after(""); err != nil {
			return nil, err
		}
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	if p.V != Version {
		return nil, &Error{Code: CodeUnsupported, Field: "v", Msg: "unsupported protocol version " + strconv.Itoa(p.V)}
	}
	if !ValidID(p.TID, MaxTerminalIDLen) {
		return nil, bad("tid", "terminal id must be 1..32 of [A-Za-z0-9._-]")
	}
	if _, ok := p.Code.Info(); !ok {
		return nil, bad("code", "unknown result code")
	}
	return p, nil
}

// ContentHash is the idempotency fingerprint of a request: every field
// except the timestamp, Cfg and OBK (heartbeats only, never deduplicated), so that a terminal retry that re-stamps the time is
// still "the same request" while a changed amount, instrument or original
// under the same txn id is a conflict. Strings are length-prefixed so that
// no two field lists hash the same input. FNV-1a, 64 bits; it guards against
// honest mistakes, not forgery (the MAC does that).
func (r *Request) ContentHash() uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	num := func(v uint64) {
		for i := 0; i < 8; i++ {
			h ^= v & 0xff
			h *= prime
			v >>= 8
		}
	}
	str := func(s string) {
		num(uint64(len(s)))
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= prime
		}
	}
	num(uint64(r.V))
	str(r.Type)
	str(r.TID)
	num(r.Txn)
	num(uint64(r.Amt))
	str(r.Inst.Kind)
	str(r.Inst.ID)
	str(r.Inst.Last4)
	num(r.Orig)
	if r.Route != "" || r.Stop != "" {
		// Only taps carry these; other types hash as before.
		str(r.Route)
		str(r.Stop)
	}
	if r.Item != "" || r.Ins.Set {
		// Only hospital purchases carry these; other requests hash as before.
		str(r.Item)
		num(uint64(r.Ins.Pool))
		num(uint64(r.Ins.Personal))
		num(uint64(r.Ins.Self))
	}
	if r.PayCode != "" {
		// Only a qr_pay carries it: the same txn id with another code (a
		// second customer's scan) is a conflict, not a duplicate.
		str(r.PayCode)
	}
	if r.Taps.Len() != 0 {
		// Only an offline_upload carries taps.
		r.Taps.hash(num, str)
	}
	return h
}
