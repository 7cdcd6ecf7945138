package gateway_test

import (
	"bytes"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

func wantMoney(t *testing.T, what string, rep *terminals.Reply, amt, bal int64) {
	t.Helper()
	wantCode(t, rep, terminals.CodeApproved)
	if rep.Amt == nil || *rep.Amt != amt || rep.Bal == nil || *rep.Bal != bal || rep.Auth == "" {
		t.Fatalf("%s reply %+v, want amt %d, bal %d and an auth ref", what, rep, amt, bal)
	}
}

// issueCode makes a consumer payment code as the bank's wallet app does,
// under issuer key 1 derived from the gateway's master key.
func issueCode(t *testing.T, master []byte, account string, nonce uint64) string {
	t.Helper()
	code, err := market.Issue(market.IssuerKey(master, 1), 1, account, market.ClassB, time.Now(), nonce)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return code
}

// TestMarketQRPayAndRefundThroughMosquitto: a stall terminal scans a
// consumer code issued for a county card (no "inst": the gateway reads the
// account from the code), is approved with the right balance, is told
// PAYCODE_REUSED for the same code again, refunds part of the payment, is
// told REFUND_EXCEEDS past what remains, and after a restart gets the
// stored replies byte for byte and still verifies fresh codes.
func TestMarketQRPayAndRefundThroughMosquitto(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	startGateway(t, h)
	h.open(t, "county:Q1", 0, 10_000)
	h.open(t, "county:Q2", 0, 10_000)
	stall := h.terminal(t, "STALL-1")

	code := issueCode(t, h.master, "county:Q1", 1)
	pay := stall.Request(terminals.Request{Type: terminals.TypeQRPay, Txn: 1, Amt: 1550, PayCode: code})
	rawPay, rep := stall.Do(t, pay)
	wantMoney(t, "qr_pay", rep, 1550, 8450)
	if got := h.balance(t, "county:Q1"); got != 8450 {
		t.Fatalf("balance %d after the QR payment, want 8450", got)
	}
	// The terminal lost the reply and repeats: the stored reply, no second debit.
	raw, _ := stall.Do(t, pay)
	if !bytes.Equal(raw, rawPay) {
		t.Fatalf("duplicate qr_pay reply differs:\n%q\n%q", raw, rawPay)
	}

	// The same code under a new txn id: codes are single-use.
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeQRPay, Txn: 2, Amt: 100, PayCode: code}))
	wantCode(t, rep, terminals.CodePayCodeReused)
	// A code presented with another account's "inst" does not verify.
	other := issueCode(t, h.master, "county:Q1", 2)
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeQRPay, Txn: 3, Amt: 100, PayCode: other, Inst: county("Q2")}))
	wantCode(t, rep, terminals.CodePayCodeInvalid)
	// A code issued under a key the gateway does not derive from its master.
	forged, err := market.Issue(market.IssuerKey([]byte("another master key, not the bank"), 1), 1, "county:Q1", market.ClassB, time.Now(), 3)
	if err != nil {
		t.Fatal(err)
	}
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeQRPay, Txn: 4, Amt: 100, PayCode: forged}))
	wantCode(t, rep, terminals.CodePayCodeInvalid)
	if got := h.balance(t, "county:Q1"); got != 8450 {
		t.Fatalf("balance %d after declined QR payments, want 8450", got)
	}

	// Refunds go back to the paying account, partially, never past the payment.
	refund := stall.Request(terminals.Request{Type: terminals.TypeRefund, Txn: 5, Orig: 1, Amt: 500, Inst: county("Q1")})
	rawRefund, rep := stall.Do(t, refund)
	wantMoney(t, "refund", rep, 500, 8950)
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeRefund, Txn: 6, Orig: 1, Amt: 1051, Inst: county("Q1")}))
	wantCode(t, rep, terminals.CodeRefundExceeds)
	// A refund naming the payment on another account finds nothing.
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeRefund, Txn: 7, Orig: 1, Amt: 10, Inst: county("Q2")}))
	wantCode(t, rep, terminals.CodeOriginalNotFound)
	if got := h.balance(t, "county:Q1"); got != 8950 {
		t.Fatalf("balance %d after the refunds, want 8950", got)
	}

	// Restart: the journal replays the market records; stored replies are
	// byte-identical and the rest of the payment is still refundable.
	h.stop()
	startGateway(t, h)
	defer h.stop()
	raw, _ = stall.Do(t, pay)
	if !bytes.Equal(raw, rawPay) {
		t.Fatalf("after restart the duplicate qr_pay reply differs")
	}
	raw, _ = stall.Do(t, refund)
	if !bytes.Equal(raw, rawRefund) {
		t.Fatalf("after restart the duplicate refund reply differs")
	}
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeQRPay, Txn: 8, Amt: 100, PayCode: code}))
	wantCode(t, rep, terminals.CodePayCodeReused)
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeRefund, Txn: 9, Orig: 1, Amt: 1050, Inst: county("Q1")}))
	wantMoney(t, "final refund", rep, 1050, 10_000)
	_, rep = stall.Do(t, stall.Request(terminals.Request{Type: terminals.TypeQRPay, Txn: 10, Amt: 200,
		PayCode: issueCode(t, h.master, "county:Q2", 4)}))
	wantMoney(t, "qr_pay after restart", rep, 200, 9800)
}
