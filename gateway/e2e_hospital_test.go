package gateway_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

func wantHosp(t *testing.T, rep *terminals.Reply, amt, bal int64) {
	t.Helper()
	wantCode(t, rep, terminals.CodeApproved)
	if rep.Amt == nil || *rep.Amt != amt || rep.Bal == nil || *rep.Bal != bal || rep.Auth == "" {
		t.Fatalf("%s reply %+v (amt %v bal %v), want amt %d, bal %d and an auth ref", rep.Type, rep, rep.Amt, rep.Bal, amt, bal)
	}
}

// TestHospitalKioskThroughMosquitto: one inpatient stay at a kiosk through
// the machine's Mosquitto (docs/protocol.md section 14) with the default
// hospital rules: open a deposit (hold), capture service orders in parts
// with a restart between them, the signed deposit_low notice after the
// capture that crosses the threshold (once: a duplicate capture replays the
// reply only), release on discharge, then an insurance-split purchase that
// charges only the self-pay leg; an inconsistent split is refused.
func TestHospitalKioskThroughMosquitto(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	startGateway(t, h)
	const tid = "KIOSK-1"
	if err := h.eng.RegisterTerminal(registry.Terminal{TID: tid, Kind: registry.KindKiosk, Merchant: "HOSP-1", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	kiosk := testkit.Connect(t, testkit.MQTTURL(), h.topics, tid, terminals.DeriveKey(h.master, tid, 1))
	h.open(t, "county:P1", 0, 1_000_000)
	card := county("P1")
	msg := func(typ string, txn, orig uint64, amt int64) terminals.Request {
		return terminals.Request{Type: typ, Txn: txn, Orig: orig, Amt: amt, Inst: card}
	}

	// Admission: a 3,000 CNY deposit is held, not debited.
	_, rep := kiosk.Do(t, kiosk.Request(msg(terminals.TypeHold, 1, 0, 300_000)))
	wantHosp(t, rep, 300_000, 700_000)
	if got := h.balance(t, "county:P1"); got != 1_000_000 {
		t.Fatalf("balance %d after the hold: a deposit is held, not debited", got)
	}
	// First order: 1,500 CNY; 1,500 remain (above the 1,000 CNY threshold).
	_, rep = kiosk.Do(t, kiosk.Request(msg(terminals.TypeCapture, 2, 1, 150_000)))
	wantHosp(t, rep, 150_000, 700_000)
	kiosk.ExpectSilence(t, 200*time.Millisecond)

	h.stop() // restart mid-stay: the journal replays the deposit
	startGateway(t, h)
	defer h.stop()

	// Second order: 600 CNY takes the deposit to 900 CNY, below the
	// threshold: the reply and the signed notice on the same topic. The
	// gateway publishes the notice after the reply, but over several broker
	// connections, so the kiosk may see them in either order.
	cap3 := kiosk.Request(msg(terminals.TypeCapture, 3, 1, 60_000))
	kiosk.Send(t, cap3)
	var raw3 []byte
	var low *terminals.Reply
	for range 2 {
		raw := kiosk.Next(t, 10*time.Second)
		if m := kiosk.Decode(t, raw); m.Type == terminals.ReplyDepositLow {
			low = m
		} else {
			raw3, rep = raw, m
		}
	}
	if raw3 == nil || low == nil {
		t.Fatal("want one capture reply and one deposit_low notice")
	}
	wantHosp(t, rep, 90_000, 700_000)
	if low.Type != terminals.ReplyDepositLow || low.Txn != 3 || low.Code != terminals.CodeApproved || low.Amt == nil || *low.Amt != 90_000 {
		t.Fatalf("deposit_low notice %+v", low)
	}
	raw, _ := kiosk.Do(t, cap3) // a retry: the stored reply, no second notice
	if !bytes.Equal(raw, raw3) {
		t.Fatalf("duplicate capture reply differs:\n%q\n%q", raw, raw3)
	}
	kiosk.ExpectSilence(t, 300*time.Millisecond)
	// An order above what remains is declined and takes nothing.
	_, rep = kiosk.Do(t, kiosk.Request(msg(terminals.TypeCapture, 4, 1, 95_000)))
	if rep.Code == terminals.CodeApproved {
		t.Fatalf("an order above the remaining deposit was approved: %+v", rep)
	}

	// Discharge: the last charges (100 CNY) are captured, the rest released.
	_, rep = kiosk.Do(t, kiosk.Request(msg(terminals.TypeRelease, 5, 1, 10_000)))
	wantHosp(t, rep, 0, 780_000)
	if got := h.balance(t, "county:P1"); got != 780_000 {
		t.Fatalf("balance %d after discharge, want 780000 (1500 + 600 + 100 CNY charged)", got)
	}
	// The deposit is closed: a late order finds nothing to charge.
	_, rep = kiosk.Do(t, kiosk.Request(msg(terminals.TypeCapture, 6, 1, 1_000)))
	if rep.Code == terminals.CodeApproved {
		t.Fatalf("a capture after discharge was approved: %+v", rep)
	}

	// Outpatient lab test, 100 CNY, insurance pays 60 + 10: 30 CNY charged.
	lab := terminals.Request{Type: terminals.TypePurchase, Txn: 7, Amt: 10_000, Inst: card, Item: "LAB",
		Ins: terminals.Insurance{Pool: 6_000, Personal: 1_000, Self: 3_000, Set: true}}
	_, rep = kiosk.Do(t, kiosk.Request(lab))
	wantHosp(t, rep, 3_000, 777_000)
	bad := lab
	bad.Txn, bad.Ins.Self = 8, 2_000 // legs sum to 9,000, not the bill's 10,000
	_, rep = kiosk.Do(t, kiosk.Request(bad))
	wantCode(t, rep, terminals.CodeInvalidAmount)
	if got := h.balance(t, "county:P1"); got != 777_000 {
		t.Fatalf("balance %d at the end, want 777000", got)
	}

	// Issue 6: the kiosk scene's traffic is counted under its own labels.
	if n := testutil.ToFloat64(h.m.Requests.WithLabelValues(terminals.TypeRelease, "00", "kiosk", "county")); n != 1 {
		t.Fatalf("approved kiosk releases counted %v, want 1", n)
	}
	if n := testutil.ToFloat64(h.m.Requests.WithLabelValues(terminals.TypeCapture, "00", "kiosk", "county")); n < 1 {
		t.Fatalf("approved kiosk captures counted %v since the restart, want >= 1", n)
	}
}
