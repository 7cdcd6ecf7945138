package opapi

import (
	"testing"
	"time"

	"scenepay/terminals"
)

// TestTopUpDebtPaid: the account view shows a card's transit debt; the
// top-up answer says how much of the top-up paid it (0 when none; a
// retried ref the same again), and the view after shows the debt left.
func TestTopUpDebtPaid(t *testing.T) {
	g := startJournalGW(t, "gw1", time.Now, map[string]string{"B-1": "M-BUS"})
	const tok = "tok"
	if st, m := call(t, "POST", g.base+"/v1/accounts", tok, `{"inst":{"k":"county","id":"D1"},"balance":100,"ref":"open-d1"}`); st != 201 || m["debt"] != 0.0 {
		t.Fatalf("open: %d %v", st, m)
	}
	// 100 fen cover neither flat fare of 200 on B1: 400 fen of debt.
	at := time.Now().Add(-time.Hour).UnixMilli()
	q := terminals.Request{V: 1, Type: terminals.TypeOfflineUpload, TID: "B-1", Txn: 1, TS: time.Now().UnixMilli(),
		Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "D1"}}
	q.Taps.Add(terminals.UploadTap{Seq: 1, Route: "B1", TS: at})
	q.Taps.Add(terminals.UploadTap{Seq: 2, Route: "B1", TS: at + 30*60_000})
	s := terminals.NewSigner(terminals.DeriveKey(testMaster, "B-1", 1))
	g.e.HandleMessage("scp/v1/t/B-1/req", s.Seal(nil, q.AppendJSON(nil)))
	select {
	case raw := <-g.pub.ch:
		body, err := s.Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := terminals.DecodeReply(body)
		if err != nil || rep.Code != terminals.CodeApproved || rep.Debt == nil || *rep.Debt != 400 {
			t.Fatalf("upload reply: %+v %v", rep, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no upload reply")
	}
	const acct = "/v1/accounts/county:D1"
	if st, m := call(t, "GET", g.base+acct, tok, ""); st != 200 || m["debt"] != 400.0 || m["balance"] != 100.0 {
		t.Fatalf("view in debt: %d %v", st, m)
	}
	if st, m := call(t, "POST", g.base+acct+"/topup", tok, `{"amt":150,"ref":"d1-a"}`); st != 200 || m["debt_paid"] != 150.0 || m["debt"] != 250.0 || m["balance"] != 100.0 {
		t.Fatalf("partial top-up: %d %v", st, m)
	}
	if st, m := call(t, "POST", g.base+acct+"/topup", tok, `{"amt":1000,"ref":"d1-b"}`); st != 200 || m["debt_paid"] != 250.0 || m["debt"] != 0.0 || m["balance"] != 850.0 {
		t.Fatalf("covering top-up: %d %v", st, m)
	}
	if st, m := call(t, "GET", g.base+acct, tok, ""); st != 200 || m["debt"] != 0.0 || m["balance"] != 850.0 {
		t.Fatalf("view after: %d %v", st, m)
	}
	// A retried top-up (same ref and amount) answers the same debt paid.
	if st, m := call(t, "POST", g.base+acct+"/topup", tok, `{"amt":150,"ref":"d1-a"}`); st != 200 || m["debt_paid"] != 150.0 || m["debt"] != 0.0 || m["balance"] != 850.0 {
		t.Fatalf("retried top-up: %d %v", st, m)
	}
	if st, m := call(t, "POST", g.base+acct+"/topup", tok, `{"amt":100,"ref":"d1-c"}`); st != 200 || m["debt_paid"] != 0.0 || m["balance"] != 950.0 {
		t.Fatalf("top-up without debt: %d %v", st, m)
	}
	if st, m := call(t, "POST", g.base+"/v1/accounts/county:NOPE/topup", tok, `{"amt":100,"ref":"nope"}`); st != 404 || m["debt_paid"] != nil {
		t.Fatalf("top-up of an unknown card: %d %v", st, m)
	}
}
