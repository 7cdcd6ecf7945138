package terminals

import (
	"bytes"
	"math"
	"strconv"
)

// MaxBacklogTaps bounds the "obk.n" a heartbeat may report. A bus reader
// holds at most a few thousand offline taps before it stops accepting cards;
// the bound is generous so that an honest reader is never refused, and small
// enough that a sum over every registered terminal cannot overflow.
const MaxBacklogTaps = 1_000_000

// Backlog is the optional "obk" object of a heartbeat: how many offline taps
// the reader holds that it has not yet uploaded (offline_upload), and the
// terminal time (Unix ms) of the oldest of them. It lets operators see a
// backlog growing before the taps reach the gateway. N == 0 means nothing is
// waiting; then Oldest is 0. Set records that the heartbeat carried the
// field, so that "nothing waiting" and "not reported" stay apart.
type Backlog struct {
	N      uint32 `json:"n"`
	Oldest int64  `json:"oldest,omitempty"`
	Set    bool   `json:"-"`
}

// decodeBacklog reads the "obk" object with the strict scanner: "n" is
// required, "oldest" is required when n > 0 and must be 0 or absent when
// n == 0, so that every report has exactly one meaning.
func decodeBacklog(s *scanner, b *Backlog) error {
	empty, err := s.objectStart("obk")
	if err != nil {
		return err
	}
	b.Set = true
	var seen uint32
	for more := !empty; more; {
		k, err := s.key("obk")
		if err != nil {
			return err
		}
		switch string(k) {
		case "n":
			if seen&1 != 0 {
				return bad("obk.n", "duplicate key")
			}
			seen |= 1
			n, err := s.uint("obk.n", MaxBacklogTaps)
			if err != nil {
				return err
			}
			b.N = uint32(n)
		case "oldest":
			if seen&2 != 0 {
				return bad("obk.oldest", "duplicate key")
			}
			seen |= 2
			v, err := s.uint("obk.oldest", math.MaxInt64)
			if err != nil {
				return err
			}
			b.Oldest = int64(v)
		default:
			return unknownKey(k, "obk")
		}
		if more, err = s.after("obk"); err != nil {
			return err
		}
	}
	if seen&1 == 0 {
		return bad("obk.n", "a backlog report has n")
	}
	return b.check()
}

// check is the rule shared by both decoders and Validate.
func (b *Backlog) check() error {
	if b.N > MaxBacklogTaps {
		return bad("obk.n", "at most "+strconv.Itoa(MaxBacklogTaps)+" taps")
	}
	if b.N == 0 && b.Oldest != 0 {
		return bad("obk.oldest", "nothing waiting has no oldest tap")
	}
	if b.N > 0 && b.Oldest <= 0 {
		return bad("obk.oldest", "a waiting tap has a time in Unix milliseconds")
	}
	return nil
}

// appendJSON writes the canonical object: "oldest" only when n > 0.
func (b *Backlog) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"n":`...)
	dst = strconv.AppendUint(dst, uint64(b.N), 10)
	if b.N > 0 {
		dst = append(dst, `,"oldest":`...)
		dst = strconv.AppendInt(dst, b.Oldest, 10)
	}
	return append(dst, '}')
}

// MarshalJSON writes the canonical object (encoding/json users: tools, tests).
func (b Backlog) MarshalJSON() ([]byte, error) { return b.appendJSON(nil), nil }

// UnmarshalJSON reads the object for encoding/json users with the strict
// rules, so both decoders give the same value for what the gateway accepts.
func (b *Backlog) UnmarshalJSON(data []byte) error {
	*b = Backlog{}
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	s := scanner{b: data}
	if err := decodeBacklog(&s, b); err != nil {
		return err
	}
	return s.end()
}
