package main

import (
	"flag"
	"io"
	"testing"
	"time"

	"scenepay/gateway/internal/engine"
)

// The sweep flags: defaults from the engine, overridden by the environment,
// overridden by the command line; 0 disables the timer, negative values
// and an empty batch are refused.
func TestSweepFlags(t *testing.T) {
	def := engine.DefaultConfig("")
	parse := func(args ...string) (time.Duration, int) {
		t.Helper()
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		every, batch := sweepFlags(fs, def)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %v: %v", args, err)
		}
		return *every, *batch
	}
	if every, batch := parse(); every != engine.DefaultSweepEvery || batch != engine.DefaultSweepBatchMax {
		t.Fatalf("defaults: %v %d, want %v %d", every, batch, engine.DefaultSweepEvery, engine.DefaultSweepBatchMax)
	}
	t.Setenv("SCENEPAY_SWEEP_EVERY", "30s")
	t.Setenv("SCENEPAY_SWEEP_BATCH_MAX", "64")
	if every, batch := parse(); every != 30*time.Second || batch != 64 {
		t.Fatalf("from the environment: %v %d, want 30s 64", every, batch)
	}
	if every, batch := parse("-sweep-every", "0", "-sweep-batch-max=8"); every != 0 || batch != 8 {
		t.Fatalf("from the command line: %v %d, want 0 8", every, batch)
	}
	for _, c := range []struct {
		every time.Duration
		batch int
		ok    bool
	}{{0, 1, true}, {time.Minute, 256, true}, {-time.Second, 256, false}, {time.Minute, 0, false}, {time.Minute, -1, false}} {
		if err := checkSweep(c.every, c.batch); (err == nil) != c.ok {
			t.Errorf("checkSweep(%v, %d): %v, want ok %v", c.every, c.batch, err, c.ok)
		}
	}
}

// The profiling endpoint has no authentication: only loopback addresses.
func TestPprofListenLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6060", "localhost:6060", "[::1]:6060", "127.0.0.2:0"} {
		if err := checkPprofListen(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{":6060", "0.0.0.0:6060", "10.0.0.5:6060", "[::]:6060", "gateway.example:6060", "6060"} {
		if err := checkPprofListen(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
