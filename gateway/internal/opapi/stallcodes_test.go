package opapi

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/registry"
)

func TestStallCodeEndpoints(t *testing.T) {
	now := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	base, log, e := startLogged(t, &now)
	for _, term := range []registry.Terminal{
		{TID: "STALL1", Kind: "stall", Merchant: "M1", KeyVersion: 1},
		{TID: "STALL2", Kind: "stall", Merchant: "M2", KeyVersion: 1},
		{TID: "BUS1", Kind: "bus", Merchant: "busco", KeyVersion: 1},
	} {
		if err := e.RegisterTerminal(term); err != nil {
			t.Fatal(err)
		}
	}
	if resp, m := do(t, "POST", base+"/v1/accounts", "", `{"inst":{"k":"county","id":"C1"},"balance":100000,"ref":"o1"}`); resp.StatusCode != 201 {
		t.Fatalf("open: %d %v", resp.StatusCode, m)
	}
	register := func(body string, status int) map[string]any {
		t.Helper()
		resp, m := do(t, "POST", base+"/v1/stall-codes", "", body)
		if resp.StatusCode != status {
			t.Fatalf("register %s: %d %v, want %d", body, resp.StatusCode, m, status)
		}
		return m
	}
	static := register(`{"tid":"STALL1"}`, 201)
	sc, _ := static["code"].(string)
	if !strings.HasPrefix(sc, "SC") || static["merchant"] != "M1" || static["state"] != "live" || static["dynamic"] != false {
		t.Fatalf("static code %v", static)
	}
	dyn := register(`{"tid":"STALL1","dynamic":true,"amount":1550,"ttl_seconds":300}`, 201)
	dc, _ := dyn["code"].(string)
	if dyn["amount"] != 1550.0 || dyn["expires_at"] != "2026-03-10T02:05:00Z" {
		t.Fatalf("dynamic code %v", dyn)
	}
	register(`{"tid":"STALL2","business":true,"stall_business":true}`, 201)
	// Refusals.
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"tid":"BUS1"}`, 404, "A6"},
		{`{"tid":"NOPE"}`, 404, "A6"},
		{`{"tid":"bad tid"}`, 400, "A2"},
		{`{"tid":"STALL1","merchant":"M9"}`, 409, "94"},
		{`{"tid":"STALL2"}`, 400, "A2"}, // personal code of a business stall
		{`{"tid":"STALL1","amount":5}`, 400, "A2"},
		{`{"tid":"STALL1","dynamic":true,"ttl_seconds":60}`, 400, "13"},
		{`{"tid":"STALL1","dynamic":true,"amount":5,"ttl_seconds":3601}`, 400, "A2"},
		{`{"tid":"STALL1","dynamic":true,"amount":5}`, 400, "A2"},
		{`{"tid":"STALL1","colour":"red"}`, 400, "A2"},
	} {
		if m := register(c.body, c.status); m["code"] != c.code {
			t.Errorf("register %s: %v, want code %s", c.body, m, c.code)
		}
	}
	// Listing: by merchant, paged; another merchant's codes are not listed.
	resp, m := do(t, "GET", base+"/v1/stall-codes?merchant=M1&limit=1", "", "")
	codes, _ := m["codes"].([]any)
	if resp.StatusCode != 200 || len(codes) != 1 || m["next"] == nil {
		t.Fatalf("page 1: %d %v", resp.StatusCode, m)
	}
	resp, m = do(t, "GET", base+"/v1/stall-codes?merchant=M1&after="+m["next"].(string), "", "")
	codes2, _ := m["codes"].([]any)
	if resp.StatusCode != 200 || len(codes2) != 1 || m["next"] != nil {
		t.Fatalf("page 2: %d %v", resp.StatusCode, m)
	}
	for _, bad := range []string{"/v1/stall-codes", "/v1/stall-codes?merchant=M1&limit=0", "/v1/stall-codes?merchant=M1&limit=1001", "/v1/stall-codes?merchant=a/b"} {
		if resp, _ := do(t, "GET", base+bad, "", ""); resp.StatusCode != 400 {
			t.Errorf("GET %s: %d, want 400", bad, resp.StatusCode)
		}
	}
	// Payments.
	pay := func(code, body string, status int, wantCode string) (map[string]any, *http.Response) {
		t.Helper()
		resp, m := do(t, "POST", base+"/v1/stall-codes/"+code+"/payments", "", body)
		if resp.StatusCode != status || m["code"] != wantCode {
			t.Errorf("pay %s %s: %d %v, want %d %s", code, body, resp.StatusCode, m, status, wantCode)
		}
		return m, resp
	}
	m1, _ := pay(sc, `{"account":"county:C1","amount":30000,"id":"w-1"}`, 200, "00")
	if m1["class"] != "D" || m1["auth"] == nil || m1["tid"] != "STALL1" || m1["merchant"] != "M1" {
		t.Errorf("payment answer %v", m1)
	}
	if _, r := pay(sc, `{"account":"county:C1","amount":30000,"id":"w-1"}`, 200, "00"); r.Header.Get("X-Idempotent-Replay") != "true" {
		t.Error("a repeat is not marked as a replay")
	}
	pay(sc, `{"account":"county:C1","amount":30001,"id":"w-1"}`, 409, "94")
	pay(sc, `{"account":"county:C1","amount":20001,"id":"w-2"}`, 402, "65")
	pay(sc, `{"account":"county:C1","amount":100,"id":"w-3","remote":true}`, 403, "C4")
	pay(dc, `{"account":"county:C1","id":"w-4","verified":"B"}`, 200, "00")
	pay(dc, `{"account":"county:C1","id":"w-5","verified":"B"}`, 409, "C3")
	pay("SCNOPE", `{"account":"county:C1","amount":1,"id":"w-6"}`, 404, "14")
	pay(sc, `{"account":"county:C1","amount":1,"id":"w-7","verified":"D"}`, 400, "A2")
	pay(sc, `{"account":"4111111111111111","amount":1,"id":"w-7"}`, 400, "A2")
	pay(sc, `{"account":"county:C1","amount":1}`, 400, "A2")
	pay(sc, `{"account":"county:C1","amount":-1,"id":"w-8"}`, 400, "13")
	// Refunds of w-1 (300 CNY): partial, repeated, past what remains, refused shapes.
	refund := func(code, payment, body string, status int, wantCode string) http.Header {
		t.Helper()
		resp, m := do(t, "POST", base+"/v1/stall-codes/"+code+"/payments/"+payment+"/refunds", "", body)
		if resp.StatusCode != status || m["code"] != wantCode {
			t.Errorf("refund %s %s: %d %v, want %d %s", payment, body, resp.StatusCode, m, status, wantCode)
		}
		return resp.Header
	}
	refund(sc, "w-1", `{"amount":10000,"id":"r-1"}`, 200, "00")
	if h := refund(sc, "w-1", `{"amount":10000,"id":"r-1"}`, 200, "00"); h.Get("X-Idempotent-Replay") != "true" {
		t.Error("a repeated refund is not marked as a replay")
	}
	refund(sc, "w-1", `{"amount":10001,"id":"r-1"}`, 409, "94")
	refund(sc, "w-1", `{"amount":20001,"id":"r-2"}`, 422, "C5")
	refund(sc, "w-2", `{"amount":1,"id":"r-3"}`, 404, "25") // declined payment
	refund(dc, "w-1", `{"amount":1,"id":"r-4"}`, 404, "25") // through another code
	refund(sc, "w-1", `{"amount":0,"id":"r-5"}`, 400, "13")
	refund(sc, "w-1", `{"amount":1}`, 400, "A2")
	// Revocation: idempotent, then the code refuses payments.
	for i := 0; i < 2; i++ {
		resp, m := do(t, "POST", base+"/v1/stall-codes/"+sc+"/revoke", "", "")
		if resp.StatusCode != 200 || m["state"] != "revoked" {
			t.Fatalf("revoke: %d %v", resp.StatusCode, m)
		}
	}
	if resp, m := do(t, "POST", base+"/v1/stall-codes/SCNOPE/revoke", "", ""); resp.StatusCode != 404 || m["code"] != "14" {
		t.Errorf("revoke unknown: %d %v", resp.StatusCode, m)
	}
	pay(sc, `{"account":"county:C1","amount":100,"id":"w-9"}`, 410, "C6")
	resp, m = do(t, "GET", base+"/v1/stall-codes/"+dc, "", "")
	if resp.StatusCode != 200 || m["state"] != "paid" || m["paid_by"] != "w-4" {
		t.Errorf("dynamic code after payment: %d %v", resp.StatusCode, m)
	}
	now = now.Add(10 * time.Minute)
	if resp, m := do(t, "GET", base+"/v1/stall-codes/"+sc, "", ""); resp.StatusCode != 200 || m["state"] != "revoked" {
		t.Errorf("get: %d %v", resp.StatusCode, m)
	}
	if resp, _ := do(t, "GET", base+"/v1/stall-codes/SCNOPE", "", ""); resp.StatusCode != 404 {
		t.Errorf("get unknown: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "DELETE", base+"/v1/stall-codes/"+sc, "", ""); resp.StatusCode != 404 {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	// Without the token nothing is served.
	req, _ := http.NewRequest("POST", base+"/v1/stall-codes/"+dc+"/payments", strings.NewReader(`{"account":"county:C1","id":"w-10"}`))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != 401 {
		t.Errorf("payment without a token: %d", r.StatusCode)
	}
	// Audit: every registration and revocation and every payment, refused
	// or not, with the request id.
	counts := map[string]int{}
	for _, l := range auditLines(t, log.String()) {
		a, _ := l["action"].(string)
		if strings.HasPrefix(a, "stall_code.") && l["request_id"] != "" {
			counts[a+" "+l["result"].(string)]++
		}
	}
	for k, want := range map[string]int{"stall_code.register ok": 3, "stall_code.register A2": 6, "stall_code.revoke ok": 2,
		"stall_code.revoke 14": 1, "stall_code.pay 00": 3, "stall_code.pay C6": 1, "stall_code.pay 65": 1,
		"stall_code.refund 00": 2, "stall_code.refund C5": 1, "stall_code.refund 25": 2} {
		if counts[k] != want {
			t.Errorf("audit %q: %d lines, want %d (all: %v)", k, counts[k], want, counts)
		}
	}
}
