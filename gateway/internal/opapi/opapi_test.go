package opapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/engine"
)

func start(t *testing.T) (base string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.Metrics = engine.NewMetrics(reg)
	e, err := engine.Open(cfg, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Token: "secret-token", Gatherer: reg}, e)
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); e.Close() })
	return "http://" + s.Addr()
}

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func TestOperatorAPI(t *testing.T) {
	base := start(t)
	const tok = "secret-token"
	for _, c := range []struct {
		name, method, path, token, body string
		status                          int
		check                           func(map[string]any) bool
	}{
		{"no token", "GET", "/v1/accounts/county:C1", "", "", 401, nil},
		{"wrong token", "GET", "/v1/accounts/county:C1", "nope", "", 401, nil},
		{"unknown account", "GET", "/v1/accounts/county:C1", tok, "", 404, func(m map[string]any) bool { return m["code"] == "14" }},
		{"open", "POST", "/v1/accounts", tok, `{"inst":{"k":"county","id":"C1"},"balance":1000,"ref":"o1"}`, 201,
			func(m map[string]any) bool { return m["balance"] == 1000.0 && m["available"] == 1000.0 }},
		{"open again", "POST", "/v1/accounts", tok, `{"inst":{"k":"county","id":"C1"},"balance":5,"ref":"o2"}`, 409, nil},
		{"card number as id", "POST", "/v1/accounts", tok, `{"inst":{"k":"bank","id":"4111111111111111"},"balance":5}`, 400, nil},
		{"unknown field", "POST", "/v1/accounts", tok, `{"inst":{"k":"county","id":"C2"},"balanse":5}`, 400, nil},
		{"top-up without ref", "POST", "/v1/accounts/county:C1/topup", tok, `{"amt":100}`, 400, nil},
		{"top-up", "POST", "/v1/accounts/county:C1/topup", tok, `{"amt":100,"ref":"t1"}`, 200, func(m map[string]any) bool { return m["balance"] == 1100.0 }},
		{"top-up retried", "POST", "/v1/accounts/county:C1/topup", tok, `{"amt":100,"ref":"t1"}`, 200, func(m map[string]any) bool { return m["balance"] == 1100.0 }},
		{"top-up negative", "POST", "/v1/accounts/county:C1/topup", tok, `{"amt":-5,"ref":"t2"}`, 400, nil},
		{"e-CNY over balance cap", "POST", "/v1/accounts", tok, `{"inst":{"k":"ecny","id":"W4"},"class":4,"balance":100001,"ref":"w"}`, 402,
			func(m map[string]any) bool { return m["code"] == "67" }},
		{"block", "POST", "/v1/accounts/county:C1/block", tok, `{"blocked":true}`, 200, func(m map[string]any) bool { return m["blocked"] == true }},
		{"register terminal", "POST", "/v1/terminals", tok, `{"tid":"BUS-1","kind":"bus","merchant":"M-BUS"}`, 201,
			func(m map[string]any) bool { return m["key_version"] == 1.0 }},
		{"register again, same", "POST", "/v1/terminals", tok, `{"tid":"BUS-1","kind":"bus","merchant":"M-BUS"}`, 200, nil},
		{"register again, other merchant", "POST", "/v1/terminals", tok, `{"tid":"BUS-1","kind":"bus","merchant":"M-X"}`, 409,
			func(m map[string]any) bool { return m["code"] == "94" }},
		{"register again, old key version", "POST", "/v1/terminals", tok, `{"tid":"BUS-1","kind":"bus","merchant":"M-BUS","key_version":7}`, 409, nil},
		{"bad terminal kind", "POST", "/v1/terminals", tok, `{"tid":"X-1","kind":"tram","merchant":"M"}`, 400, nil},
		{"get terminal", "GET", "/v1/terminals/BUS-1", tok, "", 200, func(m map[string]any) bool { return m["merchant"] == "M-BUS" }},
		{"unknown terminal", "GET", "/v1/terminals/NOPE", tok, "", 404, nil},
		{"no such endpoint", "GET", "/v1/nothing", tok, "", 404, nil},
	} {
		status, m := call(t, c.method, base+c.path, c.token, c.body)
		if status != c.status || (c.check != nil && !c.check(m)) {
			t.Errorf("%s: %d %v, want %d", c.name, status, m, c.status)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(base + p)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", p, err, resp)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if p == "/metrics" && !strings.Contains(string(b), "scenepay_gateway_requests_total") {
			t.Errorf("/metrics lacks the request counter")
		}
	}
}
