package hospital

import (
	"testing"
	"time"
)

// BenchmarkCaptureCommit is the shard-step work of one service order on a
// deposit of four holds: plan the capture and commit it.
func BenchmarkCaptureCommit(b *testing.B) {
	r := mustRules(b, func(c *Config) { c.OrdersMax = 8; c.DepositMaxFen = 1 << 62 })
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	var d Deposit
	var p Plan
	_ = r.Open(&d, "D", "a", 1, 1<<58, now, &p)
	_ = r.Commit(&d, &p)
	for txn := uint64(2); txn <= 4; txn++ {
		_ = r.TopUp(&d, txn, 1<<58, now, &p)
		_ = r.Commit(&d, &p)
	}
	orders := []string{"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Capture(&d, orders[i%len(orders)], 1, true, now, &p); err != nil {
			b.Fatal(err)
		}
		if err := r.Commit(&d, &p); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCaptureAllocs pins the steady-state allocations of plan + commit.
func TestCaptureAllocs(t *testing.T) {
	r := mustRules(t, func(c *Config) { c.OrdersMax = 4 })
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	var d Deposit
	var p Plan
	_ = r.Open(&d, "D", "a", 1, 10000000, now, &p)
	_ = r.Commit(&d, &p)
	orders := []string{"a", "b", "c", "d", "e", "f"}
	i := 0
	n := testing.AllocsPerRun(100, func() {
		_ = r.Capture(&d, orders[i%len(orders)], 1, true, now, &p)
		_ = r.Commit(&d, &p)
		i++
	})
	if n != 0 {
		t.Errorf("%v allocations per capture, want 0", n)
	}
}
