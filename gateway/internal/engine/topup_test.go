package engine

import (
	"context"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// TestOperateTopUpReportsDebtPaid: a card's transit debt shows in its
// account view; a top-up pays it first and OperateTopUp reports the part
// that paid it, a top-up smaller than the debt pays only part, a repeated
// ref reports the same, and a card without debt reports 0.
func TestOperateTopUpReportsDebtPaid(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	setup(t, e, 1000)
	at := time.Now().Add(-2 * time.Hour).UnixMilli()
	openCard(t, e, "C2", 100)
	// 100 fen cover neither flat fare of 200: both are debt.
	uploadCase(t, e, p, 1, "C2", []terminals.UploadTap{
		{Seq: 1, Route: "B1", TS: at},
		{Seq: 2, Route: "B1", TS: at + 30*60_000},
	}, 0, 400, 100, "dd")
	read := func(id string) core.AccountView {
		t.Helper()
		r, err := e.Operate(context.Background(), core.Input{Account: "county:" + id})
		if err != nil || !r.Found {
			t.Fatalf("read %s: %v %v", id, r.Found, err)
		}
		return r.Account
	}
	if v := read("C2"); v.Debt != 400 || v.Balance != 100 {
		t.Fatalf("card in debt: debt %d balance %d, want 400 and 100", v.Debt, v.Balance)
	}
	topUp := func(id string, amt int64, ref string) TopUpResult {
		t.Helper()
		r, err := e.OperateTopUp(context.Background(), core.Input{Op: core.OpTopUp, Account: "county:" + id, Amount: amt, Ref: ref})
		if err != nil || r.Code != terminals.CodeApproved || !r.Found {
			t.Fatalf("top-up %s: %v %v %v", ref, r.Code, r.Found, err)
		}
		return r
	}
	// Less than the debt: all of it pays debt.
	if r := topUp("C2", 150, "r1"); r.DebtPaid != 150 || r.Account.Debt != 250 || r.Account.Balance != 100 {
		t.Fatalf("partial: paid %d, debt %d, balance %d; want 150, 250, 100", r.DebtPaid, r.Account.Debt, r.Account.Balance)
	}
	// More than the debt: the rest is credited.
	if r := topUp("C2", 1000, "r2"); r.DebtPaid != 250 || r.Account.Debt != 0 || r.Account.Balance != 850 {
		t.Fatalf("covering: paid %d, debt %d, balance %d; want 250, 0, 850", r.DebtPaid, r.Account.Debt, r.Account.Balance)
	}
	if v := read("C2"); v.Debt != 0 || v.Balance != 850 {
		t.Fatalf("after: debt %d balance %d, want 0 and 850", v.Debt, v.Balance)
	}
	// A repeated ref applies nothing and reports what the first call paid.
	if r := topUp("C2", 150, "r1"); r.DebtPaid != 150 || r.Account.Debt != 0 || r.Account.Balance != 850 {
		t.Fatalf("repeat: paid %d, debt %d, balance %d; want 150, 0, 850", r.DebtPaid, r.Account.Debt, r.Account.Balance)
	}
	// No debt: nothing paid, all credited.
	if r := topUp("C1", 500, "r3"); r.DebtPaid != 0 || r.Account.Debt != 0 || r.Account.Balance != 1500 {
		t.Fatalf("no debt: paid %d, debt %d, balance %d; want 0, 0, 1500", r.DebtPaid, r.Account.Debt, r.Account.Balance)
	}
	// Only top-ups.
	if _, err := e.OperateTopUp(context.Background(), core.Input{Op: core.OpBlock, Account: "county:C1"}); err == nil {
		t.Fatal("OperateTopUp ran a block")
	}
}
