package core

// The "limits" configuration document: the e-CNY wallet class table that
// operators change without a restart (DOMAIN.md: the published sets
// disagree, hence configuration). It is decoded strictly so that a typo is
// refused at PUT rather than silently turning a limit off.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// LimitsDocBytesMax bounds a limits document (bytes); the table is four
// small objects.
const LimitsDocBytesMax = 2048

// limitFenMax bounds one limit (fen): 10^15 fen keeps every sum of a day's
// or a year's payments far from int64 overflow.
const limitFenMax = 1_000_000_000_000_000

// LimitsDoc is the JSON form of the e-CNY class table:
//
//	{"classes":[{"class":1,"balance_fen":50000000,"single_fen":5000000,
//	  "daily_fen":10000000,"annual_fen":0}, ... classes 1..4, each once]}
//
// A zero limit means "no limit" (class 1 has no annual cap), as in
// ClassLimits; a limit must therefore be set explicitly, never omitted.
type LimitsDoc struct {
	Classes []LimitsClass `json:"classes"`
}

// LimitsClass is one row of LimitsDoc.
type LimitsClass struct {
	Class   int    `json:"class"`
	Balance *int64 `json:"balance_fen"`
	Single  *int64 `json:"single_fen"`
	Daily   *int64 `json:"daily_fen"`
	Annual  *int64 `json:"annual_fen"`
}

// LimitsError is a refused limits document.
type LimitsError struct{ Msg string }

func (e *LimitsError) Error() string { return "limits config: " + e.Msg }

func limErr(format string, a ...any) error { return &LimitsError{Msg: fmt.Sprintf(format, a...)} }

// DecodeLimits decodes a limits document strictly (unknown fields,
// trailing data, missing or repeated classes, missing, negative or
// oversize limits are errors) and returns the table at index 1..4.
func DecodeLimits(b []byte) ([5]ClassLimits, error) {
	var out [5]ClassLimits
	if len(b) > LimitsDocBytesMax {
		return out, limErr("document is %d bytes; the limit is %d", len(b), LimitsDocBytesMax)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d LimitsDoc
	if err := dec.Decode(&d); err != nil {
		return out, limErr("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return out, limErr("trailing data after the object")
	}
	if len(d.Classes) != 4 {
		return out, limErr("classes must list wallet classes 1..4 exactly once; got %d rows", len(d.Classes))
	}
	var seen [5]bool
	for _, c := range d.Classes {
		if c.Class < 1 || c.Class > 4 {
			return out, limErr("class %d not in 1..4", c.Class)
		}
		if seen[c.Class] {
			return out, limErr("class %d listed twice", c.Class)
		}
		seen[c.Class] = true
		l := &out[c.Class]
		for _, f := range []struct {
			name string
			v    *int64
			dst  *int64
		}{{"balance_fen", c.Balance, &l.Balance}, {"single_fen", c.Single, &l.Single}, {"daily_fen", c.Daily, &l.Daily}, {"annual_fen", c.Annual, &l.Annual}} {
			switch {
			case f.v == nil:
				return out, limErr("class %d: %s is missing (0 means no limit and must be explicit)", c.Class, f.name)
			case *f.v < 0 || *f.v > limitFenMax:
				return out, limErr("class %d: %s %d not in 0..%d", c.Class, f.name, *f.v, int64(limitFenMax))
			}
			*f.dst = *f.v
		}
	}
	return out, nil
}

// EncodeLimits is the JSON document of a table (index 1..4), the inverse
// of DecodeLimits.
func EncodeLimits(t [5]ClassLimits) []byte {
	d := LimitsDoc{Classes: make([]LimitsClass, 0, 4)}
	for k := 1; k <= 4; k++ {
		l := t[k]
		d.Classes = append(d.Classes, LimitsClass{Class: k, Balance: &l.Balance, Single: &l.Single, Daily: &l.Daily, Annual: &l.Annual})
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic("core: encode limits: " + err.Error()) // plain integers always marshal
	}
	return b
}

// SetLimits replaces the e-CNY class limits that debits and credits are
// decided with (the seam for the operators' "limits" document). Like
// SetTransit it must be called by the shard's single writer between Steps;
// Apply never consults the limits, so records already journaled replay the
// same under any table. A table of all zeros is ignored: regulatory limits
// never vanish by omission (see Config.normalized).
func (s *Shard) SetLimits(t [5]ClassLimits) {
	if t == ([5]ClassLimits{}) {
		return
	}
	s.cfg.ECNY = t
}

// Limits returns the e-CNY class table the shard decides with.
func (s *Shard) Limits() [5]ClassLimits { return s.cfg.ECNY }
