package market

import (
	"testing"
	"time"
)

// BenchmarkPayment is the shard-step work of one consumer-code payment:
// verify the code, check and apply the class limit, split the fee, mark
// the code used.
func BenchmarkPayment(b *testing.B) {
	r := mustRules(b, func(c *Config) { c.LimitBFen = 1 << 60 })
	key := []byte("issuer")
	v := NewVerifier(map[uint8][]byte{1: key})
	used := NewUsedCodes(1 << 16)
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	codes := make([]string, 1024)
	for i := range codes {
		codes[i], _ = Issue(key, 1, "wallet-0001", ClassB, now, uint64(i))
	}
	var c Customer
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := now.Add(time.Duration(i/1024) * time.Minute)
		if i%1024 == 0 && i > 0 { // fresh codes for the next minute, outside the measurement
			b.StopTimer()
			for j := range codes {
				codes[j], _ = Issue(key, 1, "wallet-0001", ClassB, t, uint64(i+j))
			}
			b.StartTimer()
		}
		pc, err := v.Verify(r, used, codes[i%1024], t)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Check(&c, pc.Class, 1234, t); err != nil {
			b.Fatal(err)
		}
		_, _ = r.SplitPayment("pay", "stall", 1234)
		_ = used.Add(r, &pc, t.Unix())
		_ = r.Apply(&c, pc.Class, 1234, t)
	}
}

func BenchmarkCheckApply(b *testing.B) {
	r := mustRules(b, func(c *Config) { c.LimitDFen = 1 << 60 })
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	var c Customer
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := r.Check(&c, ClassD, 100, now); err != nil {
			b.Fatal(err)
		}
		_ = r.Apply(&c, ClassD, 100, now)
	}
}

// TestHotPathAllocs pins the allocation count of the limit step and of code
// verification at zero.
func TestHotPathAllocs(t *testing.T) {
	r := mustRules(t, nil)
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	key := []byte("issuer")
	v := NewVerifier(map[uint8][]byte{1: key})
	used := NewUsedCodes(16)
	code, _ := Issue(key, 1, "wallet-0001", ClassB, now, 1)
	var c Customer
	n := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(r, used, code, now); err != nil {
			t.Fatal(err)
		}
		_ = r.Check(&c, ClassC, 1, now)
		_ = r.Apply(&c, ClassC, 1, now)
		c = Customer{}
		_ = r.OperatorShare(12345)
	})
	if n != 0 {
		t.Errorf("%v allocations per payment step, want 0", n)
	}
}
