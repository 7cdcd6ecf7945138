package terminals

// The "paid" notice: the gateway tells a stall terminal that a customer's
// wallet paid one of the stall's merchant-presented codes (docs/protocol.md
// section 18). The terminal did not ask, so the notice is not a Reply: it
// names the stall code ("sc") it was paid through, which a Reply has no
// field for, and it is only ever an approval. A terminal reads "type" first
// and decodes a "paid" body with DecodePaid; the decoder is as strict as
// the request decoder (exact, unique keys; every key required; plain
// integers that fit the field).

import (
	"bytes"
	"math"
	"strconv"
)

// NoticePaid is the type of the gateway's unsolicited notice that a stall
// code was paid.
const NoticePaid = "paid"

// MaxStallCodeLen bounds "sc": a stall code id is 1..MaxStallCodeLen of
// [A-Za-z0-9._-] (the gateway issues 22 characters of A-Z 2-7).
const MaxStallCodeLen = 64

// Paid is the body of a "paid" notice.
type Paid struct {
	V    int    `json:"v"`
	Type string `json:"type"` // always "paid"
	TID  string `json:"tid"`  // the stall terminal the code belongs to
	// Txn is the gateway's id of the payment at this terminal (the ledger's
	// (tid, txn)); gateway-assigned ids lie in 2^62 .. 2^63-1, so they
	// never meet the terminal's own counter.
	Txn  uint64 `json:"txn"`
	Code Code   `json:"code"` // always "00": only approvals are notified
	Auth string `json:"auth"` // authorization reference, as in replies
	Amt  int64  `json:"amt"`  // fen paid, 1..MaxAmount
	SC   string `json:"sc"`   // the stall code paid
	GTS  int64  `json:"gts"`  // gateway time, Unix milliseconds UTC
}

// AppendJSON appends the canonical encoding of the notice.
func (p *Paid) AppendJSON(dst []byte) []byte {
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
	dst = append(dst, `,"auth":`...)
	dst = appendJSONString(dst, p.Auth)
	dst = append(dst, `,"amt":`...)
	dst = strconv.AppendInt(dst, p.Amt, 10)
	dst = append(dst, `,"sc":`...)
	dst = appendJSONString(dst, p.SC)
	dst = append(dst, `,"gts":`...)
	dst = strconv.AppendInt(dst, p.GTS, 10)
	return append(dst, '}')
}

const (
	paidV = 1 << iota
	paidType
	paidTID
	paidTxn
	paidCode
	paidAuth
	paidAmt
	paidSC
	paidGTS
	paidAll = paidGTS<<1 - 1
)

// maxAuthLen bounds "auth" ("SS-NNNNNNNNNN" today, room for growth).
const maxAuthLen = 32

// DecodePaid parses a "paid" notice body (after Open). Every key is
// required; unknown and duplicate keys, a type other than "paid", a code
// other than "00", an amount outside 1..MaxAmount, or a terminal id, stall
// code or auth of the wrong shape are coded errors (MALFORMED, or
// UNSUPPORTED for another version).
func DecodePaid(body []byte) (*Paid, error) {
	if len(body) > MaxPayload {
		return nil, &Error{Code: CodeOversize, Msg: "body exceeds 4096 bytes"}
	}
	if bytes.IndexByte(body, '\n') >= 0 {
		return nil, bad("", "newline inside body")
	}
	p := new(Paid)
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
			bit = paidV
		case "type":
			bit = paidType
		case "tid":
			bit = paidTID
		case "txn":
			bit = paidTxn
		case "code":
			bit = paidCode
		case "auth":
			bit = paidAuth
		case "amt":
			bit = paidAmt
		case "sc":
			bit = paidSC
		case "gts":
			bit = paidGTS
		default:
			return nil, unknownKey(k, "")
		}
		name := string(k)
		if seen&bit != 0 {
			return nil, bad(name, "duplicate key")
		}
		seen |= bit
		switch bit {
		case paidV:
			var v int64
			v, err = s.int(name, maxVersionValue)
			p.V = int(v)
		case paidTxn:
			p.Txn, err = s.uint(name, math.MaxUint64)
		case paidAmt:
			p.Amt, err = s.int(name, MaxAmount)
		case paidGTS:
			p.GTS, err = s.int(name, math.MaxInt64)
		default:
			var b []byte
			if b, err = s.str(name); err == nil {
				switch bit {
				case paidType:
					p.Type = string(b)
				case paidTID:
					p.TID = string(b)
				case paidCode:
					p.Code = Code(b)
				case paidAuth:
					p.Auth = string(b)
				case paidSC:
					p.SC = string(b)
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
	if seen != paidAll {
		return nil, bad("", "a paid notice has v, type, tid, txn, code, auth, amt, sc and gts")
	}
	switch {
	case p.Type != NoticePaid:
		return nil, bad("type", `type must be "paid"`)
	case !ValidID(p.TID, MaxTerminalIDLen):
		return nil, bad("tid", "terminal id must be 1..32 of [A-Za-z0-9._-]")
	case p.Txn == 0:
		return nil, bad("txn", "txn must be > 0")
	case p.Code != CodeApproved:
		return nil, bad("code", `a paid notice is an approval, code "00"`)
	case !ValidID(p.Auth, maxAuthLen):
		return nil, bad("auth", "auth must be 1..32 of [A-Za-z0-9._-]")
	case p.Amt <= 0:
		return nil, bad("amt", "amt must be 1..1000000000")
	case !ValidID(p.SC, MaxStallCodeLen):
		return nil, bad("sc", "stall code must be 1..64 of [A-Za-z0-9._-]")
	}
	return p, nil
}
