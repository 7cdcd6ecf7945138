package hospital

import (
	"errors"
	"strings"
	"testing"
	"time"

	"scenepay/terminals"
)

func mustRules(t testing.TB, mod func(*Config)) *Rules {
	t.Helper()
	c := DefaultConfig()
	if mod != nil {
		mod(&c)
	}
	r, err := NewRules(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConfigDecode(t *testing.T) {
	def := DefaultConfig()
	b, err := def.EncodeJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeConfig(b)
	if err != nil {
		t.Fatalf("default round trip: %v\n%s", err, b)
	}
	if len(got.Items) != 3 || got.Items[0].FixedFen != 1200 || got.PauseBelowFen != 20000 {
		t.Errorf("round trip: %+v", got)
	}
	base := string(b)
	for _, tc := range []struct{ name, json, want string }{
		{"unknown field", strings.Replace(base, `{`, `{"pause_fen":1,`, 1), "unknown field"},
		{"unknown item field", strings.Replace(base, `"fixed_fen":1200`, `"fixed_fen":1200,"vat":1`, 1), "unknown field"},
		{"trailing", base + ` []`, "trailing"},
		{"version 0", strings.Replace(base, `"version":1`, `"version":0`, 1), "version"},
		{"pause above low", strings.Replace(base, `"pause_below_fen":20000`, `"pause_below_fen":200000`, 1), "pause_below_fen"},
		{"duplicate item", strings.Replace(base, `"code":"LAB"`, `"code":"REG"`, 1), "twice"},
		{"fixed and range", strings.Replace(base, `"fixed_fen":1200`, `"fixed_fen":1200,"min_fen":1`, 1), "not both"},
		{"legs", strings.Replace(base, `"legs_max":16`, `"legs_max":33`, 1), "legs_max"},
		{"expiry", strings.Replace(base, `"deposit_expiry_hours":720`, `"deposit_expiry_hours":0`, 1), "expiry"},
		{"min above max", strings.Replace(base, `"deposit_min_fen":10000`, `"deposit_min_fen":30000000`, 1), "deposit_min_fen"},
	} {
		_, err := DecodeConfig([]byte(tc.json))
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an ErrConfig mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestSplitBillTable(t *testing.T) {
	r := mustRules(t, nil)
	const max = int64(^uint64(0) >> 1)
	for _, tc := range []struct {
		name string
		b    Bill
		want error
	}{
		{"ok", Bill{ID: "b", Total: 100, Pooled: 50, Personal: 30, SelfPay: 20}, nil},
		{"all self", Bill{ID: "b", Total: 100, SelfPay: 100}, nil},
		{"all pooled", Bill{ID: "b", Total: 100, Pooled: 100}, nil},
		{"short", Bill{ID: "b", Total: 100, Pooled: 50, Personal: 30, SelfPay: 19}, ErrSplitSum},
		{"negative", Bill{ID: "b", Total: 100, Pooled: 120, Personal: -20}, ErrSplitNegative},
		{"overflow", Bill{ID: "b", Total: 100, Pooled: max, Personal: max, SelfPay: 2}, ErrInvalidAmount},
		{"overflow 2", Bill{ID: "b", Total: max, Pooled: max - 1, Personal: 1, SelfPay: 1}, ErrInvalidAmount},
		{"zero", Bill{ID: "b"}, ErrInvalidAmount},
		{"no id", Bill{Total: 1, SelfPay: 1}, ErrFieldTooLong},
		{"item", Bill{ID: "b", Item: "REG", Total: 1200, Pooled: 1000, SelfPay: 200}, nil},
		{"item price", Bill{ID: "b", Item: "REG", Total: 1300, Pooled: 1100, SelfPay: 200}, ErrItemAmount},
		{"unknown item", Bill{ID: "b", Item: "X", Total: 1, SelfPay: 1}, ErrUnknownItem},
	} {
		s, err := r.SplitBill(tc.b)
		if err != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			continue
		}
		if err == nil && (s.Charge != tc.b.SelfPay || s.Legs[0].Amount != tc.b.Pooled || s.Legs[1].Amount != tc.b.Personal ||
			s.Legs[2].Amount != tc.b.SelfPay || s.Legs[0].Payer == "" || s.Legs[2].Payer != "") {
			t.Errorf("%s: split %+v", tc.name, s)
		}
	}
}

func TestCheckItemTable(t *testing.T) {
	r := mustRules(t, nil)
	for _, tc := range []struct {
		item   string
		amount int64
		want   error
	}{
		{"REG", 1200, nil}, {"REG", 1199, ErrItemAmount}, {"LAB", 100, nil}, {"LAB", 99, ErrItemAmount},
		{"LAB", 500000, nil}, {"LAB", 500001, ErrItemAmount}, {"MED", 1, nil}, {"MED", -1, ErrInvalidAmount},
		{"NOPE", 1, ErrUnknownItem},
	} {
		if got := r.CheckItem(tc.item, tc.amount); got != tc.want {
			t.Errorf("%s %d: got %v, want %v", tc.item, tc.amount, got, tc.want)
		}
	}
}

// A plan never changes the deposit; only Commit does, and a stale plan is
// refused.
func TestPlanThenCommit(t *testing.T) {
	r := mustRules(t, nil)
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	var d Deposit
	var p Plan
	if err := r.Open(&d, "D1", "acct", 1, 500000, now, &p); err != nil {
		t.Fatal(err)
	}
	if d.State != StateNone {
		t.Fatal("Open changed the deposit")
	}
	if err := r.Commit(&d, &p); err != nil {
		t.Fatal(err)
	}
	before := string(d.AppendBinary(nil))
	var p1, p2 Plan
	if err := r.Capture(&d, "o1", 1000, false, now, &p1); err != nil {
		t.Fatal(err)
	}
	if err := r.Capture(&d, "o2", 2000, false, now, &p2); err != nil {
		t.Fatal(err)
	}
	if string(d.AppendBinary(nil)) != before {
		t.Fatal("Capture changed the deposit")
	}
	if err := r.Commit(&d, &p1); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(&d, &p2); err != ErrStalePlan {
		t.Fatalf("stale plan: %v", err)
	}
	if err := r.Commit(&d, &p1); err != ErrStalePlan {
		t.Fatalf("plan applied twice: %v", err)
	}
	if d.Remaining() != 499000 || d.Captured() != 1000 {
		t.Fatalf("remaining %d captured %d", d.Remaining(), d.Captured())
	}
	if CodeOf(ErrPaused) != CodeDepositPaused || CodeOf(nil) != terminals.CodeApproved || CodeOf(errors.New("x")) != terminals.CodeSystemError {
		t.Error("CodeOf")
	}
}

// Orders beyond OrdersMax forget the oldest id, and the ring encodes
// oldest first so that a decoded deposit re-encodes identically.
func TestOrdersWindow(t *testing.T) {
	r := mustRules(t, func(c *Config) { c.OrdersMax = 3 })
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	var d Deposit
	var p Plan
	_ = r.Open(&d, "D", "a", 1, 100000, now, &p)
	_ = r.Commit(&d, &p)
	for _, id := range []string{"o1", "o2", "o3", "o4", "o5"} {
		if err := r.Capture(&d, id, 10, false, now, &p); err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(&d, &p); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := d.findOrder("o2"); ok {
		t.Error("o2 should be forgotten")
	}
	if _, ok := d.findOrder("o5"); !ok {
		t.Error("o5 should be remembered")
	}
	b := d.AppendBinary(nil)
	var e Deposit
	if err := e.DecodeBinary(b); err != nil {
		t.Fatal(err)
	}
	if string(e.AppendBinary(nil)) != string(b) {
		t.Fatal("re-encode differs")
	}
	// The decoded deposit continues the window in the same order.
	_ = r.Capture(&d, "o6", 10, false, now, &p)
	_ = r.Commit(&d, &p)
	var q Plan
	_ = r.Capture(&e, "o6", 10, false, now, &q)
	_ = r.Commit(&e, &q)
	if string(e.AppendBinary(nil)) != string(d.AppendBinary(nil)) {
		t.Fatal("decoded deposit diverged")
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	r := mustRules(t, nil)
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	var d Deposit
	var p Plan
	_ = r.Open(&d, "D", "a", 1, 100000, now, &p)
	_ = r.Commit(&d, &p)
	_ = r.Capture(&d, "o1", 10, false, now, &p)
	_ = r.Commit(&d, &p)
	enc := d.AppendBinary(nil)
	for n := 0; n < len(enc); n++ {
		if err := new(Deposit).DecodeBinary(enc[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	if err := new(Deposit).DecodeBinary(append(append([]byte(nil), enc...), 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: %v", err)
	}
	var empty Deposit
	if err := empty.DecodeBinary(new(Deposit).AppendBinary(nil)); err != nil {
		t.Errorf("empty deposit: %v", err)
	}
}
