package opapi

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/engine"
	"scenepay/terminals"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLogged is start with a JSON log sink, a settable clock and the engine.
func startLogged(t *testing.T, now *time.Time) (string, *lockedBuf, *engine.Engine) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.Metrics = engine.NewMetrics(reg)
	cfg.Clock = func() time.Time { return *now }
	e, err := engine.Open(cfg, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	buf := &lockedBuf{}
	log := slog.New(slog.NewJSONHandler(buf, nil))
	s := New(Config{Token: "secret-token", Gatherer: reg, Logger: log, Clock: cfg.Clock}, e)
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); e.Close() })
	return "http://" + s.Addr(), buf, e
}

func do(t *testing.T, method, url, reqID, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer secret-token")
	if reqID != "" {
		req.Header.Set("X-Request-Id", reqID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp, m
}

// auditLines returns the decoded audit lines of the log.
func auditLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["logger"] == "audit" {
			out = append(out, m)
		}
	}
	return out
}

func TestRotateBlockAuditAndRequestIDs(t *testing.T) {
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	base, logs, e := startLogged(t, &now)

	resp, _ := do(t, "POST", base+"/v1/terminals", "reg-1", `{"tid":"S-1","kind":"stall","merchant":"M"}`)
	if resp.StatusCode != 201 || resp.Header.Get("X-Request-Id") != "reg-1" {
		t.Fatalf("register: %d id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	resp, m := do(t, "POST", base+"/v1/terminals/S-1/rotate", "", `{"overlap":"10m"}`)
	gen := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != 200 || len(gen) != 16 {
		t.Fatalf("rotate: %d %v, generated id %q", resp.StatusCode, m, gen)
	}
	if m["key_version"] != 2.0 || m["prev_key_version"] != 1.0 || m["overlap_until"] != "2026-03-01T08:10:00Z" || m["status"] != "unknown" {
		t.Fatalf("rotate view %v", m)
	}
	// A hostile request id is replaced, not logged.
	resp, m = do(t, "POST", base+"/v1/terminals/S-1/block", "evil id with spaces/and=signs", `{"blocked":true}`)
	if resp.StatusCode != 200 || m["blocked"] != true || strings.Contains(resp.Header.Get("X-Request-Id"), "evil") {
		t.Fatalf("block: %d %v id %q", resp.StatusCode, m, resp.Header.Get("X-Request-Id"))
	}
	for _, c := range []struct{ path, body string }{
		{"/v1/terminals/S-1/rotate", `{"overlap":"forever"}`},
		{"/v1/terminals/S-1/rotate", `{"overlap":"200h"}`},
		{"/v1/terminals/NOPE/rotate", `{"overlap":"1m"}`},
		{"/v1/terminals/S-1/block", `{"blocked":"yes"}`},
	} {
		if resp, m := do(t, "POST", base+c.path, "", c.body); resp.StatusCode/100 != 4 {
			t.Fatalf("%s %s: %d %v", c.path, c.body, resp.StatusCode, m)
		}
	}
	// Status and last seen come from the status topic and authenticated traffic.
	ent, _ := e.Registry().Get("S-1")
	e.HandleStatus(terminals.DefaultTopics.Status("S-1"), []byte("offline"))
	ent.Touch(now)
	_, m = do(t, "GET", base+"/v1/terminals/S-1", "", "")
	if m["status"] != "offline" || m["last_seen"] != "2026-03-01T08:00:00Z" {
		t.Fatalf("status view %v", m)
	}
	e.HandleStatus(terminals.DefaultTopics.Status("S-1"), []byte("garbage"))
	e.HandleStatus(terminals.DefaultTopics.Request("S-1"), []byte("online"))
	if _, m = do(t, "GET", base+"/v1/terminals/S-1", "", ""); m["status"] != "offline" {
		t.Fatalf("a bad status message changed the status: %v", m)
	}
	// Accounts: one audit line per change, declined ones too.
	do(t, "POST", base+"/v1/accounts", "acc-1", `{"inst":{"k":"county","id":"C1"},"balance":100}`)
	do(t, "POST", base+"/v1/accounts/county:C1/topup", "acc-2", `{"amt":5,"ref":"r1"}`)
	do(t, "POST", base+"/v1/accounts/county:C9/topup", "acc-3", `{"amt":5,"ref":"r1"}`)
	do(t, "POST", base+"/v1/accounts/county:C1/block", "acc-4", `{"blocked":true}`)

	type want struct{ action, target, result, id string }
	wants := []want{
		{"terminal.register", "S-1", "ok", "reg-1"},
		{"terminal.rotate", "S-1", "ok", gen},
		{"terminal.block", "S-1", "ok", ""},
		{"terminal.rotate", "S-1", string(terminals.CodeMalformed), ""},
		{"terminal.rotate", "S-1", string(terminals.CodeMalformed), ""},
		{"terminal.rotate", "NOPE", string(terminals.CodeUnknownTerminal), ""},
		{"terminal.block", "S-1", string(terminals.CodeMalformed), ""},
		{"account.open", "county:C1", "ok", "acc-1"},
		{"account.topup", "county:C1", "ok", "acc-2"},
		{"account.topup", "county:C9", "", "acc-3"},
		{"account.block", "county:C1", "ok", "acc-4"},
	}
	got := auditLines(t, logs.String())
	if len(got) != len(wants) {
		t.Fatalf("%d audit lines, want %d:\n%s", len(got), len(wants), logs.String())
	}
	for i, w := range wants {
		g := got[i]
		if g["action"] != w.action || g["target"] != w.target || g["token_fp"] == nil || g["request_id"] == "" {
			t.Errorf("audit line %d = %v, want %+v", i, g, w)
		}
		if w.result != "" && g["result"] != w.result {
			t.Errorf("audit line %d result %v, want %s", i, g["result"], w.result)
		}
		if w.result == "" && g["result"] == "ok" {
			t.Errorf("audit line %d: a top-up of an unknown account audited as ok", i)
		}
		if w.id != "" && g["request_id"] != w.id {
			t.Errorf("audit line %d request id %v, want %s", i, g["request_id"], w.id)
		}
	}
	if strings.Contains(logs.String(), "secret-token") {
		t.Fatal("the operator token reached the log")
	}
}
