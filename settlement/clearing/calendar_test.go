package clearing

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"scenepay/settlement/store"
)

func sh(y int, m time.Month, d, hh, mm, ss, us int) time.Time {
	return time.Date(y, m, d, hh, mm, ss, us*1000, Shanghai)
}

func TestCalendarCutOff(t *testing.T) {
	cal := Calendar{}
	cases := []struct {
		at   time.Time
		want string
	}{
		{sh(2026, 3, 1, 22, 59, 59, 999999), "2026-03-01"},
		{sh(2026, 3, 1, 23, 0, 0, 0), "2026-03-02"},
		{sh(2026, 3, 1, 0, 0, 0, 0), "2026-03-01"},
		{sh(2026, 2, 28, 23, 0, 0, 0), "2026-03-01"},
		{sh(2026, 12, 31, 23, 30, 0, 0), "2027-01-01"},
		{time.Date(2026, 3, 1, 14, 59, 59, 0, time.UTC), "2026-03-01"}, // 22:59:59 Shanghai
		{time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC), "2026-03-02"},
	}
	for _, c := range cases {
		if got := cal.Of(c.at).ID; got != c.want {
			t.Errorf("Of(%v) = %s, want %s", c.at, got, c.want)
		}
	}
	w, ok := cal.ByID("2026-03-01")
	if !ok || !w.Start.Equal(sh(2026, 2, 28, 23, 0, 0, 0)) || !w.CutOff.Equal(sh(2026, 3, 1, 23, 0, 0, 0)) {
		t.Fatalf("ByID = %+v, %v", w, ok)
	}
	for _, bad := range []string{"2026-3-1", "2026-02-30", "x"} {
		if _, ok := cal.ByID(bad); ok {
			t.Errorf("ByID(%q) accepted", bad)
		}
	}
	// Contiguous: each window starts where the previous one ends, over a
	// year, and every instant falls in the window Of names.
	w = cal.Of(sh(2026, 1, 1, 12, 0, 0, 0))
	for i := 0; i < 400; i++ {
		n := cal.Next(w)
		if !n.Start.Equal(w.CutOff) || n.ID <= w.ID || cal.Prev(n).ID != w.ID {
			t.Fatalf("windows %+v and %+v are not contiguous", w, n)
		}
		if cal.Of(w.CutOff.Add(-time.Microsecond)).ID != w.ID || cal.Of(w.Start).ID != w.ID {
			t.Fatalf("window %s does not hold its own bounds", w.ID)
		}
		w = n
	}
	mid := Calendar{CutOff: 24 * time.Hour}
	if got := mid.Of(sh(2026, 3, 1, 23, 59, 59, 0)).ID; got != "2026-03-01" {
		t.Errorf("midnight cut-off: %s", got)
	}
	if got := mid.Of(sh(2026, 3, 2, 0, 0, 0, 0)).ID; got != "2026-03-02" {
		t.Errorf("midnight cut-off: %s", got)
	}
}

func TestFeeRounding(t *testing.T) {
	d := decimal.RequireFromString
	cases := []struct {
		base int64
		rate string
		want int64
	}{
		{100, "0.005", 0},        // 0.5 -> 0 (half to even)
		{300, "0.005", 2},        // 1.5 -> 2
		{500, "0.005", 2},        // 2.5 -> 2
		{700, "0.005", 4},        // 3.5 -> 4
		{101, "0.005", 1},        // 0.505 -> 1
		{100, "0.0038", 0},       // a bus fare alone pays nothing...
		{100_000, "0.0038", 380}, // ...a thousand of them in one window pay 380
		{0, "0.01", 0},
		{-5000, "0.01", 0}, // refunds beyond takings: no fee, none returned
		{9_000_000_000_000_000_000, "0.9999999", 8_999_999_100_000_000_000},
		{1, "0", 0},
	}
	for _, c := range cases {
		got, err := Fee(c.base, d(c.rate))
		if err != nil || got != c.want {
			t.Errorf("Fee(%d, %s) = %d, %v; want %d", c.base, c.rate, got, err, c.want)
		}
	}
}

func TestComputeRoundsOncePerMerchant(t *testing.T) {
	w := store.Window{ID: "2026-03-01"}
	tot := func(net int64) store.Totals { return store.Totals{Count: 1, Gross: net, Payments: 1, Net: net} }
	scenes := []store.SceneTotals{
		{Merchant: "M1", Scene: "bus", Totals: tot(300)},   // 300 × 0.002 = 0.6
		{Merchant: "M1", Scene: "stall", Totals: tot(120)}, // 120 × 0.005 = 0.6
		{Merchant: "M2", Scene: "stall", Totals: store.Totals{Count: 2, Gross: 100, Payments: 1, Refunds: -300, RefundCount: 1, Net: -200}},
		{Merchant: "M3", Scene: "stall", Totals: tot(10_000)},
	}
	rates, err := NewRates([]store.FeeRate{{Merchant: "*", Scene: "bus", Rate: "0.002"}, {Merchant: "*", Scene: "stall", Rate: "0.005"},
		{Merchant: "M3", Scene: "stall", Rate: "0.0025"}}, decimal.Zero)
	if err != nil {
		t.Fatal(err)
	}
	merchants := map[string]store.Merchant{
		"M2": {ID: "M2", MarketOperator: "MKT", MarketFeeRate: "0.05"},
		"M3": {ID: "M3", MarketOperator: "MKT", MarketFeeRate: "0.0125"},
	}
	legs := map[string][]store.Division{"M4": {{Kind: store.DivisionInsurancePooled, Payee: "INS", Amount: 7000}}}
	got, err := Compute(w, scenes, rates, merchants, legs)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Settlement{
		// 0.6 + 0.6 = 1.2 -> 1; rounding per scene would have charged 2.
		{Window: w.ID, Merchant: "M1", Totals: store.Totals{Count: 2, Gross: 420, Payments: 2, Net: 420}, Fee: 1, Payable: 419},
		// Negative net: no fee, no market fee, payable negative.
		{Window: w.ID, Merchant: "M2", Totals: scenes[2].Totals, Fee: 0, Payable: -200},
		// 10000 × 0.0025 = 25; market 10000 × 0.0125 = 125.
		{Window: w.ID, Merchant: "M3", Totals: tot(10_000), Fee: 25, Payable: 10_000 - 25 - 125,
			Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "MKT", Amount: 125}}},
		// Insurance legs are reported, not deducted.
		{Window: w.ID, Merchant: "M4", Divisions: legs["M4"]},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d settlements: %+v", len(got), got)
	}
	for i := range want {
		g, x := got[i], want[i]
		if g.Merchant != x.Merchant || g.Totals != x.Totals || g.Fee != x.Fee || g.Payable != x.Payable || len(g.Divisions) != len(x.Divisions) {
			t.Errorf("settlement %d = %+v, want %+v", i, g, x)
			continue
		}
		for j := range x.Divisions {
			if g.Divisions[j] != x.Divisions[j] {
				t.Errorf("settlement %d division %d = %+v, want %+v", i, j, g.Divisions[j], x.Divisions[j])
			}
		}
	}
	// Overflow across scenes is an error, not a wrapped total.
	big := store.Totals{Count: 1, Gross: 1 << 62, Payments: 1, Net: 1 << 62}
	if _, err := Compute(w, []store.SceneTotals{{Merchant: "M", Scene: "bus", Totals: big}, {Merchant: "M", Scene: "stall", Totals: big}},
		rates, nil, nil); err == nil {
		t.Fatal("overflowing totals accepted")
	}
	if _, err := NewRates([]store.FeeRate{{Merchant: "M", Scene: "bus", Rate: "0.1.2"}}, decimal.Zero); err == nil {
		t.Fatal("malformed rate accepted")
	}
}
