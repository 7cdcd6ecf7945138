package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"scenepay/emulator/internal/gwstub"
	"scenepay/terminals"
)

// TestRunEndToEndStopsOnInterrupt runs the command against the in-process
// gateway stand-in with -duration 0 (until Ctrl-C), interrupts it, and
// expects a clean stop with a passing audit (exit 0).
func TestRunEndToEndStopsOnInterrupt(t *testing.T) {
	master := []byte("cmd-test-master-key-0123456789ab")
	topics := terminals.Topics{Root: "t-cmd/scp/v1", Group: "g"}
	stub, err := gwstub.Start(gwstub.Options{Master: master, Topics: topics, Token: "op"})
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	keyFile := filepath.Join(t.TempDir(), "master.key")
	os.WriteFile(keyFile, []byte(hex.EncodeToString(master)+"\n"), 0o600)
	tokFile := filepath.Join(t.TempDir(), "operator.token")
	os.WriteFile(tokFile, []byte("op\n"), 0o600)
	t.Setenv("SCENEPAY_OPERATOR_TOKEN", "")

	old, oldOut := os.Args, os.Stdout
	defer func() { os.Args, os.Stdout = old, oldOut }()
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	os.Stdout = devnull
	os.Args = []string{"emulator", "-broker", stub.BrokerURL(), "-api", stub.APIURL(), "-token-file", tokFile,
		"-master-key-file", keyFile, "-topic-root", topics.Root, "-terminals", "4", "-rate", "20",
		"-duration", "0", "-reply-timeout", "1s"}

	go func() {
		time.Sleep(1500 * time.Millisecond)
		syscall.Kill(os.Getpid(), syscall.SIGINT)
	}()
	done := make(chan int, 1)
	go func() { done <- run() }()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit code %d, want %d", code, exitOK)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("emulator did not stop after SIGINT")
	}
}
