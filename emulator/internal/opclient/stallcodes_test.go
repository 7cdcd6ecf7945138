package opclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// TestStallCodePaymentDecisions pins how the wallet backend's calls read
// the gateway's answers: an approval (the stored bytes, and a replay under
// the same id marked), a ledger decline returned as a decision with its
// status, and a refusal before the ledger as a coded *APIError.
func TestStallCodePaymentDecisions(t *testing.T) {
	stored := map[string][]byte{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/stall-codes", func(w http.ResponseWriter, r *http.Request) {
		var s StallCodeSpec
		if json.NewDecoder(r.Body).Decode(&s) != nil || s.TID != "STALL-1" || s.Dynamic || s.Amount != 0 {
			coded(w, terminals.CodeMalformed, "shape")
			return
		}
		writeJSON(w, 201, StallCode{Code: "SCAAAA", TID: s.TID, Merchant: "M-1", Business: s.Business, State: "live"})
	})
	mux.HandleFunc("POST /v1/stall-codes/{code}/payments", func(w http.ResponseWriter, r *http.Request) {
		var p StallPayment
		json.NewDecoder(r.Body).Decode(&p)
		if r.PathValue("code") != "SCAAAA" {
			coded(w, terminals.CodeUnknownInstrument, "no such stall code")
			return
		}
		if b, ok := stored[p.ID]; ok {
			w.Header().Set("X-Idempotent-Replay", "true")
			w.WriteHeader(200)
			w.Write(b)
			return
		}
		code := terminals.CodeApproved
		if p.Amount > 1000 {
			code = terminals.CodeInsufficientFunds
		}
		b, _ := json.Marshal(opwire.StallDecision{ID: p.ID, StallCode: "SCAAAA", Code: code, Name: code.Name(), Account: p.Account,
			Amount: p.Amount, Merchant: "M-1", TID: "STALL-1", Txn: 1<<62 | 7})
		b = append(b, '\n')
		stored[p.ID] = b
		w.WriteHeader(code.HTTPStatus())
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := New(srv.URL, "t", nil)
	ctx := context.Background()
	sc, err := c.RegisterStallCode(ctx, StallCodeSpec{TID: "STALL-1", Business: true})
	if err != nil || sc.Code != "SCAAAA" || sc.State != "live" {
		t.Fatalf("register: %+v %v", sc, err)
	}
	d, err := c.PayStallCode(ctx, sc.Code, StallPayment{Account: "county:1", Amount: 500, ID: "w-1"})
	if err != nil || d.Code != terminals.CodeApproved || d.Replay || d.Txn != 1<<62|7 || d.Amount != 500 {
		t.Fatalf("payment: %+v %v", d, err)
	}
	again, err := c.PayStallCode(ctx, sc.Code, StallPayment{Account: "county:1", Amount: 500, ID: "w-1"})
	if err != nil || !again.Replay || string(again.Raw) != string(d.Raw) {
		t.Fatalf("retry under the same id: %+v %v", again, err)
	}
	dec, err := c.PayStallCode(ctx, sc.Code, StallPayment{Account: "county:1", Amount: 5000, ID: "w-2"})
	if err != nil || dec.Code != terminals.CodeInsufficientFunds {
		t.Fatalf("decline: %+v %v", dec, err)
	}
	_, err = c.PayStallCode(ctx, "SCNONE", StallPayment{Account: "county:1", Amount: 5, ID: "w-3"})
	if !IsCode(err, terminals.CodeUnknownInstrument) || IsTransport(err) {
		t.Fatalf("unknown code: %v", err)
	}
	srv.Close()
	if _, err := c.PayStallCode(ctx, sc.Code, StallPayment{Account: "county:1", Amount: 5, ID: "w-4"}); !IsTransport(err) {
		t.Fatalf("a closed server is a transport failure: %v", err)
	}
}
