package core

import (
	"strings"
	"testing"
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
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := DecodeLimits(b)
		if err != nil {
			return
		}
		again, err := DecodeLimits(EncodeLimits(tab))
		if err != nil || again != tab {
			t.Fatalf("re-encoded table differs: %+v %v", again, err)
		}
	})
}
