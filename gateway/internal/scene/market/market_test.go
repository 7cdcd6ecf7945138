package market

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

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

// refShare is the documented rule computed with shopspring/decimal.
func refShare(amount int64, ratio decimal.Decimal) int64 {
	return decimal.NewFromInt(amount).Mul(ratio).RoundBank(0).IntPart()
}

func TestOperatorShareTable(t *testing.T) {
	for _, tc := range []struct {
		ratio  string
		amount int64
		want   int64
	}{
		{"0.006", 83, 0}, {"0.006", 250, 2}, {"0.006", 750, 4}, {"0.006", 1250, 8},
		{"0.5", 1, 0}, {"0.5", 3, 2}, {"0.5", 5, 2}, {"0.01", 50, 0}, {"0.01", 150, 2},
		{"0", 12345, 0}, {"1", 12345, 12345}, {"0.000001", 1 << 62, 4611686018427},
		{"0.999999", 9223372036854775807, 9223362813482738952},
		{"0.100000", 5, 0}, {"0.100000", 15, 2}, {"0.100000", 25, 2},
	} {
		r := mustRules(t, func(c *Config) { c.FeeRatio = decimal.RequireFromString(tc.ratio) })
		got := r.OperatorShare(tc.amount)
		if got != tc.want {
			t.Errorf("ratio %s amount %d: got %d, want %d", tc.ratio, tc.amount, got, tc.want)
		}
		if ref := refShare(tc.amount, decimal.RequireFromString(tc.ratio)); ref != got {
			t.Errorf("ratio %s amount %d: got %d, decimal reference %d", tc.ratio, tc.amount, got, ref)
		}
		s, err := r.SplitPayment("p", "m", tc.amount)
		if err != nil || s.Stall.Amount+s.Operator.Amount != tc.amount || s.Stall.Amount < 0 {
			t.Errorf("split %d: %+v %v", tc.amount, s, err)
		}
	}
}

func TestOperatorShareMatchesDecimal(t *testing.T) {
	ratios := []string{"0.006", "0.0125", "0.333333", "0.5", "0.999999", "0.07"}
	for _, rs := range ratios {
		r := mustRules(t, func(c *Config) { c.FeeRatio = decimal.RequireFromString(rs) })
		d := decimal.RequireFromString(rs)
		for a := int64(0); a < 3000; a++ {
			if got, want := r.OperatorShare(a), refShare(a, d); got != want {
				t.Fatalf("ratio %s amount %d: got %d, want %d", rs, a, got, want)
			}
		}
	}
}

// Refund legs are never negative and a sequence of partial refunds sums to
// the original legs exactly.
func TestRefundLegsSumToPayment(t *testing.T) {
	r := mustRules(t, func(c *Config) { c.FeeRatio = decimal.RequireFromString("0.333333"); c.RefundsPerPaymentMax = 64 })
	now := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	for _, amount := range []int64{1, 2, 3, 7, 99, 1001, 123457} {
		l := NewLedger(r)
		op := r.OperatorShare(amount)
		if err := l.Record(Payment{ID: "p", Account: "a", StallMerchant: "m", Class: ClassB, Amount: amount, Operator: op, PaidAt: now}); err != nil {
			t.Fatal(err)
		}
		var sumStall, sumOp, left int64 = 0, 0, amount
		for i := 0; left > 0; i++ {
			step := min(left, int64(i%5+1)*amount/7+1)
			f, err := l.CheckRefund(r, "p", "r"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+string(rune('a'+i/26)), step)
			if err != nil {
				t.Fatalf("amount %d step %d: %v", amount, i, err)
			}
			if f.Stall.Amount < 0 || f.Operator.Amount < 0 || f.Stall.Amount+f.Operator.Amount != step {
				t.Fatalf("amount %d: bad legs %+v", amount, f)
			}
			if err := l.ApplyRefund(&f); err != nil {
				t.Fatal(err)
			}
			sumStall += f.Stall.Amount
			sumOp += f.Operator.Amount
			left -= step
		}
		if sumOp != op || sumStall != amount-op {
			t.Errorf("amount %d: refunded legs %d/%d, paid %d/%d", amount, sumStall, sumOp, amount-op, op)
		}
	}
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
	if !got.FeeRatio.Equal(def.FeeRatio) || got.LimitDFen != 50000 || got.Version != 1 {
		t.Errorf("round trip: got %+v", got)
	}
	base := string(b)
	for _, tc := range []struct{ name, json, want string }{
		{"unknown field", strings.Replace(base, `{`, `{"limit_e_fen":1,`, 1), "unknown field"},
		{"trailing", base + `{}`, "trailing"},
		{"version 0", strings.Replace(base, `"version":1`, `"version":0`, 1), "version"},
		{"ratio > 1", strings.Replace(base, `"fee_ratio":"0.01"`, `"fee_ratio":"1.5"`, 1), "fee_ratio"},
		{"ratio negative", strings.Replace(base, `"fee_ratio":"0.01"`, `"fee_ratio":"-0.01"`, 1), "fee_ratio"},
		{"ratio places", strings.Replace(base, `"fee_ratio":"0.01"`, `"fee_ratio":"0.0000001"`, 1), "decimal places"},
		{"negative limit", strings.Replace(base, `"limit_d_fen":50000`, `"limit_d_fen":-1`, 1), "limit_d_fen"},
		{"lifetime", strings.Replace(base, `"code_lifetime_seconds":60`, `"code_lifetime_seconds":0`, 1), "code_lifetime"},
		{"bound", strings.Replace(base, `"used_codes_max":65536`, `"used_codes_max":99999999`, 1), "used_codes_max"},
		{"not json", `{"version":`, "invalid config"},
	} {
		_, err := DecodeConfig([]byte(tc.json))
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an ErrConfig mentioning %q", tc.name, err, tc.want)
		}
	}
	// Trailing zeros do not count as places.
	if _, err := DecodeConfig([]byte(strings.Replace(base, `"fee_ratio":"0.01"`, `"fee_ratio":"0.0100000000"`, 1))); err != nil {
		t.Errorf("0.0100000000: %v", err)
	}
}

func TestCheckApplyTable(t *testing.T) {
	r := mustRules(t, nil)
	day1 := time.Date(2026, 3, 2, 15, 59, 59, 0, time.UTC) // 23:59:59 Shanghai
	day2 := day1.Add(time.Second)
	for _, tc := range []struct {
		name   string
		c      Customer
		class  Class
		amount int64
		now    time.Time
		want   error
	}{
		{"D under", Customer{}, ClassD, 50000, day1, nil},
		{"D over", Customer{}, ClassD, 50001, day1, ErrDailyLimit},
		{"D sum over", Customer{Day: DayOf(day1), Spent: [5]int64{4: 49999}}, ClassD, 2, day1, ErrDailyLimit},
		{"D sum next day", Customer{Day: DayOf(day1), Spent: [5]int64{4: 50000}}, ClassD, 50000, day2, nil},
		{"C other class", Customer{Day: DayOf(day1), Spent: [5]int64{4: 50000}}, ClassC, 100000, day1, nil},
		{"A agreed", Customer{AgreedA: 10_000_000}, ClassA, 10_000_000, day1, nil},
		{"A default", Customer{}, ClassA, 500001, day1, ErrDailyLimit},
		{"zero", Customer{}, ClassB, 0, day1, ErrInvalidAmount},
		{"negative", Customer{}, ClassB, -5, day1, ErrInvalidAmount},
		{"overflow", Customer{Day: DayOf(day1), Spent: [5]int64{1: maxFen - 1}, AgreedA: maxFen}, ClassA, 2, day1, ErrInvalidAmount},
		{"bad class", Customer{}, 0, 1, day1, ErrBadClass},
		{"bad class 5", Customer{}, 5, 1, day1, ErrBadClass},
	} {
		c := tc.c
		if got := r.Check(&c, tc.class, tc.amount, tc.now); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		if c != tc.c {
			t.Errorf("%s: Check changed the state", tc.name)
		}
		if tc.want == nil {
			if err := r.Apply(&c, tc.class, tc.amount, tc.now); err != nil || c.spent(tc.class, DayOf(tc.now)) != tc.c.spent(tc.class, DayOf(tc.now))+tc.amount {
				t.Errorf("%s: Apply: %v, state %+v", tc.name, err, c)
			}
		}
	}
}

// b32 is the payment code alphabet (RFC 4648 base32, terminals/paycode.go).
const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func TestVerifyOrder(t *testing.T) {
	r := mustRules(t, nil)
	key := []byte("issuer")
	v := NewVerifier(map[uint8][]byte{3: key})
	used := NewUsedCodes(4)
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	code, err := Issue(key, 3, "wallet-42", ClassB, now, 99)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) > 112 || strings.Trim(code, b32+"SPC1") != "" {
		t.Errorf("code %q: not QR alphanumeric or too long", code)
	}
	pc, err := v.Verify(r, used, code, now.Add(59*time.Second))
	if err != nil || !pc.AccountIs("wallet-42") || pc.Account() != "wallet-42" || pc.Class != ClassB || pc.Nonce != 99 || pc.KeyID != 3 {
		t.Fatalf("verify: %+v %v", pc, err)
	}
	if err := used.Add(r, &pc, now.Unix()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(r, used, code, now); err != ErrCodeReused {
		t.Errorf("reuse: %v", err)
	}
	if err := used.Add(r, &pc, now.Unix()); err != ErrCodeReused {
		t.Errorf("double add: %v", err)
	}
	// Every single-character change is refused, never accepted.
	for i := len(CodePrefix); i < len(code); i++ {
		b := []byte(code)
		b[i] = b32[(strings.IndexByte(b32, b[i])+1)%32]
		if _, err := v.Verify(r, used, string(b), now); err == nil {
			t.Fatalf("changed char %d accepted", i)
		} else if c := CodeOf(err); c != CodePayCodeInvalid && c != terminals.CodeMalformed {
			t.Fatalf("changed char %d: %v", i, err)
		}
	}
	if _, err := Issue(key, 1, "", ClassB, now, 1); err != ErrFieldTooLong {
		t.Errorf("empty account: %v", err)
	}
	if _, err := Issue(key, 1, "a", ClassD, now, 1); err != ErrBadClass {
		t.Errorf("class D consumer code: %v", err)
	}
}

func TestCodeOf(t *testing.T) {
	if CodeOf(nil) != terminals.CodeApproved || CodeOf(ErrDailyLimit) != terminals.CodeLimitDaily ||
		CodeOf(errors.New("disk")) != terminals.CodeSystemError {
		t.Error("CodeOf")
	}
	if !strings.Contains(ErrDailyLimit.Error(), "LIMIT_DAILY") {
		t.Error(ErrDailyLimit.Error())
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	r := mustRules(t, nil)
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	l := NewLedger(r)
	_ = l.Record(Payment{ID: "p1", Account: "a", StallMerchant: "m", Class: ClassC, Amount: 1000, Operator: 10, PaidAt: now})
	f, _ := l.CheckRefund(r, "p1", "r1", 400)
	_ = l.ApplyRefund(&f)
	c := Customer{Day: 20000, Spent: [5]int64{1: 1, 2: 2, 3: 3, 4: 4}, AgreedA: 9}
	u := NewUsedCodes(8)
	_ = u.Add(r, &PayCode{IssuedAt: now.Unix(), Tag: [16]byte{1}}, now.Unix())
	for name, enc := range map[string][]byte{"ledger": l.AppendBinary(nil), "customer": c.AppendBinary(nil), "used": u.AppendBinary(nil)} {
		dec := func(b []byte) error {
			switch name {
			case "ledger":
				return new(Ledger).DecodeBinary(b)
			case "customer":
				return new(Customer).DecodeBinary(b)
			}
			return new(UsedCodes).DecodeBinary(b)
		}
		if err := dec(enc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for n := 0; n < len(enc); n++ {
			if err := dec(enc[:n]); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s truncated to %d: %v", name, n, err)
			}
		}
		if err := dec(append(append([]byte(nil), enc...), 0)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s with a trailing byte: %v", name, err)
		}
		bad := append([]byte(nil), enc...)
		bad[0] = 2
		if err := dec(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s version 2: %v", name, err)
		}
	}
}
