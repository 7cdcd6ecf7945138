package engine

import (
	"bytes"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/terminals"
)

func kiosk(typ string, txn, orig uint64, amt int64) terminals.Request {
	return terminals.Request{V: 1, Type: typ, TID: "T1", Txn: txn, Orig: orig, TS: time.Now().UnixMilli(), Amt: amt,
		Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}}
}

func send(t *testing.T, e *Engine, p *fakePub, r terminals.Request) (*terminals.Reply, []byte) {
	t.Helper()
	e.HandleMessage(topic, signer.Seal(nil, r.AppendJSON(nil)))
	raw := p.next(t, 5*time.Second)
	return decode(t, raw), raw
}

func want(t *testing.T, rep *terminals.Reply, code terminals.Code, amt int64) {
	t.Helper()
	if rep.Code != code {
		t.Fatalf("txn %d %s: code %s, want %s", rep.Txn, rep.Type, rep.Code, code)
	}
	if code == terminals.CodeApproved && (rep.Amt == nil || *rep.Amt != amt) {
		t.Fatalf("txn %d %s: amt %v, want %d", rep.Txn, rep.Type, rep.Amt, amt)
	}
}

// hold -> top-up -> capture in parts (one spanning both holds, crossing
// the low-balance threshold) -> duplicate -> over-capture -> discharge, with
// a restart in the middle that must keep the deposit.
func TestHospitalDepositFlow(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, nil)
	setup(t, e, 1_000_000)
	rep, _ := send(t, e, p, kiosk(terminals.TypeHold, 1, 0, 300_000))
	want(t, rep, terminals.CodeApproved, 300_000)
	if *rep.Bal != 700_000 {
		t.Fatalf("bal after hold %d", *rep.Bal)
	}
	rep, _ = send(t, e, p, kiosk(terminals.TypeHold, 2, 1, 100_000))
	want(t, rep, terminals.CodeApproved, 400_000)
	rep, raw := send(t, e, p, kiosk(terminals.TypeCapture, 3, 1, 350_000))
	want(t, rep, terminals.CodeApproved, 50_000)
	low := decode(t, p.next(t, 5*time.Second))
	if low.Type != terminals.ReplyDepositLow || low.Amt == nil || *low.Amt != 50_000 {
		t.Fatalf("notice = %+v", low)
	}
	// Idempotent capture: the same txn gets the byte-identical reply.
	_, raw2 := send(t, e, p, kiosk(terminals.TypeCapture, 3, 1, 350_000))
	if !bytes.Equal(raw, raw2) {
		t.Fatal("duplicate capture reply differs")
	}
	if b := balance(t, e); b != 650_000 {
		t.Fatalf("balance after capture %d, want 650000", b)
	}
	rep, _ = send(t, e, p, kiosk(terminals.TypeCapture, 4, 1, 60_000))
	want(t, rep, terminals.CodeInsufficientFunds, 0)
	rep, _ = send(t, e, p, kiosk(terminals.TypeCapture, 5, 4, 100))
	want(t, rep, terminals.CodeOriginalNotFound, 0)

	// Restart (snapshot on Close, and a second run without one).
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, p = openEngine(t, dir, nil)
	rep, _ = send(t, e, p, kiosk(terminals.TypeCapture, 6, 1, 10_000))
	want(t, rep, terminals.CodeApproved, 40_000)
	rep, _ = send(t, e, p, kiosk(terminals.TypeRelease, 7, 1, 5_000))
	want(t, rep, terminals.CodeApproved, 0)
	if b := balance(t, e); b != 1_000_000-365_000 {
		t.Fatalf("balance after discharge %d, want %d", b, 1_000_000-365_000)
	}
	r, _ := e.Operate(t.Context(), kioskRead())
	if r.Account.Held != 0 {
		t.Fatalf("held after discharge %d", r.Account.Held)
	}
	rep, _ = send(t, e, p, kiosk(terminals.TypeCapture, 8, 1, 100))
	want(t, rep, terminals.CodeOriginalNotFound, 0)
	e.Close()
}

// Insurance split: bad sums refused with a code, only self-pay charged.
func TestHospitalInsuranceSplit(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), nil)
	defer e.Close()
	setup(t, e, 100_000)
	r := kiosk(terminals.TypePurchase, 1, 0, 10_000)
	r.Ins = terminals.Insurance{Pool: 6_000, Personal: 1_000, Self: 2_000, Set: true}
	rep, _ := send(t, e, p, r)
	want(t, rep, terminals.CodeInvalidAmount, 0)
	r.Txn, r.Ins.Self = 2, 3_000
	r.Item = "LAB"
	rep, _ = send(t, e, p, r)
	want(t, rep, terminals.CodeApproved, 3_000)
	if b := balance(t, e); b != 97_000 {
		t.Fatalf("balance %d, want 97000", b)
	}
	r = kiosk(terminals.TypePurchase, 3, 0, 1_000)
	r.Item = "REG" // fixed at 1,200 fen
	rep, _ = send(t, e, p, r)
	want(t, rep, terminals.CodeInvalidAmount, 0)
}

func kioskRead() core.Input { return core.Input{Account: "county:C1"} }
