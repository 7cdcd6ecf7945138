package clearing

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"scenepay/settlement/store"
)

var computeWindow = store.Window{ID: "2026-03-01"}

func stall(m string, gross, refunds int64) store.SceneTotals {
	return store.SceneTotals{Merchant: m, Scene: "stall", Totals: store.Totals{Count: 2, Gross: gross, Payments: 1,
		Refunds: refunds, RefundCount: 1, Net: gross + refunds}}
}

// TestComputeDivisionsFromLegs: the market fee of a merchant with
// market_fee legs in the window is those legs, per payee, never the
// rate-based fee as well; a merchant without legs keeps the rate-based
// fallback; refunds take their legs back (a negative division when they
// outweigh the window's payments); insurance legs are receivables beside
// the payable.
func TestComputeDivisionsFromLegs(t *testing.T) {
	rates, err := NewRates(nil, decimal.Zero)
	if err != nil {
		t.Fatal(err)
	}
	withRate := func(id string) store.Merchant {
		return store.Merchant{ID: id, Name: id, MarketOperator: "RATE-OP", MarketFeeRate: "0.01"}
	}
	merchants := map[string]store.Merchant{"LEGS": withRate("LEGS"), "FALLBACK": withRate("FALLBACK"),
		"BACK": withRate("BACK"), "EVEN": withRate("EVEN")}
	scenes := []store.SceneTotals{
		stall("BACK", 100, -1000),
		stall("EVEN", 1000, -1000),
		stall("FALLBACK", 2000, 0),
		{Merchant: "HOSP", Scene: "kiosk", Totals: store.Totals{Count: 1, Gross: 300, Payments: 1, Net: 300}},
		stall("LEGS", 2550, -500),
	}
	legs := map[string][]store.Division{
		// One payment's leg 2 and an earlier payment's refund taking 12 back.
		"BACK": {{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: -10}},
		// Payments and refunds cancel out: no division, and no rate fee either.
		"EVEN": {{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: 0}},
		"HOSP": {{Kind: store.DivisionInsurancePersonal, Payee: "ins-pers", Amount: 700},
			{Kind: store.DivisionInsurancePooled, Payee: "ins-pool", Amount: 6000}},
		"LEGS": {{Kind: store.DivisionMarketFee, Payee: "MKT-2", Amount: 20},
			{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: 21}},
		// Insurance legs of a merchant with no takings in the window.
		"ONLY-INS": {{Kind: store.DivisionInsurancePooled, Payee: "ins-pool", Amount: 50}},
	}
	got, err := Compute(computeWindow, scenes, rates, merchants, legs)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Settlement{
		{Window: "2026-03-01", Merchant: "BACK", Totals: scenes[0].Totals, Payable: -900 + 10,
			Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: -10}}},
		{Window: "2026-03-01", Merchant: "EVEN", Totals: scenes[1].Totals, Payable: 0},
		// No legs: 2000 × 0.01 = 20 to the configured operator.
		{Window: "2026-03-01", Merchant: "FALLBACK", Totals: scenes[2].Totals, Payable: 1980,
			Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "RATE-OP", Amount: 20}}},
		{Window: "2026-03-01", Merchant: "HOSP", Totals: scenes[3].Totals, Payable: 300,
			Divisions: legs["HOSP"]},
		// Legs 20 + 21, not the rate's 2050 × 0.01 = 20.5 to RATE-OP.
		{Window: "2026-03-01", Merchant: "LEGS", Totals: scenes[4].Totals, Payable: 2050 - 41,
			Divisions: legs["LEGS"]},
		{Window: "2026-03-01", Merchant: "ONLY-INS", Payable: 0, Divisions: legs["ONLY-INS"]},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Compute =\n%+v\nwant\n%+v", got, want)
	}
	if d := Deducted(&got[0]); d != -10 {
		t.Fatalf("Deducted(BACK) = %d, want -10", d)
	}
	if d := Deducted(&got[3]); d != 0 {
		t.Fatalf("Deducted(HOSP) = %d, want 0 (insurance is not deducted)", d)
	}
}

func TestComputeRefusesBadLegs(t *testing.T) {
	rates, _ := NewRates(nil, decimal.Zero)
	for name, l := range map[string]store.Division{
		"negative insurance": {Kind: store.DivisionInsurancePooled, Payee: "ins-pool", Amount: -1},
		"unknown kind":       {Kind: "tip", Payee: "X", Amount: 1},
	} {
		_, err := Compute(computeWindow, []store.SceneTotals{stall("M", 100, 0)}, rates, nil, map[string][]store.Division{"M": {l}})
		if err == nil || !strings.Contains(err.Error(), "merchant M") {
			t.Errorf("%s: Compute = %v, want an error naming the merchant", name, err)
		}
	}
}

// The settlement file lists every division leg with its payee (L lines),
// and the D line names the market operator only when there is one.
func TestWriteFileLegLines(t *testing.T) {
	ss := []store.Settlement{{Window: "2026-03-01", Merchant: "LEGS", Totals: store.Totals{Count: 1, Gross: 100, Payments: 1, Net: 100},
		Payable: 59, Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "MKT-2", Amount: 20},
			{Kind: store.DivisionMarketFee, Payee: "MKT-OP", Amount: 21}}}}
	var b strings.Builder
	if err := WriteFile(&b, computeWindow, ss, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nD,2026-03-01,LEGS,,1,100,0,0,100,0,41,*,0,59\n",
		"\nL,2026-03-01,LEGS,market_fee,MKT-2,20\nL,2026-03-01,LEGS,market_fee,MKT-OP,21\nT,"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("settlement file lacks %q:\n%s", want, b.String())
		}
	}
}
