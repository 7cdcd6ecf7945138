package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvDefaultsYieldToTheCommandLine(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	broker := fs.String("broker", "tcp://default:1", "")
	rate := fs.Float64("rate", 2, "")
	dur := fs.Duration("duration", 0, "")
	key := fs.String("master-key-file", "", "")
	t.Setenv("SCENEPAY_BROKER", "tcp://env:1")
	t.Setenv("SCENEPAY_RATE", "7.5")
	t.Setenv("SCENEPAY_MASTER_KEY_FILE", "/env/key")
	if err := envDefaults(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-rate", "9", "-duration", "3s"}); err != nil {
		t.Fatal(err)
	}
	if *broker != "tcp://env:1" || *rate != 9 || *dur != 3*time.Second || *key != "/env/key" {
		t.Fatalf("broker=%q rate=%v duration=%v key=%q", *broker, *rate, *dur, *key)
	}
	t.Setenv("SCENEPAY_DURATION", "soon")
	if err := envDefaults(fs); err == nil || !strings.Contains(err.Error(), "SCENEPAY_DURATION") {
		t.Fatalf("bad env value: err = %v", err)
	}
}

func TestReadMasterKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	good := write("good", strings.Repeat("ab", 32)+"\n")
	k, err := readMasterKey(good)
	if err != nil || len(k) != 32 || k[0] != 0xab {
		t.Fatalf("key %x err %v", k, err)
	}
	for _, p := range []string{
		write("short", strings.Repeat("ab", 15)),
		write("nothex", strings.Repeat("zz", 32)),
		write("huge", strings.Repeat("a", 1000)),
		filepath.Join(dir, "missing"),
	} {
		if _, err := readMasterKey(p); err == nil {
			t.Errorf("%s accepted", filepath.Base(p))
		}
	}
}

func TestOperatorToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "operator.token")
	os.WriteFile(file, []byte("00ff\n"), 0o600)
	t.Setenv("SCENEPAY_OPERATOR_TOKEN", "")
	for _, c := range []struct {
		flag, env, file, want string
		fail                  bool
	}{
		{flag: "f", env: "e", file: file, want: "f"},
		{env: "e", file: file, want: "e"},
		{file: file, want: "00ff"},
		{fail: true},
		{file: filepath.Join(dir, "missing"), fail: true},
	} {
		t.Setenv("SCENEPAY_OPERATOR_TOKEN", c.env)
		got, err := operatorToken(c.flag, c.file)
		if (err != nil) != c.fail || got != c.want {
			t.Errorf("%+v: got %q, %v", c, got, err)
		}
	}
}

// TestWalletToken: the wallet token is the file's, else
// SCENEPAY_WALLET_TOKEN's, else none (the operator token then serves the
// stall code calls); a file named but missing or empty is an error.
func TestWalletToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "wallet.token")
	os.WriteFile(file, []byte(" 00aa\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, c := range []struct {
		env, file, want string
		fail            bool
	}{
		{env: "e", file: file, want: "00aa"},
		{env: "e", want: "e"},
		{},
		{file: filepath.Join(dir, "missing"), fail: true},
		{file: empty, fail: true},
	} {
		t.Setenv("SCENEPAY_WALLET_TOKEN", c.env)
		got, err := walletToken(c.file)
		if (err != nil) != c.fail || got != c.want {
			t.Errorf("%+v: got %q, %v", c, got, err)
		}
	}
}
