package opapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/registry"
)

func TestDenyListEndpoints(t *testing.T) {
	now := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	base, log, e := startLogged(t, &now)
	if err := e.RegisterTerminal(registry.Terminal{TID: "BUS1", Kind: "bus", Merchant: "busco", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		method, path string
		status       int
		check        func(m map[string]any) bool
	}{
		{"POST", "/v1/denylist/county:C1", 200, func(m map[string]any) bool { return m["version"] == 1.0 }},
		{"POST", "/v1/denylist/county:C2", 200, func(m map[string]any) bool { return m["version"] == 2.0 }},
		{"DELETE", "/v1/denylist/county:C1", 200, func(m map[string]any) bool { return m["version"] == 3.0 }},
		{"GET", "/v1/denylist?since=2", 200, func(m map[string]any) bool {
			r, _ := m["remove"].([]any)
			a, _ := m["add"].([]any)
			return m["version"] == 3.0 && m["from"] == 2.0 && len(r) == 1 && r[0] == "county:C1" && len(a) == 0
		}},
		{"GET", "/v1/denylist", 200, func(m map[string]any) bool {
			a, _ := m["add"].([]any)
			return len(a) == 1 && a[0] == "county:C2"
		}},
		{"GET", "/v1/denylist?since=x", 400, nil},
		{"GET", "/v1/denylist/lagging", 200, func(m map[string]any) bool {
			l, _ := m["lagging"].([]any)
			return m["count"] == 1.0 && len(l) == 1 && l[0].(map[string]any)["tid"] == "BUS1"
		}},
		{"POST", "/v1/denylist/" + strings.Repeat("x", 65), 400, nil},
		{"PUT", "/v1/denylist/county:C1", 405, nil},
	}
	for _, r := range rows {
		resp, m := do(t, r.method, base+r.path, "req-"+r.method, "")
		if resp.StatusCode != r.status || (r.check != nil && !r.check(m)) {
			t.Errorf("%s %s: %d %v, want %d", r.method, r.path, resp.StatusCode, m, r.status)
		}
	}
	var adds, removes, refused int
	for _, l := range auditLines(t, log.String()) {
		switch {
		case l["action"] == "denylist.add" && l["result"] == "ok":
			adds++
		case l["action"] == "denylist.remove" && l["result"] == "ok":
			removes++
		case l["action"] == "denylist.add":
			refused++
		}
	}
	if adds != 2 || removes != 1 || refused != 1 {
		t.Fatalf("audit: %d adds, %d removes, %d refused", adds, removes, refused)
	}
	resp, _ := do(t, "GET", base+"/v1/denylist", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
}
