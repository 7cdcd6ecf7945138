package opapi

import (
	"testing"
	"time"

	"scenepay/terminals"
)

// Concession profiles over the API: set at opening or later, county cards
// only, shown in the account view, every change audited.
func TestAccountProfile(t *testing.T) {
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	base, logs, _ := startLogged(t, &now)
	for _, c := range []struct {
		name, method, path, id, body string
		status                       int
		profile                      any // the view's "profile" (nil: absent)
	}{
		{"open senior", "POST", "/v1/accounts", "p-1", `{"inst":{"k":"county","id":"C1"},"balance":100,"profile":"senior"}`, 201, "senior"},
		{"open adult", "POST", "/v1/accounts", "p-2", `{"inst":{"k":"county","id":"C2"},"balance":100}`, 201, "adult"},
		{"open bank with a profile", "POST", "/v1/accounts", "p-3", `{"inst":{"k":"bank","id":"tok_1"},"balance":100,"profile":"senior"}`, 400, nil},
		{"open unknown profile", "POST", "/v1/accounts", "p-4", `{"inst":{"k":"county","id":"C3"},"profile":"child"}`, 400, nil},
		{"open bank", "POST", "/v1/accounts", "p-5", `{"inst":{"k":"bank","id":"tok_1"},"balance":100}`, 201, nil},
		{"get", "GET", "/v1/accounts/county:C1", "", "", 200, "senior"},
		{"set student", "POST", "/v1/accounts/county:C2/profile", "p-6", `{"profile":"student"}`, 200, "student"},
		{"set unchanged", "POST", "/v1/accounts/county:C2/profile", "p-7", `{"profile":"student"}`, 200, "student"},
		{"get after set", "GET", "/v1/accounts/county:C2", "", "", 200, "student"},
		{"set on a bank card", "POST", "/v1/accounts/bank:tok_1/profile", "p-8", `{"profile":"disabled"}`, 400, nil},
		{"set unknown name", "POST", "/v1/accounts/county:C1/profile", "p-9", `{"profile":""}`, 400, nil},
		{"set on unknown card", "POST", "/v1/accounts/county:C9/profile", "p-10", `{"profile":"senior"}`, 404, nil},
	} {
		resp, m := do(t, c.method, base+c.path, c.id, c.body)
		if resp.StatusCode != c.status || (c.status < 300 && m["profile"] != c.profile) {
			t.Errorf("%s: %d %v, want %d profile %v", c.name, resp.StatusCode, m, c.status, c.profile)
		}
		if c.status == 400 && m["code"] != string(terminals.CodeMalformed) {
			t.Errorf("%s: code %v, want %s", c.name, m["code"], terminals.CodeMalformed)
		}
	}
	type want struct{ action, target, result, id, profile string }
	wants := []want{
		{"account.open", "county:C1", "ok", "p-1", ""},
		{"account.profile", "county:C1", "ok", "p-1", "senior"},
		{"account.open", "county:C2", "ok", "p-2", ""},
		{"account.open", "bank:tok_1", "ok", "p-5", ""},
		{"account.profile", "county:C2", "ok", "p-6", "student"},
		{"account.profile", "county:C2", "ok", "p-7", "student"},
		{"account.profile", "bank:tok_1", string(terminals.CodeMalformed), "p-8", "disabled"},
		{"account.profile", "county:C1", string(terminals.CodeMalformed), "p-9", ""},
		{"account.profile", "county:C9", string(terminals.CodeUnknownInstrument), "p-10", "senior"},
	}
	got := auditLines(t, logs.String())
	if len(got) != len(wants) {
		t.Fatalf("%d audit lines, want %d:\n%s", len(got), len(wants), logs.String())
	}
	for i, w := range wants {
		g := got[i]
		if g["action"] != w.action || g["target"] != w.target || g["result"] != w.result || g["request_id"] != w.id {
			t.Errorf("audit line %d = %v, want %+v", i, g, w)
		}
		if w.action == "account.profile" && g["profile"] != w.profile {
			t.Errorf("audit line %d profile %v, want %q", i, g["profile"], w.profile)
		}
	}
}
