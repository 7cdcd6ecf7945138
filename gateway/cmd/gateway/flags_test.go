package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
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

// The token file flags: empty by default, from the environment, overridden
// by the command line.
func TestTokenFlags(t *testing.T) {
	parse := func(args ...string) (string, string) {
		t.Helper()
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		op, wallet := tokenFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %v: %v", args, err)
		}
		return *op, *wallet
	}
	t.Setenv("SCENEPAY_OPERATOR_TOKEN_FILE", "")
	t.Setenv("SCENEPAY_WALLET_TOKEN_FILE", "")
	os.Unsetenv("SCENEPAY_OPERATOR_TOKEN_FILE")
	os.Unsetenv("SCENEPAY_WALLET_TOKEN_FILE")
	if op, wallet := parse(); op != "" || wallet != "" {
		t.Fatalf("defaults: %q %q, want both empty", op, wallet)
	}
	t.Setenv("SCENEPAY_OPERATOR_TOKEN_FILE", "/etc/scenepay/operator.token")
	t.Setenv("SCENEPAY_WALLET_TOKEN_FILE", "/etc/scenepay/wallet.token")
	if op, wallet := parse(); op != "/etc/scenepay/operator.token" || wallet != "/etc/scenepay/wallet.token" {
		t.Fatalf("from the environment: %q %q", op, wallet)
	}
	if op, wallet := parse("-wallet-token-file", "/run/w.token", "-operator-token-file=/run/o.token"); op != "/run/o.token" || wallet != "/run/w.token" {
		t.Fatalf("from the command line: %q %q", op, wallet)
	}
}

// The wallet token loads by the operator token's rules: the variable
// first, else the file, created with a fresh hex token when absent and
// refused when it is not hex; none configured is "" (the payment routes
// then take the operator token only); the operator token itself is
// refused.
func TestLoadWalletToken(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SCENEPAY_WALLET_TOKEN", "")
	t.Setenv("SCENEPAY_OPERATOR_TOKEN", "")
	op, err := loadToken("SCENEPAY_OPERATOR_TOKEN", filepath.Join(dir, "operator.token"))
	if err != nil || len(op) != 48 {
		t.Fatalf("operator token: %q %v", op, err)
	}

	if w, err := loadWalletToken("", op); w != "" || err != nil {
		t.Fatalf("nothing configured: %q %v, want no wallet token", w, err)
	}
	file := filepath.Join(dir, "wallet.token")
	w, err := loadWalletToken(file, op)
	if err != nil || len(w) != 48 || w == op {
		t.Fatalf("created: %q %v", w, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("wallet token file: %v %v, want mode 0600", fi, err)
	}
	if again, err := loadWalletToken(file, op); again != w || err != nil {
		t.Fatalf("loaded again: %q %v, want %q", again, err, w)
	}

	t.Setenv("SCENEPAY_WALLET_TOKEN", "wallet-from-env")
	if got, err := loadWalletToken(file, op); got != "wallet-from-env" || err != nil {
		t.Fatalf("variable over file: %q %v", got, err)
	}
	if got, err := loadWalletToken("", op); got != "wallet-from-env" || err != nil {
		t.Fatalf("variable without a file: %q %v", got, err)
	}
	t.Setenv("SCENEPAY_WALLET_TOKEN", op)
	if _, err := loadWalletToken("", op); err == nil || !strings.Contains(err.Error(), "operator token") {
		t.Fatalf("the operator token as the wallet token: %v, want refused", err)
	}
	t.Setenv("SCENEPAY_WALLET_TOKEN", "")

	for name, text := range map[string]string{
		"placeholder": "replace-with-64-hex-characters\n",
		"short":       "0123456789abcdef\n",
		"same":        op + "\n",
	} {
		bad := filepath.Join(dir, name+".token")
		if err := os.WriteFile(bad, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := loadWalletToken(bad, op); err == nil {
			t.Errorf("wallet token file %s: %q accepted", name, got)
		}
	}
	// A file that cannot be created (read-only /etc under systemd, a
	// missing Secret key in Kubernetes) fails the start.
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if got, err := loadWalletToken(filepath.Join(ro, "wallet.token"), op); err == nil {
			t.Errorf("wallet token in a read-only directory: %q accepted", got)
		}
	}
}

// -gc-percent: DefaultGCPercent unless the environment or the command line
// says otherwise; GOGC in the environment wins over both (the runtime has
// applied it) and is left as it is.
func TestGCFlag(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	apply := func(args ...string) int {
		t.Helper()
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := gcFlag(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %v: %v", args, err)
		}
		return f()
	}
	now := func() int { v := debug.SetGCPercent(100); debug.SetGCPercent(v); return v }
	t.Setenv("GOGC", "")
	if got := apply(); got != DefaultGCPercent || now() != DefaultGCPercent {
		t.Fatalf("default: %d, in force %d, want %d", got, now(), DefaultGCPercent)
	}
	t.Setenv("SCENEPAY_GC_PERCENT", "250")
	if got := apply(); got != 250 || now() != 250 {
		t.Fatalf("from the environment: %d, in force %d", got, now())
	}
	if got := apply("-gc-percent", "150"); got != 150 || now() != 150 {
		t.Fatalf("from the command line: %d, in force %d", got, now())
	}
	debug.SetGCPercent(123) // as the runtime would have from GOGC=123
	t.Setenv("GOGC", "123")
	if got := apply("-gc-percent", "150"); got != 123 || now() != 123 {
		t.Fatalf("with GOGC set: %d, in force %d, want 123 left alone", got, now())
	}
}
