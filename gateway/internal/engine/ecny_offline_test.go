package engine

import (
	"context"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// TestECNYOfflineOverTheWire: a terminal uploads a wallet's double-offline
// payments; the eleventh since the wallet's last online operation is
// declined OFFLINE_COUNT_EXCEEDED, a retry of the same id gets the stored
// reply, and the count survives a restart.
func TestECNYOfflineOverTheWire(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 0)
	if r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "ecny:W1", Amount: 50_000, Class: 4, Ref: "w"}); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open wallet: %v %v", r.Code, err)
	}
	pay := func(txn uint64) []byte {
		r := terminals.Request{V: 1, Type: terminals.TypeECNYOffline, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(), Amt: 1000,
			Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: "W1"}}
		return signer.Seal(nil, r.AppendJSON(nil))
	}
	for txn := uint64(1); txn <= 11; txn++ {
		e.HandleMessage(topic, pay(txn))
		rep := decode(t, p.next(t, 5*time.Second))
		want := terminals.CodeApproved
		if txn == 11 {
			want = terminals.CodeOfflineCountExceeded
		}
		if rep.Code != want {
			t.Fatalf("payment %d: %s, want %s", txn, rep.Code, want)
		}
		if want == terminals.CodeApproved && (rep.Bal == nil || *rep.Bal != 50_000-int64(txn)*1000) {
			t.Fatalf("payment %d: balance %v", txn, rep.Bal)
		}
	}
	first := pay(11)
	e.HandleMessage(topic, first)
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeOfflineCountExceeded {
		t.Fatalf("retry: %s", rep.Code)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2, p2 := openEngine(t, dir, vfs.Default)
	defer e2.Close()
	e2.HandleMessage(topic, pay(12))
	if rep := decode(t, p2.next(t, 5*time.Second)); rep.Code != terminals.CodeOfflineCountExceeded {
		t.Fatalf("after restart: %s (the count was lost)", rep.Code)
	}
}
