package clearing

import (
	"errors"
	"math"

	"github.com/shopspring/decimal"
)

// ErrOverflow: a sum of fen left the int64 range. It is an error, never a
// wrapped value.
var ErrOverflow = errors.New("clearing: amount overflows int64 fen")

func add(a, b int64) (int64, error) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, ErrOverflow
	}
	return s, nil
}

func sub(a, b int64) (int64, error) {
	if b == math.MinInt64 {
		return 0, ErrOverflow
	}
	return add(a, -b)
}

// Fee applies rate to base fen, rounding half to even to the fen, and
// charges nothing on a base at or below zero (a window whose refunds
// exceed its takings pays no fee and gets none back).
//
// Rounding rule: the fee of a merchant and window is
//
//	fee = round_half_even( Σ over scenes of max(net_scene, 0) × rate_scene )
//
// computed exactly in decimal and rounded once, never per transaction:
// per-transaction rounding of a 0.38% fee on a 1-yuan bus fare would
// round 0.38 fen to 0 every time and charge nothing on a million fares.
// Half-even keeps the rounding unbiased over many merchants and days.
func roundFen(d decimal.Decimal) (int64, error) {
	r := d.RoundBank(0)
	if r.GreaterThan(decimal.NewFromInt(math.MaxInt64)) || r.LessThan(decimal.NewFromInt(math.MinInt64)) {
		return 0, ErrOverflow
	}
	return r.IntPart(), nil
}

// Fee returns round_half_even(max(base, 0) × rate) in fen.
func Fee(base int64, rate decimal.Decimal) (int64, error) {
	if base <= 0 {
		return 0, nil
	}
	return roundFen(decimal.NewFromInt(base).Mul(rate))
}
