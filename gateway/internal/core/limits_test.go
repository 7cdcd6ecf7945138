package core

import (
	"fmt"
	"testing"
	"time"

	. "scenepay/terminals"
)

// e-CNY limit stories. Times are UTC; Asia/Shanghai midnight is 16:00 UTC.
func TestECNYLimits(t *testing.T) {
	const W, V = "ecny:w", "ecny:v"
	day1 := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	day2 := day1.Add(24 * time.Hour)
	at := func(base time.Time, s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	lim := &Config{ECNY: [5]ClassLimits{2: {Single: 100, Daily: 150, Annual: 200}, 4: {Single: 100, Daily: 300, Annual: 1000}}}
	tests := []struct {
		name  string
		cfg   *Config
		steps []step
	}{
		{"precedence single daily annual funds", lim, []step{
			{"open", at(day1, 0), openECNY(W, 2, 1000), CodeApproved, 1000, true},
			{"open poor", at(day1, 1), openECNY(V, 2, 10), CodeApproved, 10, true},
			{"single beats funds", at(day1, 2), buy(V, 101, 1), CodeLimitSingle, 10, true},
			{"funds", at(day1, 3), buy(V, 20, 2), CodeInsufficientFunds, 10, true},
			{"buy 100", at(day1, 4), buy(W, 100, 3), CodeApproved, 900, true},
			{"buy 50", at(day1, 5), buy(W, 50, 4), CodeApproved, 850, true},
			{"single beats daily", at(day1, 6), buy(W, 101, 5), CodeLimitSingle, 850, true},
			{"daily beats annual", at(day1, 7), buy(W, 60, 6), CodeLimitDaily, 850, true},
			{"daily beats funds", at(day1, 8), buy(V, 1, 7), CodeApproved, 9, true},
			{"next day: annual", at(day2, 0), buy(W, 60, 8), CodeLimitAnnual, 850, true},
			{"next day: up to annual", at(day2, 1), buy(W, 50, 9), CodeApproved, 800, true},
			{"annual full", at(day2, 2), buy(W, 1, 10), CodeLimitAnnual, 800, true},
			{"hold single", at(day2, 3), hold(V, 101, 11), CodeLimitSingle, 9, true},
			{"hold annual", at(day2, 4), hold(W, 1, 12), CodeLimitAnnual, 800, true},
		}},
		{"holds count when captured", lim, []step{
			{"open", at(day1, 0), openECNY(W, 4, 1000), CodeApproved, 1000, true},
			{"hold 100", at(day1, 1), hold(W, 100, 1), CodeApproved, 900, true},
			{"hold 100", at(day1, 2), hold(W, 100, 2), CodeApproved, 800, true},
			{"buy 100", at(day1, 3), buy(W, 100, 3), CodeApproved, 700, true},
			{"buy 100", at(day1, 4), buy(W, 100, 4), CodeApproved, 600, true},
			{"capture 100 (daily 300)", at(day1, 5), capture(W, 100, 5, 1), CodeApproved, 600, true},
			{"capture by daily", at(day1, 6), capture(W, 1, 6, 2), CodeLimitDaily, 600, true},
			{"hold by daily", at(day1, 7), hold(W, 1, 7), CodeLimitDaily, 600, true},
			{"capture next day", at(day2, 0), capture(W, 60, 8, 2), CodeApproved, 600, true},
			{"release rest", at(day2, 1), release(W, 9, 2), CodeApproved, 640, true},
		}},
		{"reversal lowers the day it was in", lim, []step{
			{"open", at(day1, 0), openECNY(W, 4, 1000), CodeApproved, 1000, true},
			{"buy 100", at(day1, 1), buy(W, 100, 1), CodeApproved, 900, true},
			{"buy 100", at(day1, 2), buy(W, 100, 2), CodeApproved, 800, true},
			{"buy 100", at(day1, 3), buy(W, 100, 3), CodeApproved, 700, true},
			{"daily full", at(day1, 4), buy(W, 1, 4), CodeLimitDaily, 700, true},
			{"reverse 3", at(day1, 5), rev(W, 100, 5, 3), CodeApproved, 800, true},
			{"room again", at(day1, 6), buy(W, 100, 6), CodeApproved, 700, true},
			{"next day buy", at(day2, 0), buy(W, 100, 7), CodeApproved, 600, true},
			{"next day buy", at(day2, 1), buy(W, 100, 8), CodeApproved, 500, true},
			{"next day buy", at(day2, 2), buy(W, 100, 9), CodeApproved, 400, true},
			{"reverse yesterday", at(day2, 3), rev(W, 100, 10, 1), CodeApproved, 500, true},
			{"today still full", at(day2, 4), buy(W, 1, 11), CodeLimitDaily, 500, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewShard(0, tc.cfg)
			recs := runSteps(t, s, tc.steps)
			replay(t, s, tc.cfg, recs)
		})
	}
}

// Default class 4 (anonymous) wallet: the balance cap, the daily and the
// annual limits are reached by sums of small payments, not only by one big
// one. The wallet is empty when the daily limit bites: the limit still wins
// over insufficient funds (precedence).
func TestECNYSumsOfSmallPayments(t *testing.T) {
	const W = "ecny:anon"
	s := NewShard(0, nil)
	start := time.Date(2026, 1, 5, 1, 0, 0, 0, time.UTC) // 09:00 Shanghai
	steps := []step{{"open", start, openECNY(W, 4, 1000*cny), CodeApproved, 1000 * cny, true}}
	txn := uint64(0)
	for d := 0; d < 10; d++ {
		day := start.Add(time.Duration(d) * 24 * time.Hour)
		if d > 0 {
			steps = append(steps, step{"top up", day, topup(W, 1000*cny, fmt.Sprint("day", d)), CodeApproved, 1000 * cny, true})
		}
		for i := 0; i < 100; i++ { // 100 x 10 CNY = the daily 1000 CNY
			txn++
			steps = append(steps, step{"10 CNY", day.Add(time.Duration(i+1) * time.Second), buy(W, 10*cny, txn), CodeApproved, (1000 - 10*int64(i+1)) * cny, true})
		}
		txn++
		steps = append(steps, step{"1 fen over daily", day.Add(200 * time.Second), buy(W, 1, txn), CodeLimitDaily, 0, true})
	}
	day11 := start.Add(10 * 24 * time.Hour)
	steps = append(steps,
		step{"to cap", day11, topup(W, 1000*cny, "day10"), CodeApproved, 1000 * cny, true},
		step{"1 fen over cap", day11.Add(time.Second), topup(W, 1, "day10b"), CodeLimitBalance, 1000 * cny, false},
		// 10 days x 1000 CNY = the annual 10,000 CNY
		step{"1 fen over annual", day11.Add(2 * time.Second), buy(W, 1, txn+1), CodeLimitAnnual, 1000 * cny, true},
	)
	recs := runSteps(t, s, steps)
	v, _ := s.Account(W)
	if v.YearTotal != 10_000*cny || v.DayTotal != 1000*cny {
		t.Errorf("counters got day %d year %d, want %d and %d", v.DayTotal, v.YearTotal, 1000*cny, 10_000*cny)
	}
	replay(t, s, nil, recs)
}

// Day and year boundaries fall at Asia/Shanghai midnight, 16:00 UTC.
func TestBusinessDayAndYearBoundaries(t *testing.T) {
	const W = "ecny:b"
	cfg := &Config{ECNY: [5]ClassLimits{4: {Single: 100, Daily: 100, Annual: 150}}}
	lastSec := time.Date(2026, 12, 31, 15, 59, 59, 0, time.UTC) // 23:59:59 Shanghai
	newYear := time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC)   // 00:00 2027-01-01 Shanghai
	s := NewShard(0, cfg)
	recs := runSteps(t, s, []step{
		{"open", lastSec.Add(-time.Hour), openECNY(W, 4, 1000), CodeApproved, 1000, true},
		{"yesterday", lastSec.Add(-24 * time.Hour), buy(W, 50, 1), CodeApproved, 950, true},
		{"today", lastSec.Add(-time.Second), buy(W, 100, 2), CodeApproved, 850, true},
		{"daily full at 23:59:59.999", lastSec.Add(999 * time.Millisecond), buy(W, 1, 3), CodeLimitDaily, 850, true},
		{"new day, new year at 00:00", newYear, buy(W, 100, 4), CodeApproved, 750, true},
		{"new day full", newYear.Add(time.Second), buy(W, 1, 5), CodeLimitDaily, 750, true},
	})
	v, _ := s.Account(W)
	wantDay := int32(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	if v.Year != 2027 || v.Day != wantDay || v.YearTotal != 100 || v.DayTotal != 100 {
		t.Errorf("counters got year %d day %d (%d, %d), want 2027 day %d (100, 100)", v.Year, v.Day, v.YearTotal, v.DayTotal, wantDay)
	}
	replay(t, s, cfg, recs)

	// Annual: 150 spent in 2026 (Shanghai) blocks 2026, not 2027, even
	// though 20:00 UTC on Dec 31 is still 2026 in UTC.
	s2 := NewShard(0, cfg)
	runSteps(t, s2, []step{
		{"open", lastSec.Add(-72 * time.Hour), openECNY(W, 4, 1000), CodeApproved, 1000, true},
		{"day -2", lastSec.Add(-48 * time.Hour), buy(W, 100, 1), CodeApproved, 900, true},
		{"day -1", lastSec.Add(-24 * time.Hour), buy(W, 50, 2), CodeApproved, 850, true},
		{"annual full", lastSec, buy(W, 1, 3), CodeLimitAnnual, 850, true},
		{"2027 in Shanghai, 2026 in UTC", newYear.Add(4 * time.Hour), buy(W, 1, 4), CodeApproved, 849, true},
	})
}
