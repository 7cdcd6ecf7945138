package gateway_test

import (
	"bytes"
	"testing"

	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

func tap(typ string, txn uint64, in terminals.Instrument, route, stop string) terminals.Request {
	return terminals.Request{Type: typ, Txn: txn, Inst: in, Route: route, Stop: stop}
}

func wantTap(t *testing.T, rep *terminals.Reply, amt, bal int64) {
	t.Helper()
	wantCode(t, rep, terminals.CodeApproved)
	if rep.Amt == nil || *rep.Amt != amt || rep.Bal == nil || *rep.Bal != bal || rep.Auth == "" {
		t.Fatalf("tap reply %+v, want amt %d, bal %d and an auth ref", rep, amt, bal)
	}
}

// TestTransitJourneyThroughMosquitto: tap-in / tap-out journeys on the
// default demo distance route D1 through the machine's Mosquitto, with a
// duplicate tap, a restart mid-journey that replays the journal, and a
// restart mid-journey from a snapshot: the tap-out still finds the open
// journey and charges the zone fare.
func TestTransitJourneyThroughMosquitto(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	startGateway(t, h)
	h.open(t, "county:T1", 0, 1000)
	bus := h.terminal(t, "BUS-7")
	card := county("T1")

	// Journey 1: S1 (zone 1) -> S3 (zone 2): hold 600, fare 300.
	in1 := bus.Request(tap(terminals.TypeTapIn, 1, card, "D1", "S1"))
	rawIn1, rep := bus.Do(t, in1)
	wantTap(t, rep, 600, 400)
	raw, _ := bus.Do(t, in1)
	if !bytes.Equal(raw, rawIn1) {
		t.Fatalf("duplicate tap_in reply differs:\n%q\n%q", raw, rawIn1)
	}
	if got := h.balance(t, "county:T1"); got != 1000 {
		t.Fatalf("balance %d after a tap-in: the fare is held, not debited", got)
	}
	_, rep = bus.Do(t, bus.Request(tap(terminals.TypeTapIn, 2, card, "ZZ", "S1")))
	wantCode(t, rep, terminals.CodeMalformed)

	h.stop() // restart mid-journey: the journal replays the tap record
	startGateway(t, h)
	raw, _ = bus.Do(t, in1)
	if !bytes.Equal(raw, rawIn1) {
		t.Fatalf("after restart the duplicate tap_in reply differs")
	}
	out1 := bus.Request(tap(terminals.TypeTapOut, 3, card, "D1", "S3"))
	rawOut1, rep := bus.Do(t, out1)
	wantTap(t, rep, 300, 700)
	if got := h.balance(t, "county:T1"); got != 700 {
		t.Fatalf("balance %d after journey 1, want 700", got)
	}

	// Journey 2: S1 -> S4 (zones 1 -> 3): fare 600, across a snapshot.
	_, rep = bus.Do(t, bus.Request(tap(terminals.TypeTapIn, 4, card, "D1", "S1")))
	wantTap(t, rep, 600, 100)
	if err := h.eng.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	h.stop()
	startGateway(t, h)
	defer h.stop()
	_, rep = bus.Do(t, bus.Request(tap(terminals.TypeTapOut, 5, card, "D1", "S4")))
	wantTap(t, rep, 600, 100)
	if got := h.balance(t, "county:T1"); got != 100 {
		t.Fatalf("balance %d after journey 2, want 100", got)
	}
	raw, _ = bus.Do(t, out1)
	if !bytes.Equal(raw, rawOut1) {
		t.Fatalf("after the second restart the duplicate tap_out reply differs")
	}

	// 900 of the 1000 daily cap spent: the next journey holds and pays
	// only what the cap leaves (best fare, no refund needed).
	_, rep = bus.Do(t, bus.Request(tap(terminals.TypeTapIn, 6, card, "D1", "S1")))
	wantTap(t, rep, 100, 0)
	_, rep = bus.Do(t, bus.Request(tap(terminals.TypeTapOut, 7, card, "D1", "S2")))
	wantTap(t, rep, 100, 0)
	// A reversal of a tap finds no purchase to void.
	_, rep = bus.Do(t, bus.Request(terminals.Request{Type: terminals.TypeReversal, Txn: 8, Orig: 5, Amt: 600, Inst: card}))
	wantCode(t, rep, terminals.CodeOriginalNotFound)
	// Another card without the maximum fare for the hold is declined.
	h.open(t, "county:T2", 0, 100)
	_, rep = bus.Do(t, bus.Request(tap(terminals.TypeTapIn, 9, county("T2"), "D1", "S1")))
	wantCode(t, rep, terminals.CodeInsufficientFunds)
	if got := h.balance(t, "county:T1"); got != 0 {
		t.Fatalf("balance %d at the end, want 0", got)
	}
}
