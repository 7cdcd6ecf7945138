package core

// The "limits" configuration document: the e-CNY wallet class table and
// the e-CNY double-offline caps that operators change without a restart
// (DOMAIN.md: the published sets disagree, hence configuration). It is
// decoded strictly so that a typo is refused at PUT rather than silently
// turning a limit off. The bus readers' offline floor limits are in the
// "transit" document (transit.Config.Offline), with the fares they bound.

import (
	"encoding/json"
	"fmt"

	"scenepay/internal/strictjson"
)

// LimitsDocBytesMax bounds a limits document (bytes); the table is four
// small objects.
const LimitsDocBytesMax = 2048

// LimitsTable is a decoded limits document: the class table (index 1..4)
// and the double-offline caps (zero when the document has no "offline"
// section: the caps the gateway was started with stay).
type LimitsTable struct {
	ECNY    [5]ClassLimits
	Offline OfflineCaps
}

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
//
// and optionally the e-CNY double-offline caps (both fields then
// required, each at least 1; without the section the caps stay as the
// gateway was started, by default 500 CNY and 10 payments, so documents
// written before the section existed keep their meaning):
//
//	"offline":{"payment_max_fen":50000,"count_max":10}
type LimitsDoc struct {
	Classes []LimitsClass  `json:"classes"`
	Offline *LimitsOffline `json:"offline,omitempty"`
}

// LimitsOffline is the "offline" section of LimitsDoc.
type LimitsOffline struct {
	PaymentMax *int64 `json:"payment_max_fen"`
	CountMax   *int   `json:"count_max"`
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
	t, err := DecodeLimitsDoc(b)
	return t.ECNY, err
}

// DecodeLimitsDoc decodes a limits document strictly, with its offline
// section (see LimitsDoc).
func DecodeLimitsDoc(b []byte) (LimitsTable, error) {
	var tab LimitsTable
	out := &tab.ECNY
	if len(b) > LimitsDocBytesMax {
		return LimitsTable{}, limErr("document is %d bytes; the limit is %d", len(b), LimitsDocBytesMax)
	}
	var d LimitsDoc
	if err := strictjson.Decode(b, &d); err != nil {
		return LimitsTable{}, limErr("%v", err)
	}
	if len(d.Classes) != 4 {
		return LimitsTable{}, limErr("classes must list wallet classes 1..4 exactly once; got %d rows", len(d.Classes))
	}
	var seen [5]bool
	for _, c := range d.Classes {
		if c.Class < 1 || c.Class > 4 {
			return LimitsTable{}, limErr("class %d not in 1..4", c.Class)
		}
		if seen[c.Class] {
			return LimitsTable{}, limErr("class %d listed twice", c.Class)
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
				return LimitsTable{}, limErr("class %d: %s is missing (0 means no limit and must be explicit)", c.Class, f.name)
			case *f.v < 0 || *f.v > limitFenMax:
				return LimitsTable{}, limErr("class %d: %s %d not in 0..%d", c.Class, f.name, *f.v, int64(limitFenMax))
			}
			*f.dst = *f.v
		}
	}
	if o := d.Offline; o != nil {
		switch {
		case o.PaymentMax == nil || o.CountMax == nil:
			return LimitsTable{}, limErr("offline: payment_max_fen and count_max are both required")
		case *o.PaymentMax < 1 || *o.PaymentMax > limitFenMax:
			return LimitsTable{}, limErr("offline: payment_max_fen %d not in 1..%d", *o.PaymentMax, int64(limitFenMax))
		case *o.CountMax < 1 || *o.CountMax > offlineCountLimit:
			return LimitsTable{}, limErr("offline: count_max %d not in 1..%d", *o.CountMax, offlineCountLimit)
		}
		tab.Offline = OfflineCaps{PaymentMax: *o.PaymentMax, CountMax: *o.CountMax}
	}
	return tab, nil
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

// EncodeLimitsTable is the JSON document of t, the inverse of
// DecodeLimitsDoc: with an "offline" section when t.Offline is set.
func EncodeLimitsTable(t LimitsTable) []byte {
	if t.Offline == (OfflineCaps{}) {
		return EncodeLimits(t.ECNY)
	}
	var d LimitsDoc
	if err := json.Unmarshal(EncodeLimits(t.ECNY), &d); err != nil {
		panic("core: encode limits: " + err.Error()) // our own encoding
	}
	o := t.Offline
	d.Offline = &LimitsOffline{PaymentMax: &o.PaymentMax, CountMax: &o.CountMax}
	b, err := json.Marshal(d)
	if err != nil {
		panic("core: encode limits: " + err.Error())
	}
	return b
}

// SetOfflineCaps replaces the e-CNY double-offline caps (the "offline"
// section of the limits document), like SetLimits between Steps by the
// shard's writer. Zero fields take the defaults (500 CNY, 10 payments):
// the caps never vanish by omission. Apply never consults them.
func (s *Shard) SetOfflineCaps(c OfflineCaps) { s.cfg.Offline = c.normalized() }

// OfflineCaps returns the double-offline caps the shard decides with.
func (s *Shard) OfflineCaps() OfflineCaps { return s.cfg.Offline.normalized() }

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
