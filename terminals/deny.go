package terminals

// The deny list of bus readers (docs/protocol.md section 16). The gateway
// keeps two retained messages for the bus group, in the usual frame and
// signed with the config-signing key Kcfg (not a terminal's key):
//
//	{root}/g/bus/deny/full   {"v":1,"kind":"full","version":F,"cards":[...]}
//	{root}/g/bus/deny/delta  {"v":1,"kind":"delta","from":F,"version":V,"add":[...],"remove":[...]}
//
// A delta may also carry "stop_first_rides":[routes],"stop_day":D. This
// file is the format: the topics, the message, its canonical encoding
// (what the gateway publishes) and the strict decoder (what a reader
// accepts). Which messages are published when, and how a reader applies
// them, are the gateway's and the reader's (section 16 states both).

import (
	"errors"
	"fmt"
	"strconv"

	"scenepay/internal/strictjson"
)

// DenyGroup is the terminal group that receives the deny list.
const DenyGroup = "bus"

// DenyCfgName is the heartbeat "cfg" name a reader reports the applied
// deny-list version under.
const DenyCfgName = "deny"

// Kinds of deny-list message.
const (
	DenyKindFull  = "full"
	DenyKindDelta = "delta"
)

// Deny-list message bounds (of what a reader decodes).
const (
	// DenyPayloadMax bounds a deny-list body (a full list is not bound by
	// the request frame limit, MaxPayload).
	DenyPayloadMax = 1 << 20
	// DenyCardsMax bounds the entries of each list of a message.
	DenyCardsMax = 100_000
	// DenyStopsMax bounds the stopped routes of a delta.
	DenyStopsMax = 256
	// DenyEntryMax bounds the bytes of one card key ("kind:id") or route.
	DenyEntryMax = MaxInstrumentIDLen + 8
)

// ErrDeny marks a deny-list message a reader refuses.
var ErrDeny = errors.New("terminals: deny-list message")

// DenyTopicFull is the bus group's retained topic of the full list.
func DenyTopicFull(t Topics) string { return t.Root + "/g/" + DenyGroup + "/deny/full" }

// DenyTopicDelta is the bus group's retained topic of the delta.
func DenyTopicDelta(t Topics) string { return t.Root + "/g/" + DenyGroup + "/deny/delta" }

// DenyMessage is a deny-list message body.
type DenyMessage struct {
	V       int      `json:"v"`
	Kind    string   `json:"kind"` // DenyKindFull or DenyKindDelta
	From    uint64   `json:"from"` // delta: the version of the full list it starts from
	Version uint64   `json:"version"`
	Cards   []string `json:"cards"` // full: the whole list, sorted
	Add     []string `json:"add"`   // delta: listed at Version, sorted
	Remove  []string `json:"remove"`
	// StopFirstRides (delta only) lists the routes whose first-ride
	// budget is spent for transit day StopDay (days since 1970-01-01 of
	// the Asia/Shanghai transit day): readers on them refuse unknown
	// cards until their own transit day is past StopDay.
	StopFirstRides []string `json:"stop_first_rides"`
	StopDay        int32    `json:"stop_day"`
}

// AppendJSON appends the canonical encoding of the message: a full list
// carries v, kind, version and cards; a delta v, kind, from, version, add
// and remove, then stop_first_rides and stop_day when routes are stopped.
// Absent lists are written empty.
func (m *DenyMessage) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(m.V), 10)
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, m.Kind)
	if m.Kind == DenyKindFull {
		dst = append(dst, `,"version":`...)
		dst = strconv.AppendUint(dst, m.Version, 10)
		dst = append(dst, `,"cards":`...)
		dst = appendJSONStrings(dst, m.Cards)
		return append(dst, '}')
	}
	dst = append(dst, `,"from":`...)
	dst = strconv.AppendUint(dst, m.From, 10)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, m.Version, 10)
	dst = append(dst, `,"add":`...)
	dst = appendJSONStrings(dst, m.Add)
	dst = append(dst, `,"remove":`...)
	dst = appendJSONStrings(dst, m.Remove)
	if len(m.StopFirstRides) > 0 {
		dst = append(dst, `,"stop_first_rides":`...)
		dst = appendJSONStrings(dst, m.StopFirstRides)
		dst = append(dst, `,"stop_day":`...)
		dst = strconv.AppendInt(dst, int64(m.StopDay), 10)
	}
	return append(dst, '}')
}

// DenyEntryJSONLen is the size of card as one entry of a deny-list
// body (a JSON string, quotes and escapes included), without the comma.
func DenyEntryJSONLen(card string) int {
	var b [2*DenyEntryMax + 8]byte
	return len(appendJSONString(b[:0], card))
}

func appendJSONStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// DecodeDeny reads an authenticated deny-list body: one JSON object with
// the keys of DenyMessage and no others, v 1, kind full (cards, no from,
// add, remove or stops) or delta (from <= version, no cards), at most
// DenyCardsMax entries per list and DenyStopsMax stopped routes, entries
// of 1..DenyEntryMax bytes. Errors wrap ErrDeny.
func DecodeDeny(body []byte) (DenyMessage, error) {
	var m DenyMessage
	if len(body) > DenyPayloadMax {
		return m, fmt.Errorf("%w: %d bytes", ErrDeny, len(body))
	}
	if err := strictjson.Decode(body, &m); err != nil {
		return DenyMessage{}, fmt.Errorf("%w: %v", ErrDeny, err)
	}
	if m.V != 1 {
		return DenyMessage{}, fmt.Errorf("%w: v %d", ErrDeny, m.V)
	}
	switch m.Kind {
	case DenyKindFull:
		if m.From != 0 || m.Add != nil || m.Remove != nil || m.StopFirstRides != nil {
			return DenyMessage{}, fmt.Errorf("%w: a full list carries only cards", ErrDeny)
		}
	case DenyKindDelta:
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
			if len(c) == 0 || len(c) > DenyEntryMax {
				return DenyMessage{}, fmt.Errorf("%w: entry of %d bytes", ErrDeny, len(c))
			}
		}
	}
	if len(m.StopFirstRides) > DenyStopsMax {
		return DenyMessage{}, fmt.Errorf("%w: %d stopped routes", ErrDeny, len(m.StopFirstRides))
	}
	return m, nil
}
