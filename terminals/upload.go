package terminals

// The offline_upload message: a bus reader that approved taps offline
// (against its deny list, within floor limits) uploads them later, one
// message per card: "inst" names the card and "taps" lists its taps in any
// order. The message is idempotent by (tid, txn) like every request, and
// each tap by the reader's own sequence number "seq" (a tap sent again in
// a later upload is reported as a duplicate, never charged twice). The
// reply's "out" has one letter per tap, in the order the gateway applied
// them (by time, then seq): c charged, d debt, n no charge, u duplicate,
// o too old, x refused (docs/protocol.md section 16).

import (
	"bytes"
	"strconv"
)

// TypeOfflineUpload is the reader's upload of one card's offline taps.
const TypeOfflineUpload = "offline_upload"

// TypeECNYOffline is a stall or bus terminal's upload of one e-CNY
// "double offline" payment it received while neither side was online
// ("inst" the paying wallet, "amt" fen; the payee is the terminal's
// merchant). The gateway checks the offline caps (per payment, and count
// since the wallet's last online sync: OFFLINE_COUNT_EXCEEDED) in the
// same step as the debit.
const TypeECNYOffline = "ecny_offline"

// MaxUploadTaps bounds the taps of one offline_upload (one card's part).
const MaxUploadTaps = 16

// UploadTap is one tap a reader approved offline.
type UploadTap struct {
	Seq   uint64 // the reader's tap sequence number, >= 1, unique per reader
	Out   bool   // tap_out (false: tap_in)
	Route string
	Stop  string // required on distance routes
	TS    int64  // tap time, Unix milliseconds UTC
}

// UploadTaps is the "taps" array: a fixed-size array so that a Request
// stays comparable and decoding does not allocate.
type UploadTaps struct {
	n    int
	list [MaxUploadTaps]UploadTap
}

// Len is the number of taps.
func (u *UploadTaps) Len() int { return u.n }

// At returns tap i (0 <= i < Len).
func (u *UploadTaps) At(i int) UploadTap { return u.list[i] }

// Add appends a tap after checking it: seq >= 1 and not yet present, a
// route (and optional stop) of 1..32 of [A-Za-z0-9._-], ts > 0.
func (u *UploadTaps) Add(t UploadTap) error {
	switch {
	case t.Seq == 0:
		return bad("taps.seq", "seq must be >= 1")
	case !ValidID(t.Route, MaxRouteIDLen):
		return bad("taps.route", "must be 1..32 of [A-Za-z0-9._-]")
	case t.Stop != "" && !ValidID(t.Stop, MaxRouteIDLen):
		return bad("taps.stop", "must be 1..32 of [A-Za-z0-9._-]")
	case t.TS <= 0:
		return bad("taps.ts", "timestamp must be Unix milliseconds")
	case u.n == MaxUploadTaps:
		return bad("taps", "at most "+strconv.Itoa(MaxUploadTaps)+" taps per upload")
	}
	for i := 0; i < u.n; i++ {
		if u.list[i].Seq == t.Seq {
			return bad("taps.seq", "duplicate seq")
		}
	}
	u.list[u.n] = t
	u.n++
	return nil
}

// decodeUploadTaps reads the "taps" array with the strict scanner: 1 to
// MaxUploadTaps objects {"seq":N,"kind":"in"|"out","route":"..","stop":"..","ts":N}
// ("stop" optional), each key once, no other keys.
func decodeUploadTaps(s *scanner, u *UploadTaps) error {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '[' {
		return s.errAt("taps", "expected a JSON array")
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		return bad("taps", "an upload carries at least one tap")
	}
	for {
		if err := decodeUploadTap(s, u); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return s.errAt("taps", "unterminated array")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			continue
		case ']':
			s.i++
			return nil
		}
		return s.errAt("taps", "expected ',' or ']'")
	}
}

func decodeUploadTap(s *scanner, u *UploadTaps) error {
	empty, err := s.objectStart("taps")
	if err != nil {
		return err
	}
	if empty {
		return bad("taps", "a tap names seq, kind, route and ts")
	}
	var t UploadTap
	var seen [5]bool
	for more := true; more; {
		k, err := s.key("taps")
		if err != nil {
			return err
		}
		idx := -1
		switch string(k) {
		case "seq":
			idx = 0
			t.Seq, err = s.uint("taps.seq", 1<<53)
		case "kind":
			idx = 1
			var b []byte
			if b, err = s.str("taps.kind"); err == nil {
				switch string(b) {
				case "in":
				case "out":
					t.Out = true
				default:
					err = bad("taps.kind", `kind is "in" or "out"`)
				}
			}
		case "route", "stop":
			idx = 2
			if string(k) == "stop" {
				idx = 3
			}
			var b []byte
			if b, err = s.str("taps." + string(k)); err == nil {
				if idx == 2 {
					t.Route = string(b)
				} else {
					t.Stop = string(b)
				}
			}
		case "ts":
			idx = 4
			t.TS, err = s.int("taps.ts", 1<<53)
		default:
			return unknownKey(k, "taps")
		}
		if err != nil {
			return err
		}
		if seen[idx] {
			return bad("taps", "duplicate key")
		}
		seen[idx] = true
		if more, err = s.after("taps"); err != nil {
			return err
		}
	}
	if !seen[0] || !seen[1] || !seen[2] || !seen[4] {
		return bad("taps", "a tap names seq, kind, route and ts")
	}
	return u.Add(t)
}

// appendJSON appends the "taps" array in its canonical form.
func (u *UploadTaps) appendJSON(dst []byte) []byte {
	dst = append(dst, '[')
	for i := 0; i < u.n; i++ {
		t := &u.list[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"seq":`...)
		dst = strconv.AppendUint(dst, t.Seq, 10)
		if t.Out {
			dst = append(dst, `,"kind":"out"`...)
		} else {
			dst = append(dst, `,"kind":"in"`...)
		}
		dst = append(dst, `,"route":`...)
		dst = appendJSONString(dst, t.Route)
		if t.Stop != "" {
			dst = append(dst, `,"stop":`...)
			dst = appendJSONString(dst, t.Stop)
		}
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendInt(dst, t.TS, 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// hash feeds the taps to a content hash (num, str as in ContentHash).
func (u *UploadTaps) hash(num func(uint64), str func(string)) {
	num(uint64(u.n))
	for i := 0; i < u.n; i++ {
		t := &u.list[i]
		num(t.Seq)
		if t.Out {
			num(1)
		} else {
			num(0)
		}
		str(t.Route)
		str(t.Stop)
		num(uint64(t.TS))
	}
}

// MarshalJSON writes the canonical array (encoding/json users: tools, tests).
func (u UploadTaps) MarshalJSON() ([]byte, error) { return u.appendJSON(nil), nil }

// UnmarshalJSON reads the array for encoding/json users with the strict
// rules, so both decoders give the same value for what the gateway accepts.
func (u *UploadTaps) UnmarshalJSON(b []byte) error {
	*u = UploadTaps{}
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	s := scanner{b: b}
	if err := decodeUploadTaps(&s, u); err != nil {
		return err
	}
	return s.end()
}
