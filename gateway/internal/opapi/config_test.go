package opapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/core"
)

// transitDoc is the default fare table with route B1's flat fare set.
func transitDoc(t *testing.T, b1Fare int64) string {
	t.Helper()
	c := core.DefaultTransit().Config()
	c.Routes[0].Fare = b1Fare
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfigEndpoints(t *testing.T) {
	base := start(t)
	const tok = "secret-token"
	for i, body := range []string{transitDoc(t, 200), transitDoc(t, 250)} {
		st, m := call(t, "PUT", base+"/v1/config/transit", tok, body)
		if st != 200 || m["version"] != float64(i+1) || m["group"] != "bus" {
			t.Fatalf("put %d: %d %v", i, st, m)
		}
	}
	st, m := call(t, "GET", base+"/v1/config/transit", tok, "")
	doc, _ := m["doc"].(map[string]any)
	routes, _ := doc["routes"].([]any)
	if st != 200 || m["version"] != float64(2) || len(routes) == 0 || routes[0].(map[string]any)["fare_fen"] != float64(250) {
		t.Fatalf("get: %d %v", st, m)
	}
	// Register a bus terminal: it has never reported, so it lags.
	if st, m := call(t, "POST", base+"/v1/terminals", tok, `{"tid":"BUS-1","kind":"bus","merchant":"M-1"}`); st != 201 {
		t.Fatalf("register: %d %v", st, m)
	}
	st, m = call(t, "GET", base+"/v1/config/transit/lagging", tok, "")
	lag, _ := m["lagging"].([]any)
	if st != 200 || m["count"] != float64(1) || len(lag) != 1 || lag[0].(map[string]any)["tid"] != "BUS-1" {
		t.Fatalf("lagging: %d %v", st, m)
	}
	// Refusals: a clear 400 naming the reason, and nothing changes.
	for _, c := range []struct{ name, path, body, reason string }{
		{"bad JSON", "/v1/config/transit", `{"fare":`, "bad_json"},
		{"not an object", "/v1/config/transit", `[1]`, "bad_json"},
		{"oversize", "/v1/config/transit", `{"a":"` + strings.Repeat("x", confstore.DocBytesMax) + `"}`, "too_large"},
		{"unknown name", "/v1/config/fares", `{}`, "unknown_name"},
		{"unknown field", "/v1/config/transit", `{"fare":300}`, "invalid"},
		{"negative fare", "/v1/config/transit", transitDoc(t, -1), "invalid"},
		{"limits without class 4", "/v1/config/limits", `{"classes":[{"class":1,"balance_fen":1,"single_fen":1,"daily_fen":1,"annual_fen":0}]}`, "invalid"},
	} {
		st, m := call(t, "PUT", base+c.path, tok, c.body)
		msg, _ := m["error"].(string)
		if st != 400 || m["code"] != "A2" || !strings.Contains(msg, c.reason) {
			t.Errorf("%s: %d %v, want 400 with %s", c.name, st, m, c.reason)
		}
	}
	if _, m := call(t, "GET", base+"/v1/config/transit", tok, ""); m["version"] != float64(2) {
		t.Fatalf("a refused put changed the version: %v", m)
	}
	for _, p := range []string{"/v1/config/market", "/v1/config/fares", "/v1/config/transit/other"} {
		if st, _ := call(t, "GET", base+p, tok, ""); st != 404 {
			t.Errorf("GET %s = %d, want 404", p, st)
		}
	}
	if st, _ := call(t, "PUT", base+"/v1/config/transit", "", `{}`); st != 401 {
		t.Fatalf("no token: %d", st)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`scenepay_gateway_config_version{name="transit"} 2`, `scenepay_gateway_config_lagging_terminals{name="transit"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
