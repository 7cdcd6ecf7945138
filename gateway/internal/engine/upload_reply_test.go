package engine

import (
	"context"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// uploadCase sends one card's offline taps as an offline_upload of T1 and
// checks the reply: amt (taken from the balance), debt (absent when 0),
// bal and the outcome letters.
func uploadCase(t *testing.T, e *Engine, p *fakePub, txn uint64, card string, taps []terminals.UploadTap, amt, debt, bal int64, out string) {
	t.Helper()
	r := terminals.Request{V: 1, Type: terminals.TypeOfflineUpload, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(),
		Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: card}}
	for _, tp := range taps {
		r.Taps.Add(tp)
	}
	rep, _ := send(t, e, p, r)
	if rep.Code != terminals.CodeApproved {
		t.Fatalf("upload %d: %s", txn, rep.Code)
	}
	if rep.Amt == nil || *rep.Amt != amt {
		t.Fatalf("upload %d: amt %v, want %d", txn, show(rep.Amt), amt)
	}
	if (debt == 0) != (rep.Debt == nil) || (rep.Debt != nil && *rep.Debt != debt) {
		t.Fatalf("upload %d: debt %v, want %d (absent when 0)", txn, show(rep.Debt), debt)
	}
	if rep.Bal == nil || *rep.Bal != bal {
		t.Fatalf("upload %d: bal %v, want %d", txn, show(rep.Bal), bal)
	}
	if rep.Out != out {
		t.Fatalf("upload %d: out %q, want %q", txn, rep.Out, out)
	}
}

func show(v *int64) any {
	if v == nil {
		return "absent"
	}
	return *v
}

// TestOfflineUploadReplyIsWhatTheCardPaid: the reply's amt of an
// offline_upload is what the upload took from the card's balance and debt
// what it left owing, so amt + debt is what the rides cost. A distance
// journey opened and closed inside one upload reports the zone fare, not
// the hold plus the capture; a journey left open reports nothing until
// the upload that closes it; fares the balance cannot cover are debt.
func TestOfflineUploadReplyIsWhatTheCardPaid(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	setup(t, e, 1000)
	at := time.Now().Add(-2 * time.Hour).UnixMilli()
	min := int64(60_000)

	// D1 S1 -> S3 (zones 1 -> 2): the reader held 600 and captured 300.
	uploadCase(t, e, p, 1, "C1", []terminals.UploadTap{
		{Seq: 1, Route: "D1", Stop: "S1", TS: at},
		{Seq: 2, Out: true, Route: "D1", Stop: "S3", TS: at + 20*min},
	}, 300, 0, 700, "cc")
	if b := cardBalance(t, e, "C1"); b != 700 {
		t.Fatalf("balance after the journey: %d, want 700", b)
	}
	// A boarding left open: 600 held, nothing paid yet.
	uploadCase(t, e, p, 2, "C1", []terminals.UploadTap{
		{Seq: 3, Route: "D1", Stop: "S1", TS: at + 40*min},
	}, 0, 0, 100, "c")
	// Its tap-out in the next upload: zones 1 -> 3, the whole 600.
	uploadCase(t, e, p, 3, "C1", []terminals.UploadTap{
		{Seq: 4, Out: true, Route: "D1", Stop: "S4", TS: at + 60*min},
	}, 600, 0, 100, "c")
	if b := cardBalance(t, e, "C1"); b != 100 {
		t.Fatalf("balance after the second journey: %d, want 100", b)
	}

	// 100 fen cover neither flat fare of 200: both are debt.
	openCard(t, e, "C2", 100)
	uploadCase(t, e, p, 4, "C2", []terminals.UploadTap{
		{Seq: 5, Route: "B1", TS: at},
		{Seq: 6, Route: "B1", TS: at + 30*min},
	}, 0, 400, 100, "dd")

	// docs/protocol.md section 16's example: the balance pays the first
	// fare, the second is debt.
	openCard(t, e, "C4", 200)
	uploadCase(t, e, p, 7, "C4", []terminals.UploadTap{
		{Seq: 9, Route: "B1", TS: at},
		{Seq: 10, Route: "B1", TS: at + 20*min},
	}, 200, 200, 0, "cd")

	// A distance journey the balance cannot hold: its hold is debt, and
	// closing it in the same upload leaves the zone fare owing, not the
	// maximum fare.
	openCard(t, e, "C3", 100)
	uploadCase(t, e, p, 5, "C3", []terminals.UploadTap{
		{Seq: 7, Route: "D1", Stop: "S1", TS: at},
		{Seq: 8, Out: true, Route: "D1", Stop: "S3", TS: at + 20*min},
	}, 0, 300, 100, "dn")

	// The same message again gets the stored reply; an upload of taps
	// already applied pays nothing.
	uploadCase(t, e, p, 1, "C1", []terminals.UploadTap{
		{Seq: 1, Route: "D1", Stop: "S1", TS: at},
		{Seq: 2, Out: true, Route: "D1", Stop: "S3", TS: at + 20*min},
	}, 300, 0, 700, "cc")
	uploadCase(t, e, p, 6, "C1", []terminals.UploadTap{
		{Seq: 1, Route: "D1", Stop: "S1", TS: at},
		{Seq: 2, Out: true, Route: "D1", Stop: "S3", TS: at + 20*min},
	}, 0, 0, 100, "uu")
}

// TestECNYOfflineReplyCarriesAmt: the approved ecny_offline reply carries
// auth, amt (the amount debited) and bal, as docs/protocol.md section 17
// shows; a decline carries neither amt nor bal.
func TestECNYOfflineReplyCarriesAmt(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	setup(t, e, 0)
	if r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "ecny:W1", Amount: 50_000, Class: 4, Ref: "w"}); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open wallet: %v %v", r.Code, err)
	}
	pay := func(txn uint64, amt int64) *terminals.Reply {
		rep, _ := send(t, e, p, terminals.Request{V: 1, Type: terminals.TypeECNYOffline, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(), Amt: amt,
			Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: "W1"}})
		return rep
	}
	rep := pay(1, 1500)
	if rep.Code != terminals.CodeApproved || rep.Auth == "" || rep.Amt == nil || *rep.Amt != 1500 || rep.Bal == nil || *rep.Bal != 48_500 {
		t.Fatalf("approved ecny_offline reply: %s auth %q amt %v bal %v", rep.Code, rep.Auth, show(rep.Amt), show(rep.Bal))
	}
	rep = pay(2, 60_000) // above the balance
	if rep.Code == terminals.CodeApproved || rep.Amt != nil || rep.Bal != nil {
		t.Fatalf("declined ecny_offline reply: %s amt %v bal %v", rep.Code, show(rep.Amt), show(rep.Bal))
	}
}
