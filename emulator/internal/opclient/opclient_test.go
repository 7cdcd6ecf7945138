package opclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"scenepay/terminals"
)

// fakeAPI is a small stand-in for the operator API, enough to pin the
// client's requests and its handling of coded errors.
type fakeAPI struct {
	mu        sync.Mutex
	terminals map[string]Terminal
	accounts  map[string]*Account
	auths     []string
	ready     bool
}

func newFake(t *testing.T) (*fakeAPI, *Client) {
	f := &fakeAPI{terminals: map[string]Terminal{}, accounts: map[string]*Account{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, New(srv.URL, "secret", nil)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func coded(w http.ResponseWriter, c terminals.Code, msg string) {
	writeJSON(w, c.HTTPStatus(), map[string]string{"code": string(c), "name": c.Name(), "error": msg})
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/readyz":
		if !f.ready {
			http.Error(w, "journal not open", 503)
		}
		return
	case "/metrics":
		io.WriteString(w, "# HELP x\nscp_requests_total{code=\"00\"} 3\nscp_requests_total{code=\"51\"} 2\nscp_up 1\nscp_lat_bucket{le=\"1\"} 9\n")
		return
	}
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	if r.Header.Get("Authorization") != "Bearer secret" {
		http.Error(w, "unauthorized", 401)
		return
	}
	p := r.URL.Path
	switch {
	case r.Method == "POST" && p == "/v1/terminals":
		var t Terminal
		json.NewDecoder(r.Body).Decode(&t)
		if _, ok := f.terminals[t.TID]; ok {
			writeJSON(w, 409, map[string]string{"error": "exists"})
			return
		}
		f.terminals[t.TID] = t
		writeJSON(w, 201, t)
	case r.Method == "GET" && strings.HasPrefix(p, "/v1/terminals/"):
		t, ok := f.terminals[strings.TrimPrefix(p, "/v1/terminals/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, 200, t)
	case r.Method == "POST" && p == "/v1/accounts":
		var a OpenAccount
		json.NewDecoder(r.Body).Decode(&a)
		k := a.Inst.Key()
		if _, ok := f.accounts[k]; ok {
			writeJSON(w, 409, map[string]string{"error": "exists"})
			return
		}
		f.accounts[k] = &Account{Account: k, Balance: a.Balance, Available: a.Balance, Class: a.Class}
		writeJSON(w, 201, f.accounts[k])
	case strings.HasPrefix(p, "/v1/accounts/"):
		rest := strings.TrimPrefix(p, "/v1/accounts/")
		key, op, _ := strings.Cut(rest, "/")
		a, ok := f.accounts[key]
		if !ok {
			coded(w, terminals.CodeUnknownInstrument, "no such account")
			return
		}
		switch op {
		case "":
			writeJSON(w, 200, a)
		case "topup":
			var b struct{ Amt int64 }
			json.NewDecoder(r.Body).Decode(&b)
			if a.Class == 4 && a.Balance+b.Amt > 100000 {
				coded(w, terminals.CodeLimitBalance, "above class cap")
				return
			}
			paid := min(a.Debt, b.Amt) // transit debt first
			a.Debt -= paid
			a.Balance += b.Amt - paid
			a.Available += b.Amt - paid
			ans := *a
			ans.DebtPaid = paid
			writeJSON(w, 200, ans)
		case "block":
			var b struct{ Blocked bool }
			json.NewDecoder(r.Body).Decode(&b)
			a.Blocked = b.Blocked
			writeJSON(w, 200, a)
		}
	default:
		http.NotFound(w, r)
	}
}

func TestOperatorFlow(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	term := Terminal{TID: "BUS-0001", Kind: "bus", Merchant: "M-BUS", KeyVersion: 1}
	got, err := c.RegisterTerminal(ctx, term)
	if err != nil || got != term {
		t.Fatalf("register = %+v, %v", got, err)
	}
	// Registering again reads the existing terminal back.
	if got, err = c.RegisterTerminal(ctx, term); err != nil || got != term {
		t.Fatalf("re-register = %+v, %v", got, err)
	}
	w := terminals.Instrument{Kind: "ecny", ID: "w-1"}
	a, created, err := c.OpenAccount(ctx, OpenAccount{Inst: w, Class: 4, Balance: 90000, Ref: "open-w-1"})
	if err != nil || !created || a.Balance != 90000 || a.Account != "ecny:w-1" {
		t.Fatalf("open = %+v %v %v", a, created, err)
	}
	a, created, err = c.OpenAccount(ctx, OpenAccount{Inst: w, Class: 4, Balance: 5, Ref: "open-w-1"})
	if err != nil || created || a.Balance != 90000 {
		t.Fatalf("reopen = %+v %v %v", a, created, err)
	}
	if a, err = c.TopUp(ctx, "ecny:w-1", 5000, "t1"); err != nil || a.Balance != 95000 {
		t.Fatalf("topup = %+v %v", a, err)
	}
	_, err = c.TopUp(ctx, "ecny:w-1", 50000, "t2")
	if !IsCode(err, terminals.CodeLimitBalance) || !IsStatus(err, 402) {
		t.Fatalf("topup over cap: err = %v", err)
	}
	// A county card in debt: the top-up pays it first and says how much.
	if _, _, err = c.OpenAccount(ctx, OpenAccount{Inst: terminals.Instrument{Kind: "county", ID: "c-1"}, Balance: 100, Ref: "open-c-1"}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.accounts["county:c-1"].Debt = 300
	f.mu.Unlock()
	if a, err = c.Account(ctx, "county:c-1"); err != nil || a.Debt != 300 || a.DebtPaid != 0 {
		t.Fatalf("card in debt = %+v %v", a, err)
	}
	if a, err = c.TopUp(ctx, "county:c-1", 500, "t3"); err != nil || a.DebtPaid != 300 || a.Debt != 0 || a.Balance != 300 {
		t.Fatalf("topup of a card in debt = %+v %v", a, err)
	}
	if _, err = c.Account(ctx, "county:none"); !IsCode(err, terminals.CodeUnknownInstrument) || !IsStatus(err, 404) {
		t.Fatalf("unknown account: err = %v", err)
	}
	if a, err = c.Block(ctx, "ecny:w-1", true); err != nil || !a.Blocked {
		t.Fatalf("block = %+v %v", a, err)
	}
	for _, h := range f.auths {
		if h != "Bearer secret" {
			t.Fatalf("authorization header %q", h)
		}
	}
	bad := New(c.base, "wrong", nil)
	if _, err := bad.Account(ctx, "ecny:w-1"); !IsStatus(err, 401) {
		t.Fatalf("wrong token: err = %v", err)
	}
}

func TestMetricsAndReady(t *testing.T) {
	f, c := newFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := c.WaitReady(ctx, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("WaitReady on an unready gateway: %v", err)
	}
	f.mu.Lock()
	f.ready = true
	f.mu.Unlock()
	if err := c.WaitReady(context.Background(), 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := ParseMetrics(text)
	if m["scp_requests_total"] != 5 || m["scp_up"] != 1 {
		t.Fatalf("metrics = %v", m)
	}
	if _, ok := m["scp_lat_bucket"]; ok {
		t.Fatal("bucket series not skipped")
	}
}
