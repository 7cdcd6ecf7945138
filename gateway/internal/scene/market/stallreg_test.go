package market

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func stallRules(t *testing.T, max int) *Rules {
	t.Helper()
	c := DefaultConfig()
	c.StallCodesMax = max
	r, err := NewRules(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStallCodeLifecycle(t *testing.T) {
	r := stallRules(t, 4)
	g := NewRegistry(r)
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	ms := t0.UnixMilli()
	if err := g.AddStall(Stall{ID: "S1", Merchant: "M1"}); err != nil {
		t.Fatal(err)
	}
	if err := g.AddStall(Stall{ID: "S2", Merchant: "M2", Business: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		code StallCode
		want error
	}{
		{"static personal", StallCode{ID: "Q1", Stall: "S1"}, nil},
		{"again", StallCode{ID: "Q1", Stall: "S1"}, ErrStallCodeExists},
		{"personal for a business stall", StallCode{ID: "Q2", Stall: "S2"}, ErrPersonalForBusiness},
		{"static business", StallCode{ID: "Q2", Stall: "S2", Business: true}, nil},
		{"unknown stall", StallCode{ID: "Q3", Stall: "S9"}, ErrUnknownStall},
		{"static with an amount", StallCode{ID: "Q3", Stall: "S1", Amount: 5}, ErrStallCodeShape},
		{"dynamic without an amount", StallCode{ID: "Q3", Stall: "S1", Dynamic: true, Expires: ms + 60_000}, ErrStallCodeShape},
		{"dynamic expired at birth", StallCode{ID: "Q3", Stall: "S1", Dynamic: true, Amount: 100, Expires: ms}, ErrStallCodeShape},
		{"dynamic too long", StallCode{ID: "Q3", Stall: "S1", Dynamic: true, Amount: 100, Expires: ms + time.Hour.Milliseconds() + 1}, ErrStallCodeShape},
		{"dynamic", StallCode{ID: "Q3", Stall: "S1", Dynamic: true, Amount: 1550, Expires: ms + 300_000}, nil},
		{"revoked at birth", StallCode{ID: "Q4", Stall: "S1", Revoked: 1}, ErrStallCodeShape},
		{"dynamic 2", StallCode{ID: "Q4", Stall: "S1", Dynamic: true, Amount: 100, Expires: ms + 30_000}, nil},
		{"full", StallCode{ID: "Q5", Stall: "S1"}, ErrRegistryFull},
	} {
		before := g.AppendBinary(nil)
		err := g.Register(c.code, t0)
		if !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if err != nil && !bytes.Equal(g.AppendBinary(nil), before) {
			t.Errorf("%s: a refused registration changed the registry", c.name)
		}
	}
	if c, _ := g.Code("Q3"); c.ShownAt != ms {
		t.Errorf("ShownAt = %d, want the registration time %d", c.ShownAt, ms)
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, c := range []struct {
		name      string
		id        string
		amount    int64
		scan      Scan
		at        time.Time
		want      error
		class     Class
		wantTotal int64
	}{
		{"unknown", "Q9", 100, Scan{Verified: ClassB}, at(1), ErrUnknownStallCode, 0, 0},
		{"static personal: class D", "Q1", 100, Scan{Verified: ClassA}, at(1), nil, ClassD, 100},
		{"static personal remote", "Q1", 100, Scan{Verified: ClassA, Remote: true}, at(1), ErrRemoteStatic, 0, 0},
		{"static business remote", "Q2", 100, Scan{Verified: ClassA, Remote: true}, at(1), nil, ClassD, 100},
		{"static without amount", "Q1", 0, Scan{Verified: ClassB}, at(1), ErrInvalidAmount, 0, 0},
		{"fresh dynamic: payer's class", "Q3", 0, Scan{Verified: ClassB}, at(10), nil, ClassB, 1550},
		{"dynamic, its own amount", "Q3", 1550, Scan{Verified: ClassC}, at(10), nil, ClassC, 1550},
		{"dynamic, another amount", "Q3", 1549, Scan{Verified: ClassB}, at(10), ErrStallCodeAmount, 0, 0},
		{"dynamic past freshness: screenshot, class D", "Q3", 0, Scan{Verified: ClassB}, at(61), nil, ClassD, 1550},
		{"dynamic expired", "Q4", 0, Scan{Verified: ClassB}, at(30), ErrCodeExpired, 0, 0},
	} {
		_, class, amt, err := g.Authorize(r, c.id, c.amount, c.scan, c.at)
		if !errors.Is(err, c.want) && !(err == nil && c.want == nil) || class != c.class || amt != c.wantTotal {
			t.Errorf("%s: %v class %v amount %d, want %v class %v amount %d", c.name, err, class, amt, c.want, c.class, c.wantTotal)
		}
	}
	g.MarkPaid("Q3", "pay-1")
	g.MarkPaid("Q3", "pay-2") // the first payment stands
	if c, _ := g.Code("Q3"); c.PaidBy != "pay-1" {
		t.Errorf("PaidBy = %q", c.PaidBy)
	}
	if _, _, _, err := g.Authorize(r, "Q3", 0, Scan{Verified: ClassB}, at(11)); !errors.Is(err, ErrCodeReused) {
		t.Errorf("reuse of a dynamic code: %v", err)
	}
	g.MarkPaid("Q1", "pay-3") // static: no-op
	if c, _ := g.Code("Q1"); c.PaidBy != "" {
		t.Error("a static code was marked paid")
	}
	if _, changed, err := g.Revoke("Q1", at(20)); err != nil || !changed {
		t.Fatalf("revoke: %v %v", changed, err)
	}
	if c, changed, err := g.Revoke("Q1", at(21)); err != nil || changed || c.Revoked != at(20).UnixMilli() {
		t.Errorf("second revoke: %+v %v %v", c, changed, err)
	}
	if _, _, err := g.Revoke("Q9", at(21)); !errors.Is(err, ErrUnknownStallCode) {
		t.Errorf("revoke unknown: %v", err)
	}
	if _, _, _, err := g.Authorize(r, "Q1", 100, Scan{Verified: ClassB}, at(22)); !errors.Is(err, ErrStallCodeRevoked) {
		t.Errorf("revoked: %v", err)
	}
	// Listing by merchant, paged.
	if l, more := g.Codes("M1", "", 2); len(l) != 2 || !more || l[0].ID != "Q1" || l[1].ID != "Q3" {
		t.Errorf("page 1: %v %v", l, more)
	}
	if l, more := g.Codes("M1", "Q3", 2); len(l) != 1 || more || l[0].ID != "Q4" {
		t.Errorf("page 2: %v %v", l, more)
	}
	if l, _ := g.Codes("M2", "", 10); len(l) != 1 || l[0].ID != "Q2" {
		t.Errorf("M2: %v", l)
	}
	// Encoding round trip.
	b := g.AppendBinary(nil)
	var g2 Registry
	if err := g2.DecodeBinary(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g2.AppendBinary(nil), b) {
		t.Error("registry round trip differs")
	}
	// A full registry purges the dead codes (revoked Q1, expired Q4) first.
	if err := g.Register(StallCode{ID: "Q5", Stall: "S1"}, at(40)); err != nil {
		t.Fatalf("register after purge: %v", err)
	}
	if _, ok := g.Code("Q1"); ok {
		t.Error("revoked Q1 survived the purge")
	}
	if _, ok := g.Code("Q4"); ok {
		t.Error("expired Q4 survived the purge")
	}
	if _, ok := g.Code("Q3"); !ok {
		t.Error("live Q3 was purged")
	}
	g.MarkPaid("Q4", "pay-4") // purged while in flight: no-op
}

func TestStallTagDistinct(t *testing.T) {
	if StallTag("A") == StallTag("B") || StallTag("A") != StallTag("A") {
		t.Fatal("StallTag is not a function of the id")
	}
	c := StallCode{Expires: 1001}
	if c.ExpirySeconds() != 2 {
		t.Errorf("ExpirySeconds rounds down: %d", c.ExpirySeconds())
	}
	r := stallRules(t, 4) // dynamic codes fresh for 60 s
	for _, c := range []struct {
		shown, expires, want int64
	}{
		{10_500, 300_000, 71}, // the freshness window ends first
		{10_000, 40_000, 40},  // the code expires first
		{10_000, 70_000, 70},  // both at once
		{10_001, 600_000, 71}, // rounded up
	} {
		sc := StallCode{Dynamic: true, ShownAt: c.shown, Expires: c.expires}
		if got := r.UsedUntil(&sc); got != c.want {
			t.Errorf("UsedUntil(shown %d, expires %d) = %d, want %d", c.shown, c.expires, got, c.want)
		}
		// Every fresh scan lies before it.
		last := time.UnixMilli(min(c.shown+59_999, c.expires-1))
		if cl, err := r.ClassFor(&sc, Scan{Verified: ClassB, ShownAt: time.UnixMilli(c.shown)}, last); err == nil && cl == ClassB && last.Unix() >= r.UsedUntil(&sc) {
			t.Errorf("a fresh scan at %v is past UsedUntil %d", last, r.UsedUntil(&sc))
		}
	}
}

func FuzzDecodeStallRegistry(f *testing.F) {
	r, _ := NewRules(DefaultConfig())
	g := NewRegistry(r)
	_ = g.AddStall(Stall{ID: "S1", Merchant: "M1", Business: true})
	_ = g.AddStall(Stall{ID: "S2", Merchant: "M2"})
	t0 := time.Unix(1772416800, 0)
	_ = g.Register(StallCode{ID: "Q1", Stall: "S1", Business: true}, t0)
	_ = g.Register(StallCode{ID: "Q2", Stall: "S2", Dynamic: true, Amount: 1550, Expires: t0.UnixMilli() + 60_000}, t0)
	g.MarkPaid("Q2", "w-1")
	_, _, _ = g.Revoke("Q1", t0)
	f.Add(g.AppendBinary(nil))
	f.Add(NewRegistry(r).AppendBinary(nil))
	f.Add([]byte{1, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var g Registry
		if err := g.DecodeBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := g.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encode differs:\n%x\n%x", b, got)
		}
	})
}

func FuzzDecodeStallCode(f *testing.F) {
	c := StallCode{ID: "Q2", Stall: "S2", Dynamic: true, Amount: 1550, ShownAt: 1, Expires: 60_001, PaidBy: "w-1"}
	f.Add(c.AppendBinary(nil))
	s := StallCode{ID: "Q1", Stall: "S1", Business: true, ShownAt: 5, Revoked: 9}
	f.Add(s.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeStallCode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := c.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encode differs:\n%x\n%x", b, got)
		}
	})
}

func TestSortIDs(t *testing.T) {
	for _, in := range [][]string{nil, {"a"}, {"b", "a"}, {"c", "a", "b", "a", "d", "Z", ""}} {
		a := append([]string(nil), in...)
		sortIDs(a)
		for i := 1; i < len(a); i++ {
			if a[i-1] > a[i] {
				t.Fatalf("sortIDs(%q) = %q", in, a)
			}
		}
		if len(a) != len(in) {
			t.Fatalf("sortIDs lost elements")
		}
	}
}

// A registration refused as full leaves dead codes in place (it is not
// journaled, so replay would not purge there either).
func TestStallRegistryFullChangesNothing(t *testing.T) {
	r := stallRules(t, 2)
	g := NewRegistry(r)
	t0 := time.Unix(1772416800, 0)
	_ = g.AddStall(Stall{ID: "S1", Merchant: "M1"})
	for _, id := range []string{"A", "B"} {
		if err := g.Register(StallCode{ID: id, Stall: "S1"}, t0); err != nil {
			t.Fatal(err)
		}
	}
	// Full of live codes: refused, nothing purged.
	if err := g.Register(StallCode{ID: "C", Stall: "S1"}, t0); !errors.Is(err, ErrRegistryFull) {
		t.Fatalf("full: %v", err)
	}
	_, _, _ = g.Revoke("A", t0)
	if err := g.Register(StallCode{ID: "C", Stall: "S1"}, t0); err != nil {
		t.Fatalf("with a dead code: %v", err)
	}
	if _, ok := g.Code("A"); ok || g.Len() != 2 {
		t.Errorf("revoked A not purged, %d codes", g.Len())
	}
}
