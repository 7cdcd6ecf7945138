package core

import (
	"errors"
	"strings"
	"testing"

	"scenepay/terminals"
)

func TestLimitsDocRoundTripAndRefusals(t *testing.T) {
	def := DefaultConfig().ECNY
	got, err := DecodeLimits(EncodeLimits(def))
	if err != nil || got != def {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	good := string(EncodeLimits(def))
	for _, c := range []struct{ name, doc, want string }{
		{"empty", `{}`, "exactly once"},
		{"unknown field", strings.Replace(good, `{"classes"`, `{"clases":1,"classes"`, 1), "unknown field"},
		{"trailing", good + `{}`, "trailing"},
		{"class twice", strings.Replace(good, `"class":4`, `"class":3`, 1), "twice"},
		{"class 5", strings.Replace(good, `"class":4`, `"class":5`, 1), "not in 1..4"},
		{"missing limit", strings.Replace(good, `,"annual_fen":0`, ``, 1), "annual_fen is missing"},
		{"negative", strings.Replace(good, `"single_fen":5000000,`, `"single_fen":-1,`, 1), "not in 0.."},
		{"huge", strings.Replace(good, `"single_fen":5000000,`, `"single_fen":2000000000000000000,`, 1), "not in 0.."},
		{"oversize", `{"classes":[` + strings.Repeat(" ", LimitsDocBytesMax) + `]}`, "bytes"},
	} {
		_, err := DecodeLimits([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestSetLimitsOnShard(t *testing.T) {
	s := NewShard(0, nil)
	tab := DefaultConfig().ECNY
	tab[2].Daily = 1
	s.SetLimits(tab)
	if s.Limits() != tab {
		t.Fatal("SetLimits did not take")
	}
	s.SetLimits([5]ClassLimits{}) // ignored: limits never vanish by omission
	if s.Limits() != tab {
		t.Fatal("an all-zero table replaced the limits")
	}
}

func FuzzDecodeLimits(f *testing.F) {
	f.Add(EncodeLimits(DefaultConfig().ECNY))
	f.Add([]byte(`{"classes":[{"class":1}]}`))
	f.Add(EncodeLimitsTable(LimitsTable{ECNY: DefaultConfig().ECNY, Offline: OfflineCaps{PaymentMax: 20_000, CountMax: 3}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := DecodeLimitsDoc(b)
		if err != nil {
			var le *LimitsError
			if !errors.As(err, &le) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := DecodeLimitsDoc(EncodeLimitsTable(tab))
		if err != nil || again != tab {
			t.Fatalf("re-encoded table differs: %+v %v", again, err)
		}
		if ecny, err := DecodeLimits(b); err != nil || ecny != tab.ECNY {
			t.Fatalf("DecodeLimits disagrees: %+v %v", ecny, err)
		}
	})
}

// The offline section: optional (absent keeps the gateway's caps), strict
// when present, and round trips.
func TestLimitsDocOfflineSection(t *testing.T) {
	def := DefaultConfig().ECNY
	tab := LimitsTable{ECNY: def, Offline: OfflineCaps{PaymentMax: 20_000, CountMax: 3}}
	doc := EncodeLimitsTable(tab)
	if !strings.Contains(string(doc), `"offline":{"payment_max_fen":20000,"count_max":3}`) {
		t.Fatalf("encoded: %s", doc)
	}
	got, err := DecodeLimitsDoc(doc)
	if err != nil || got != tab {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if got, err := DecodeLimitsDoc(EncodeLimits(def)); err != nil || got.Offline != (OfflineCaps{}) {
		t.Fatalf("without the section: %+v %v", got, err)
	}
	good := string(doc)
	for _, c := range []struct{ name, doc, want string }{
		{"count missing", strings.Replace(good, `,"count_max":3`, ``, 1), "both required"},
		{"payment zero", strings.Replace(good, `"payment_max_fen":20000`, `"payment_max_fen":0`, 1), "payment_max_fen 0 not in"},
		{"count zero", strings.Replace(good, `"count_max":3`, `"count_max":0`, 1), "count_max 0 not in"},
		{"count over the counter", strings.Replace(good, `"count_max":3`, `"count_max":70000`, 1), "count_max 70000 not in"},
		{"unknown field", strings.Replace(good, `"count_max":3`, `"count_max":3,"amount":1`, 1), "unknown field"},
	} {
		_, err := DecodeLimitsDoc([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// SetOfflineCaps changes the double-offline decisions of a live shard.
func TestSetOfflineCapsOnShard(t *testing.T) {
	s := NewShard(0, nil)
	var out Output
	in := openECNY("ecny:W1", 2, 100_000)
	s.Step(t0, &in, &out)
	pay := func(txn uint64, amt int64) string {
		in := Input{Op: OpECNYOffline, Account: "ecny:W1", Amount: amt, TID: "T1", Txn: txn, Merchant: "M"}
		s.Step(t0, &in, &out)
		return string(out.Code)
	}
	if c := pay(1, 30_000); c != string(terminals.CodeApproved) {
		t.Fatalf("300 CNY under the default 500 CNY cap: %s", c)
	}
	s.SetOfflineCaps(OfflineCaps{PaymentMax: 20_000, CountMax: 2})
	if s.OfflineCaps() != (OfflineCaps{PaymentMax: 20_000, CountMax: 2}) {
		t.Fatalf("caps %+v", s.OfflineCaps())
	}
	if c := pay(2, 30_000); c != string(terminals.CodeLimitSingle) {
		t.Fatalf("300 CNY over a 200 CNY cap: %s", c)
	}
	if c := pay(3, 1_000); c != string(terminals.CodeApproved) {
		t.Fatalf("second offline payment: %s", c)
	}
	if c := pay(4, 1_000); c != string(terminals.CodeOfflineCountExceeded) {
		t.Fatalf("third offline payment with count 2: %s", c)
	}
	s.SetOfflineCaps(OfflineCaps{}) // zero: the defaults, never "no cap"
	if s.OfflineCaps() != (OfflineCaps{PaymentMax: DefaultOfflinePaymentMax, CountMax: DefaultOfflineCountMax}) {
		t.Fatalf("caps after a zero set %+v", s.OfflineCaps())
	}
}
