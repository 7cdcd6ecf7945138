package engine

import (
	"bytes"
	"os"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/scene/market"
	"scenepay/terminals"
)

// The wire contract cannot import the market scene, so it carries its own
// copy of the longest code; the two must agree or a valid code is refused
// at the wire (or a longer one reaches the verifier).
func TestPayCodeLenAgrees(t *testing.T) {
	if terminals.MaxPayCodeLen != market.MaxCodeLen {
		t.Fatalf("terminals.MaxPayCodeLen = %d, market.MaxCodeLen = %d", terminals.MaxPayCodeLen, market.MaxCodeLen)
	}
}

// Every ledger type maps to its own op, and nothing else maps at all: an
// unknown type must never run as some other op (it once fell back to a
// balance inquiry).
func TestOpOf(t *testing.T) {
	for typ, want := range map[string]core.Op{
		terminals.TypePurchase:      core.OpPurchase,
		terminals.TypeReversal:      core.OpReversal,
		terminals.TypeBalance:       core.OpBalance,
		terminals.TypeTapIn:         core.OpTapIn,
		terminals.TypeTapOut:        core.OpTapOut,
		terminals.TypeQRPay:         core.OpQRPay,
		terminals.TypeRefund:        core.OpRefund,
		terminals.TypeHold:          0, // hospital.go builds its own inputs
		terminals.TypeOfflineUpload: core.OpTapUpload,
		terminals.TypeECNYOffline:   core.OpECNYOffline,
		"":                          0,
		"qr_pay ":                   0,
	} {
		if got := opOf(typ); got != want {
			t.Errorf("opOf(%q) = %v, want %v", typ, got, want)
		}
	}
}

func TestMarketRouting(t *testing.T) {
	code, err := market.Issue(market.IssuerKey(master, 1), 1, "county:C1", market.ClassB, time.Unix(1767225600, 0), 7)
	if err != nil {
		t.Fatal(err)
	}
	c2 := terminals.Instrument{Kind: terminals.InstCounty, ID: "C2"}
	for _, c := range []struct {
		name         string
		r            terminals.Request
		route, accnt string
	}{
		{"qr_pay without inst", terminals.Request{Type: terminals.TypeQRPay, PayCode: code}, "county:C1", "county:C1"},
		{"qr_pay with another inst", terminals.Request{Type: terminals.TypeQRPay, PayCode: code, Inst: c2}, "county:C1", "county:C2"},
		{"qr_pay not a code", terminals.Request{Type: terminals.TypeQRPay, PayCode: "XYZ"}, ":", ""},
		{"qr_pay not a code, inst", terminals.Request{Type: terminals.TypeQRPay, PayCode: "XYZ", Inst: c2}, "county:C2", "county:C2"},
		{"refund", terminals.Request{Type: terminals.TypeRefund, Inst: c2, Orig: 1}, "county:C2", "county:C2"},
		{"purchase", terminals.Request{Type: terminals.TypePurchase, Inst: c2}, "county:C2", "county:C2"},
	} {
		if got := routeKey(&c.r); got != c.route {
			t.Errorf("%s: routeKey = %q, want %q", c.name, got, c.route)
		}
		if got := accountOf(&c.r); got != c.accnt {
			t.Errorf("%s: accountOf = %q, want %q", c.name, got, c.accnt)
		}
	}
}

func TestWithPayCodeKeys(t *testing.T) {
	base := core.DefaultConfig()
	got, err := withPayCodeKeys(base, master, nil)
	if err != nil {
		t.Fatal(err)
	}
	if base.PayCodeKeys != nil {
		t.Fatal("withPayCodeKeys modified the caller's config")
	}
	if len(got.PayCodeKeys) != 1 || !bytes.Equal(got.PayCodeKeys[1], market.IssuerKey(master, 1)) {
		t.Fatalf("keys %v, want key 1 derived from the master key", got.PayCodeKeys)
	}
	two, err := withPayCodeKeys(base, master, []uint8{1, 2})
	if err != nil || len(two.PayCodeKeys) != 2 || !bytes.Equal(two.PayCodeKeys[2], market.IssuerKey(master, 2)) {
		t.Fatalf("keys 1,2: %v %v", two.PayCodeKeys, err)
	}
	given := *base
	given.PayCodeKeys = map[uint8][]byte{9: []byte("provisioned")}
	if kept, err := withPayCodeKeys(&given, master, nil); err != nil || kept != &given {
		t.Fatal("provisioned keys were replaced")
	}
	if _, err := withPayCodeKeys(base, master, make([]uint8, payCodeKeyIDsMax+1)); err == nil {
		t.Fatal("accepted more key ids than payCodeKeyIDsMax")
	}
}

// qr_pay and refund through the engine (no broker): the reply carries
// auth, amt and bal; a reused code is declined C3; an over-refund C5; a
// restart replays both from the journal and keeps the replies.
func TestEngineQRPayAndRefund(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, nil)
	setup(t, e, 10_000)
	code, err := market.Issue(market.IssuerKey(master, 1), 1, "county:C1", market.ClassC, time.Now(), 1)
	if err != nil {
		t.Fatal(err)
	}
	send := func(r terminals.Request) ([]byte, *terminals.Reply) {
		t.Helper()
		r.V, r.TID, r.TS = 1, "T1", time.Now().UnixMilli()
		e.HandleMessage(topic, signer.Seal(nil, r.AppendJSON(nil)))
		raw := p.next(t, 5*time.Second)
		return raw, decode(t, raw)
	}
	money := func(rep *terminals.Reply, amt, bal int64) {
		t.Helper()
		if rep.Code != terminals.CodeApproved || rep.Auth == "" || rep.Amt == nil || *rep.Amt != amt || rep.Bal == nil || *rep.Bal != bal {
			t.Fatalf("reply %+v, want approved with amt %d bal %d", rep, amt, bal)
		}
	}
	payReq := terminals.Request{Type: terminals.TypeQRPay, Txn: 1, Amt: 700, PayCode: code}
	rawPay, rep := send(payReq)
	money(rep, 700, 9_300)
	if _, rep = send(terminals.Request{Type: terminals.TypeQRPay, Txn: 2, Amt: 10, PayCode: code}); rep.Code != terminals.CodePayCodeReused {
		t.Fatalf("reused code: %s", rep.Code)
	}
	_, rep = send(terminals.Request{Type: terminals.TypeRefund, Txn: 3, Orig: 1, Amt: 200, Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}})
	money(rep, 200, 9_500)
	if _, rep = send(terminals.Request{Type: terminals.TypeRefund, Txn: 4, Orig: 1, Amt: 501, Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}}); rep.Code != terminals.CodeRefundExceeds {
		t.Fatalf("over-refund: %s", rep.Code)
	}
	if got := balance(t, e); got != 9_500 {
		t.Fatalf("balance %d, want 9500", got)
	}
	// A crash image: the data directory as it is now, with no snapshot
	// (Close would write one), so the market records replay from the journal.
	crash := t.TempDir()
	if err := os.CopyFS(crash, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, p = openEngine(t, crash, nil)
	defer e.Close()
	if got := balance(t, e); got != 9_500 {
		t.Fatalf("balance after replay %d, want 9500", got)
	}
	if n := testutilCount(e.m.ReplayedEntries); n < 4 {
		t.Fatalf("replayed %v journal entries, want the market requests among them", n)
	}
	if raw, _ := send(payReq); !bytes.Equal(raw, rawPay) {
		t.Fatal("stored qr_pay reply differs after replay")
	}
	if _, rep = send(terminals.Request{Type: terminals.TypeQRPay, Txn: 5, Amt: 10, PayCode: code}); rep.Code != terminals.CodePayCodeReused {
		t.Fatalf("reused code after replay: %s", rep.Code)
	}
}
