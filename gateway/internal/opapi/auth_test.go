package opapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/registry"
)

const (
	opTok     = "secret-token"
	walletTok = "wallet-token-0123456789abcdef"
)

// startWallet is startLogged with a wallet token configured (walletTok;
// none when empty).
func startWallet(t *testing.T, wallet string) (string, *lockedBuf, *engine.Engine) {
	t.Helper()
	now := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.Metrics = engine.NewMetrics(reg)
	cfg.Clock = func() time.Time { return now }
	e, err := engine.Open(cfg, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	buf := &lockedBuf{}
	s := New(Config{Token: opTok, WalletToken: wallet, Gatherer: reg, Logger: slog.New(slog.NewJSONHandler(buf, nil)), Clock: cfg.Clock, Source: "gw1"}, e)
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); e.Close() })
	return "http://" + s.Addr(), buf, e
}

// as calls the API with the bearer token tok ("" sends no header) and the
// request id reqID.
func as(t *testing.T, tok, method, url, reqID, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("X-Request-Id", reqID)
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

// stallFixture registers a stall terminal, a funded county card and a
// static code, with the operator token; it returns the code.
func stallFixture(t *testing.T, base string, e *engine.Engine) string {
	t.Helper()
	if err := e.RegisterTerminal(registry.Terminal{TID: "STALL1", Kind: "stall", Merchant: "M1", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if st, m := as(t, opTok, "POST", base+"/v1/accounts", "open", `{"inst":{"k":"county","id":"C1"},"balance":100000,"ref":"o1"}`); st != 201 {
		t.Fatalf("open: %d %v", st, m)
	}
	st, m := as(t, opTok, "POST", base+"/v1/stall-codes", "reg", `{"tid":"STALL1"}`)
	code, _ := m["code"].(string)
	if st != 201 || code == "" {
		t.Fatalf("register code: %d %v", st, m)
	}
	return code
}

// The wallet token pays and refunds through stall codes and nothing else:
// every other route answers 403 WALLET_SCOPE, changes nothing and is
// audited; the operator token keeps every route, payments included; a
// wrong token is 401. Audit lines name the caller's role and that role's
// token fingerprint.
func TestWalletTokenScope(t *testing.T) {
	base, logs, e := startWallet(t, walletTok)
	sc := stallFixture(t, base, e)
	pay := base + "/v1/stall-codes/" + sc + "/payments"

	if st, m := as(t, walletTok, "POST", pay, "w-pay", `{"account":"county:C1","amount":3000,"id":"w-1"}`); st != 200 || m["code"] != "00" {
		t.Fatalf("wallet payment: %d %v", st, m)
	}
	if st, m := as(t, walletTok, "POST", pay+"/w-1/refunds", "w-refund", `{"amount":1000,"id":"r-1"}`); st != 200 || m["code"] != "00" {
		t.Fatalf("wallet refund: %d %v", st, m)
	}
	// A refusal on a payment route is the route's own answer, not a 403.
	if st, m := as(t, walletTok, "POST", pay, "w-bad", `{"account":"county:C1","amount":1}`); st != 400 || m["code"] != "A2" {
		t.Fatalf("wallet payment without id: %d %v", st, m)
	}
	if st, m := as(t, opTok, "POST", pay, "op-pay", `{"account":"county:C1","amount":2000,"id":"w-2"}`); st != 200 || m["code"] != "00" {
		t.Fatalf("operator payment: %d %v", st, m)
	}
	if st, m := as(t, opTok, "POST", pay+"/w-2/refunds", "op-refund", `{"amount":500,"id":"r-2"}`); st != 200 || m["code"] != "00" {
		t.Fatalf("operator refund: %d %v", st, m)
	}
	for _, tok := range []string{"", "nope", walletTok + "x", walletTok[:len(walletTok)-1], strings.ToUpper(walletTok)} {
		if st, _ := as(t, tok, "POST", pay, "bad-tok", `{"account":"county:C1","amount":1,"id":"w-3"}`); st != 401 {
			t.Errorf("payment with token %q: %d, want 401", tok, st)
		}
		if st, _ := as(t, tok, "POST", pay+"/w-1/refunds", "bad-tok", `{"amount":1,"id":"r-3"}`); st != 401 {
			t.Errorf("refund with token %q: %d, want 401", tok, st)
		}
	}

	// Every other route (and the payment routes with another method).
	forbidden := []struct{ method, path, body string }{
		{"POST", "/v1/terminals", `{"tid":"S-9","kind":"stall","merchant":"M9"}`},
		{"GET", "/v1/terminals/STALL1", ""},
		{"POST", "/v1/terminals/STALL1/rotate", `{"overlap":"10m"}`},
		{"POST", "/v1/terminals/STALL1/block", `{"blocked":true}`},
		{"GET", "/v1/config/transit", ""},
		{"PUT", "/v1/config/transit", `{}`},
		{"GET", "/v1/config/transit/lagging", ""},
		{"GET", "/v1/denylist", ""},
		{"GET", "/v1/denylist/lagging", ""},
		{"POST", "/v1/denylist/CARD1", ""},
		{"DELETE", "/v1/denylist/CARD1", ""},
		{"POST", "/v1/stall-codes", `{"tid":"STALL1"}`},
		{"GET", "/v1/stall-codes?merchant=M1", ""},
		{"GET", "/v1/stall-codes/" + sc, ""},
		{"POST", "/v1/stall-codes/" + sc + "/revoke", ""},
		{"GET", "/v1/stall-codes/" + sc + "/payments", ""},
		{"PUT", "/v1/stall-codes/" + sc + "/payments", `{"account":"county:C1","amount":1,"id":"w-4"}`},
		{"GET", "/v1/stall-codes/" + sc + "/payments/w-1/refunds", ""},
		{"POST", "/v1/stall-codes/" + sc + "/payments/w-1", `{"amount":1,"id":"r-4"}`},
		{"POST", "/v1/stall-codes/" + sc + "/payments/w-1/refunds/r-1", `{"amount":1,"id":"r-4"}`},
		{"GET", "/v1/journal/totals?from=2026-03-09T00:00:00Z&to=2026-03-10T00:00:00Z", ""},
		{"POST", "/v1/accounts", `{"inst":{"k":"county","id":"C2"},"balance":100,"ref":"o2"}`},
		{"GET", "/v1/accounts/county:C1", ""},
		{"POST", "/v1/accounts/county:C1/topup", `{"amt":500,"ref":"t1"}`},
		{"POST", "/v1/accounts/county:C1/block", `{"blocked":true}`},
		{"POST", "/v1/accounts/county:C1/profile", `{"profile":"senior"}`},
		{"GET", "/v1/accounts/not-a-key", ""},
		{"GET", "/v1/nope", ""},
	}
	for _, f := range forbidden {
		st, m := as(t, walletTok, f.method, base+f.path, "forbid", f.body)
		if st != 403 || m["code"] != codeWalletScope || m["error"] != walletScopeMsg {
			t.Errorf("wallet %s %s: %d %v, want 403 %s", f.method, f.path, st, m, codeWalletScope)
		}
	}
	// Nothing changed: the terminal is neither registered, rotated nor
	// blocked, the card keeps its balance (100000 - 3000 + 1000 - 2000 + 500).
	if _, ok := e.Registry().Get("S-9"); ok {
		t.Error("the wallet token registered a terminal")
	}
	if te, _ := e.Registry().Get("STALL1"); te.Terminal().KeyVersion != 1 || te.Terminal().Blocked {
		t.Errorf("the wallet token changed the stall terminal: %+v", te.Terminal())
	}
	if st, m := as(t, opTok, "GET", base+"/v1/accounts/county:C1", "check", ""); st != 200 || m["balance"] != 96500.0 || m["blocked"] != false {
		t.Errorf("card after the wallet's refused calls: %d %v", st, m)
	}
	// The operator token still has every route.
	if st, m := as(t, opTok, "GET", base+"/v1/stall-codes/"+sc, "op-get", ""); st != 200 || m["state"] != "live" {
		t.Errorf("operator GET stall code: %d %v", st, m)
	}

	// Audit: the role and that role's token fingerprint on every line.
	opFP, walletFP := fingerprintOf(opTok), fingerprintOf(walletTok)
	byID := map[string][]map[string]any{}
	for _, l := range auditLines(t, logs.String()) {
		id, _ := l["request_id"].(string)
		byID[id] = append(byID[id], l)
	}
	for id, want := range map[string]struct {
		role, fp, action, result string
	}{
		"w-pay":     {"wallet", walletFP, "stall_code.pay", "00"},
		"w-refund":  {"wallet", walletFP, "stall_code.refund", "00"},
		"w-bad":     {"wallet", walletFP, "stall_code.pay", "A2"},
		"op-pay":    {"operator", opFP, "stall_code.pay", "00"},
		"op-refund": {"operator", opFP, "stall_code.refund", "00"},
		"reg":       {"operator", opFP, "stall_code.register", "ok"},
	} {
		ls := byID[id]
		if len(ls) != 1 || ls[0]["role"] != want.role || ls[0]["token_fp"] != want.fp || ls[0]["action"] != want.action || ls[0]["result"] != want.result {
			t.Errorf("audit of %s: %v, want role %s fp %s %s %s", id, ls, want.role, want.fp, want.action, want.result)
		}
	}
	if n := len(byID["bad-tok"]); n != 0 {
		t.Errorf("%d audit lines for calls with a wrong token; they reached no route", n)
	}
	denied := byID["forbid"]
	if len(denied) != len(forbidden) {
		t.Fatalf("%d audit lines for %d forbidden calls", len(denied), len(forbidden))
	}
	for i, l := range denied {
		f := forbidden[i]
		resource := "/v1/" + strings.SplitN(strings.SplitN(strings.TrimPrefix(f.path, "/v1/"), "?", 2)[0], "/", 2)[0]
		if l["role"] != "wallet" || l["token_fp"] != walletFP || l["action"] != "auth.forbidden" || l["result"] != codeWalletScope ||
			l["target"] != resource || l["method"] != f.method {
			t.Errorf("audit of wallet %s %s: %v", f.method, f.path, l)
		}
	}
	if strings.Contains(logs.String(), walletTok) || strings.Contains(logs.String(), opTok) {
		t.Error("a token is in the log")
	}
}

// Without a wallet token the payment routes take the operator token only
// (the behaviour before the wallet token existed); an empty bearer token
// never matches the unset wallet token.
func TestNoWalletTokenOperatorOnly(t *testing.T) {
	base, logs, e := startWallet(t, "")
	sc := stallFixture(t, base, e)
	pay := base + "/v1/stall-codes/" + sc + "/payments"
	for _, tok := range []string{"", walletTok} {
		if st, _ := as(t, tok, "POST", pay, "no-wallet", `{"account":"county:C1","amount":1,"id":"w-1"}`); st != 401 {
			t.Errorf("payment with token %q and no wallet token configured: %d, want 401", tok, st)
		}
	}
	req, _ := http.NewRequest("POST", pay, strings.NewReader(`{"account":"county:C1","amount":1,"id":"w-1"}`))
	req.Header.Set("Authorization", "Bearer ")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("empty bearer token: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	if st, m := as(t, opTok, "POST", pay, "op-pay", `{"account":"county:C1","amount":100,"id":"w-2"}`); st != 200 || m["code"] != "00" {
		t.Fatalf("operator payment: %d %v", st, m)
	}
	for _, l := range auditLines(t, logs.String()) {
		if l["role"] != "operator" {
			t.Errorf("audit line without the operator role: %v", l)
		}
	}
}

// walletRoute is the scope of the wallet token: exactly the two POST
// routes of payments and refunds.
func TestWalletRoute(t *testing.T) {
	for _, c := range []struct {
		path string
		post bool
		ok   bool
	}{
		{"stall-codes/SC1/payments", true, true},
		{"stall-codes/SC1/payments/w-1/refunds", true, true},
		{"stall-codes/SC1/payments", false, false},
		{"stall-codes/SC1/payments/w-1/refunds", false, false},
		{"stall-codes/SC1/payments/w-1", true, false},
		{"stall-codes/SC1/payments/w-1/refund", true, false},
		{"stall-codes/SC1/payments/w-1/refunds/x", true, false},
		{"stall-codes/SC1/revoke", true, false},
		{"stall-codes/SC1", true, false},
		{"stall-codes", true, false},
		{"terminals/SC1/payments", true, false},
		{"accounts/county:C1/payments", true, false},
	} {
		if got := walletRoute(strings.Split(c.path, "/"), c.post); got != c.ok {
			t.Errorf("walletRoute(%s, post %v) = %v, want %v", c.path, c.post, got, c.ok)
		}
	}
}

// fingerprintOf is the audit's name of tok: the first 6 bytes of its
// SHA-256, in hex.
func fingerprintOf(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:6])
}
