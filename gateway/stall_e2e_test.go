package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// A wallet backend pays a stall's merchant-presented codes through the
// operator API; the stall terminal, connected to Mosquitto, receives a
// signed "paid" notice for each approval, once, after the journal has it.
func TestStallCodePaidNoticeOverMosquitto(t *testing.T) {
	g := startOps(t)
	const tid = "STALL-E2E"
	g.mustCall(t, "POST", "/v1/terminals", `{"tid":"`+tid+`","kind":"stall","merchant":"M-E2E"}`, 201)
	g.mustCall(t, "POST", "/v1/accounts", `{"inst":{"k":"county","id":"W1"},"balance":100000,"ref":"o-w1"}`, 201)
	term := testkit.Connect(t, testkit.MQTTURL(), g.topics, tid, terminals.DeriveKey(g.master, tid, 1))
	static := g.mustCall(t, "POST", "/v1/stall-codes", `{"tid":"`+tid+`"}`, 201)
	dyn := g.mustCall(t, "POST", "/v1/stall-codes", `{"tid":"`+tid+`","dynamic":true,"amount":1550,"ttl_seconds":120}`, 201)

	pay := func(code, body string, status int) ([]byte, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", g.base+"/v1/stall-codes/"+code+"/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+g.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if resp.StatusCode != status {
			t.Fatalf("pay %s: %d %s, want %d", body, resp.StatusCode, b, status)
		}
		return b, m
	}
	notice := func(code string, amt int64, ans map[string]any) {
		t.Helper()
		raw := term.Next(t, 10*time.Second)
		body, err := terminals.Open(term.Key, raw)
		if err != nil {
			t.Fatalf("notice MAC: %v", err)
		}
		n, err := terminals.DecodePaid(body)
		if err != nil {
			t.Fatalf("notice %s: %v", body, err)
		}
		if n.TID != tid || n.SC != code || n.Amt != amt || n.Auth != ans["auth"] || float64(n.Txn) != ans["txn"] {
			t.Fatalf("notice %+v for answer %v", n, ans)
		}
	}
	sc, dc := static["code"].(string), dyn["code"].(string)
	first, ans := pay(sc, `{"account":"county:W1","amount":2500,"id":"wallet-1"}`, 200)
	notice(sc, 2500, ans)
	again, _ := pay(sc, `{"account":"county:W1","amount":2500,"id":"wallet-1"}`, 200)
	if string(again) != string(first) {
		t.Fatalf("the repeat got another answer:\n%s\n%s", first, again)
	}
	_, ans = pay(dc, `{"account":"county:W1","id":"wallet-2","verified":"B"}`, 200)
	if ans["class"] != "B" {
		t.Errorf("dynamic code class %v", ans["class"])
	}
	notice(dc, 1550, ans)
	pay(dc, `{"account":"county:W1","id":"wallet-3","verified":"B"}`, 409)
	pay(sc, `{"account":"county:W1","amount":100,"id":"wallet-4","remote":true}`, 403)
	term.ExpectSilence(t, 300*time.Millisecond) // no notice for repeats or refusals
	acct := g.mustCall(t, "GET", "/v1/accounts/county:W1", "", 200)
	if acct["balance"] != float64(100000-2500-1550) {
		t.Errorf("balance %v", acct["balance"])
	}
}
