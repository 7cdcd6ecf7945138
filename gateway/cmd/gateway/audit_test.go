package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The audit file is appended to across restarts and holds the same lines as
// the process log, marked logger=audit.
func TestAuditLogAppendsToFileAndProcessLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var proc bytes.Buffer
	base := slog.New(slog.NewTextHandler(&proc, nil))
	for i, action := range []string{"terminal.rotate", "account.topup"} {
		l, closeFn, err := openAuditLog(path, base)
		if err != nil {
			t.Fatal(err)
		}
		l.With("request_id", "r"+string(rune('1'+i))).Info("operator change", "action", action)
		if err := closeFn(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit file has %d lines, want 2 (appended across opens):\n%s", len(lines), b)
	}
	for i, want := range []string{"terminal.rotate", "account.topup"} {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatal(err)
		}
		if m["action"] != want || m["logger"] != "audit" || m["request_id"] == nil {
			t.Fatalf("audit line %d: %v", i, m)
		}
	}
	if n := strings.Count(proc.String(), "logger=audit"); n != 2 {
		t.Fatalf("process log has %d audit lines, want 2:\n%s", n, proc.String())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
}
