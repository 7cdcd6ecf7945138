package core

import (
	"math"
	"strings"
	"testing"
	"time"

	. "scenepay/terminals"
)

const cny = 100 // fen

// Scenario tables: each runs on a fresh shard, then the journal is replayed
// on another fresh shard and must give the identical state.
func TestScenarios(t *testing.T) {
	const (
		C = "county:c1"
		B = "bank:tok_b1"
		E = "ecny:w4"
	)
	small := &Config{ReversibleMax: 2, RefsMax: 2, HoldsMax: 2}
	tests := []struct {
		name  string
		cfg   *Config
		steps []step
	}{
		{"open", nil, []step{
			{"county", time.Time{}, open(C, 1000), CodeApproved, 1000, true},
			{"again", time.Time{}, open(C, 5), CodeIDConflict, 1000, false},
			{"bank overdraft", time.Time{}, openBank(B, 0, -5000), CodeApproved, 5000, true},
			{"ecny class 4", time.Time{}, openECNY(E, 4, 100), CodeApproved, 100, true},
			{"ecny class 0", time.Time{}, openECNY("ecny:x", 0, 0), CodeMalformed, 0, false},
			{"ecny class 5", time.Time{}, openECNY("ecny:x", 5, 0), CodeMalformed, 0, false},
			{"county with class", time.Time{}, openECNY("county:x", 1, 0), CodeMalformed, 0, false},
			{"county overdraft", time.Time{}, openBank("county:x", 0, -1), CodeMalformed, 0, false},
			{"positive floor", time.Time{}, openBank("bank:tok_x", 10, 1), CodeMalformed, 0, false},
			{"unknown kind", time.Time{}, open("card:x", 0), CodeMalformed, 0, false},
			{"empty id", time.Time{}, open("county:", 0), CodeMalformed, 0, false},
			{"no kind", time.Time{}, open("x", 0), CodeMalformed, 0, false},
			{"negative", time.Time{}, open("county:x", -1), CodeInvalidAmount, 0, false},
			{"ecny over cap", time.Time{}, openECNY("ecny:x", 4, 1000*cny+1), CodeLimitBalance, 0, false},
			{"ecny at cap", time.Time{}, openECNY("ecny:y", 4, 1000*cny), CodeApproved, 1000 * cny, true},
			{"balance-floor overflow", time.Time{}, openBank("bank:tok_y", math.MaxInt64, -1), CodeInvalidAmount, 0, false},
			{"max balance", time.Time{}, open("county:max", math.MaxInt64), CodeApproved, math.MaxInt64, true},
			{"too long key", time.Time{}, open("county:"+strings.Repeat("x", 250), 0), CodeMalformed, 0, false},
		}},
		{"topup", &Config{RefsMax: 2}, []step{
			{"open", time.Time{}, open(C, 100), CodeApproved, 100, true},
			{"credit", time.Time{}, topup(C, 50, "r1"), CodeApproved, 150, true},
			{"same ref", time.Time{}, topup(C, 50, "r1"), CodeApproved, 150, false},
			{"same ref other amount", time.Time{}, topup(C, 51, "r1"), CodeIDConflict, 150, false},
			{"same ref other account", time.Time{}, topup("county:zz", 50, "r1"), CodeIDConflict, 0, false},
			{"no ref", time.Time{}, topup(C, 50, ""), CodeMalformed, 150, false},
			{"zero", time.Time{}, topup(C, 0, "r2"), CodeInvalidAmount, 150, false},
			{"negative", time.Time{}, topup(C, -5, "r2"), CodeInvalidAmount, 150, false},
			{"unknown", time.Time{}, topup("county:zz", 5, "r2"), CodeUnknownInstrument, 0, false},
			{"overflow", time.Time{}, topup(C, math.MaxInt64-149, "r2"), CodeInvalidAmount, 150, false},
			{"to max", time.Time{}, topup(C, math.MaxInt64-150, "r2"), CodeApproved, math.MaxInt64, true},
			{"ecny", time.Time{}, openECNY(E, 4, 900*cny), CodeApproved, 900 * cny, true},
			{"ecny over cap", time.Time{}, topup(E, 100*cny+1, "r3"), CodeLimitBalance, 900 * cny, false},
			{"ecny to cap", time.Time{}, topup(E, 100*cny, "r3"), CodeApproved, 1000 * cny, true},
			{"declined ref is not burnt", time.Time{}, topup(C, 1, "r4"), CodeInvalidAmount, math.MaxInt64, false},
			{"ref evicted (RefsMax 2)", time.Time{}, topup(E, 1, "r1"), CodeLimitBalance, 1000 * cny, false},
		}},
		{"block", nil, []step{
			{"open", time.Time{}, open(C, 100), CodeApproved, 100, true},
			{"block unknown", time.Time{}, block("county:zz", true), CodeUnknownInstrument, 0, false},
			{"block", time.Time{}, block(C, true), CodeApproved, 100, true},
			{"purchase", time.Time{}, buy(C, 10, 1), CodeInstrumentBlocked, 100, true},
			{"hold", time.Time{}, hold(C, 10, 2), CodeInstrumentBlocked, 100, true},
			{"balance", time.Time{}, bal(C), CodeInstrumentBlocked, 100, false},
			{"topup pays debt", time.Time{}, topup(C, 10, "r1"), CodeApproved, 110, true},
			{"unblock", time.Time{}, block(C, false), CodeApproved, 110, true},
			{"purchase", time.Time{}, buy(C, 10, 3), CodeApproved, 100, true},
			{"balance", time.Time{}, bal(C), CodeApproved, 100, false},
		}},
		{"purchase", nil, []step{
			{"open", time.Time{}, open(C, 100), CodeApproved, 100, true},
			{"approved", time.Time{}, buy(C, 30, 1), CodeApproved, 70, true},
			{"insufficient", time.Time{}, buy(C, 71, 2), CodeInsufficientFunds, 70, true},
			{"exact", time.Time{}, buy(C, 70, 3), CodeApproved, 0, true},
			{"empty", time.Time{}, buy(C, 1, 4), CodeInsufficientFunds, 0, true},
			{"zero amount", time.Time{}, buy(C, 0, 5), CodeInvalidAmount, 0, true},
			{"negative amount", time.Time{}, buy(C, -1, 6), CodeInvalidAmount, 0, true},
			{"unknown account", time.Time{}, buy("county:zz", 1, 7), CodeUnknownInstrument, 0, true},
			{"txn reused", time.Time{}, buy(C, 1, 1), CodeIDConflict, 0, false},
			{"no tid", time.Time{}, Input{Op: OpPurchase, Account: C, Amount: 1, Txn: 9}, CodeMalformed, 0, false},
			{"no txn", time.Time{}, Input{Op: OpPurchase, Account: C, Amount: 1, TID: "T1"}, CodeMalformed, 0, false},
			{"unknown op", time.Time{}, Input{Op: 42, Account: C}, CodeUnsupported, 0, false},
			{"op zero", time.Time{}, Input{Op: 0, Account: C}, CodeUnsupported, 0, false},
			{"bank", time.Time{}, openBank(B, 100, -50), CodeApproved, 150, true},
			{"bank overdraft", time.Time{}, buy(B, 140, 10), CodeApproved, 10, true},
			{"bank below floor", time.Time{}, buy(B, 11, 11), CodeInsufficientFunds, 10, true},
			{"bank to floor", time.Time{}, buy(B, 10, 12), CodeApproved, 0, true},
			{"balance", time.Time{}, bal(B), CodeApproved, 0, false},
			{"balance unknown", time.Time{}, bal("bank:zz"), CodeUnknownInstrument, 0, false},
		}},
		{"reversal", small, []step{
			{"open", time.Time{}, open(C, 100), CodeApproved, 100, true},
			{"buy", time.Time{}, buy(C, 30, 1), CodeApproved, 70, true},
			{"wrong amount", time.Time{}, rev(C, 29, 2, 1), CodeInvalidAmount, 70, true},
			{"wrong account", time.Time{}, rev("county:zz", 30, 2, 1), CodeOriginalNotFound, 0, false},
			{"unknown original", time.Time{}, rev(C, 30, 2, 99), CodeOriginalNotFound, 70, false},
			{"reverse", time.Time{}, rev(C, 30, 3, 1), CodeApproved, 100, true},
			{"again, same id", time.Time{}, rev(C, 30, 3, 1), CodeApproved, 100, false},
			{"again, new id", time.Time{}, rev(C, 30, 4, 1), CodeApproved, 100, false},
			{"declined original", time.Time{}, buy(C, 500, 5), CodeInsufficientFunds, 100, true},
			{"reverse declined", time.Time{}, rev(C, 500, 6, 5), CodeOriginalNotFound, 100, false},
			{"buy 7", time.Time{}, buy(C, 1, 7), CodeApproved, 99, true},
			{"buy 8", time.Time{}, buy(C, 2, 8), CodeApproved, 97, true},
			{"buy 9 evicts 7", time.Time{}, buy(C, 3, 9), CodeApproved, 94, true},
			{"reverse evicted", time.Time{}, rev(C, 1, 10, 7), CodeOriginalNotFound, 94, false},
			{"reverse 8", time.Time{}, rev(C, 2, 11, 8), CodeApproved, 96, true},
			{"reversal on blocked account", time.Time{}, block(C, true), CodeApproved, 96, true},
			{"reverse 9", time.Time{}, rev(C, 3, 12, 9), CodeApproved, 99, true},
		}},
		{"holds", small, []step{
			{"open", time.Time{}, open(C, 100), CodeApproved, 100, true},
			{"hold", time.Time{}, hold(C, 60, 1), CodeApproved, 40, true},
			{"held counts", time.Time{}, buy(C, 41, 2), CodeInsufficientFunds, 40, true},
			{"hold beyond", time.Time{}, hold(C, 41, 3), CodeInsufficientFunds, 40, true},
			{"hold id reused", time.Time{}, hold(C, 1, 1), CodeIDConflict, 40, false},
			{"purchase on hold id", time.Time{}, buy(C, 1, 1), CodeIDConflict, 40, false},
			{"capture part", time.Time{}, capture(C, 20, 4, 1), CodeApproved, 40, true},
			{"capture part", time.Time{}, capture(C, 15, 5, 1), CodeApproved, 40, true},
			{"capture beyond", time.Time{}, capture(C, 26, 6, 1), CodeInvalidAmount, 40, true},
			{"capture zero", time.Time{}, capture(C, 0, 6, 1), CodeInvalidAmount, 40, true},
			{"capture other account", time.Time{}, capture("county:zz", 1, 6, 1), CodeOriginalNotFound, 0, false},
			{"capture unknown", time.Time{}, capture(C, 1, 6, 77), CodeOriginalNotFound, 40, false},
			{"release", time.Time{}, release(C, 7, 1), CodeApproved, 65, true},
			{"release twice", time.Time{}, release(C, 8, 1), CodeOriginalNotFound, 65, false},
			{"capture released", time.Time{}, capture(C, 1, 9, 1), CodeOriginalNotFound, 65, false},
			{"hold 10", time.Time{}, hold(C, 5, 10), CodeApproved, 60, true},
			{"capture all", time.Time{}, capture(C, 5, 11, 10), CodeApproved, 60, true},
			{"release captured", time.Time{}, release(C, 12, 10), CodeOriginalNotFound, 60, false},
			{"capture captured", time.Time{}, capture(C, 1, 13, 10), CodeOriginalNotFound, 60, false},
			{"hold a", time.Time{}, hold(C, 1, 14), CodeApproved, 59, true},
			{"hold b", time.Time{}, hold(C, 1, 15), CodeApproved, 58, true},
			{"hold table full", time.Time{}, hold(C, 1, 16), CodeBusy, 58, false},
			{"block", time.Time{}, block(C, true), CodeApproved, 58, true},
			{"capture on blocked", time.Time{}, capture(C, 1, 17, 14), CodeApproved, 58, true},
			{"release on blocked", time.Time{}, release(C, 18, 15), CodeApproved, 59, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewShard(3, tc.cfg)
			recs := runSteps(t, s, tc.steps)
			replay(t, s, tc.cfg, recs)
		})
	}
}

// The released amount is the remainder, whatever the request says.
func TestReleaseRecordsRemainder(t *testing.T) {
	s := NewShard(1, nil)
	runSteps(t, s, []step{
		{"open", time.Time{}, open("county:a", 100), CodeApproved, 100, true},
		{"hold", time.Time{}, hold("county:a", 60, 1), CodeApproved, 40, true},
		{"capture", time.Time{}, capture("county:a", 25, 2, 1), CodeApproved, 40, true},
	})
	var out Output
	in := release("county:a", 3, 1)
	in.Amount = 999
	s.Step(t0, &in, &out)
	var r Record
	if err := DecodeRecord(out.Record, &r); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Amount, int64(35); got != want {
		t.Fatalf("release record amount got %d, want %d", got, want)
	}
	v, _ := s.Account("county:a")
	if v.Balance != 75 || v.Held != 0 || v.Available != 75 {
		t.Fatalf("after release got %+v, want balance 75 held 0", v)
	}
}

func TestOverflow(t *testing.T) {
	const C = "county:big"
	big := int64(1) << 62
	s := NewShard(1, nil)
	recs := runSteps(t, s, []step{
		{"open max", time.Time{}, open(C, math.MaxInt64), CodeApproved, math.MaxInt64, true},
		{"top-up overflows", time.Time{}, topup(C, 1, "r"), CodeInvalidAmount, math.MaxInt64, false},
		{"buy 2^62", time.Time{}, buy(C, big, 1), CodeApproved, math.MaxInt64 - big, true},
		// the day counter would pass 2^63 - 1: an error, not a wrap
		{"day counter overflows", time.Time{}, buy(C, big, 2), CodeInvalidAmount, math.MaxInt64 - big, true},
		{"reverse", time.Time{}, rev(C, big, 3, 1), CodeApproved, math.MaxInt64, true},
		{"buy again", time.Time{}, buy(C, big, 4), CodeApproved, math.MaxInt64 - big, true},
		{"hold max", time.Time{}, hold(C, math.MaxInt64-big, 5), CodeApproved, 0, true},
		{"capture overflows day", time.Time{}, capture(C, big, 6, 5), CodeInvalidAmount, 0, true},
		{"release", time.Time{}, release(C, 7, 5), CodeApproved, math.MaxInt64 - big, true},
		{"bank deep floor", time.Time{}, openBank("bank:tok_d", 1, math.MinInt64+1), CodeInvalidAmount, 0, false},
		{"bank floor", time.Time{}, openBank("bank:tok_d", 0, math.MinInt64+1), CodeApproved, math.MaxInt64, true},
		{"bank top-up overflows", time.Time{}, topup("bank:tok_d", 1, "r2"), CodeInvalidAmount, math.MaxInt64, false},
		{"bank min floor", time.Time{}, openBank("bank:tok_e", 0, math.MinInt64), CodeInvalidAmount, 0, false},
	})
	replay(t, s, nil, recs)
}

func TestShardOf(t *testing.T) {
	tests := []struct {
		key  string
		n    int
		want int
	}{
		{"county:1", 1, 0},
		{"county:1", 0, 0},
		{"county:1", -3, 0},
		// FNV-1a 64 of "" is the offset basis 14695981039346656037.
		{"", 16, int(uint64(14695981039346656037) % 16)},
	}
	for _, tc := range tests {
		if got := ShardOf(tc.key, tc.n); got != tc.want {
			t.Errorf("ShardOf(%q, %d) got %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
	counts := make([]int, 8)
	for i := 0; i < 8000; i++ {
		k := "county:" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i%10)) + itoa(i)
		a, b := ShardOf(k, 8), ShardOf(k, 8)
		if a != b || a < 0 || a >= 8 {
			t.Fatalf("ShardOf(%q) unstable or out of range: %d %d", k, a, b)
		}
		counts[a]++
	}
	for i, c := range counts {
		if c < 700 || c > 1300 {
			t.Errorf("shard %d got %d of 8000 keys: partition is lopsided", i, c)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.Loc.String() != "Asia/Shanghai" {
		t.Errorf("Loc got %s, want Asia/Shanghai", c.Loc)
	}
	want := [5]ClassLimits{
		1: {50_000_000, 5_000_000, 10_000_000, 0},
		2: {1_000_000, 500_000, 1_000_000, 30_000_000},
		3: {200_000, 200_000, 200_000, 5_000_000},
		4: {100_000, 50_000, 100_000, 1_000_000},
	}
	if c.ECNY != want {
		t.Errorf("ECNY got %+v, want %+v", c.ECNY, want)
	}
	n := (&Config{ReversibleMax: -1, HoldsMax: 1 << 30}).normalized()
	if n.ReversibleMax != DefaultReversibleMax || n.HoldsMax != maxTableEntries || n.RefsMax != DefaultRefsMax || n.Loc == nil {
		t.Errorf("normalized got %+v", n)
	}
}
