package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// TestDenyListPushToOfflineReader: a reader uploads a card's offline taps
// (offline_upload; sent twice, the second gets the stored reply), the
// card goes into debt and on the deny list while a second reader is
// offline; that reader connects later, gets the signed retained delta,
// reports the version, and the lagging list empties; a top-up pays the
// debt and the next delta takes the card off. Through the machine's
// Mosquitto, under a unique topic root.
func TestDenyListPushToOfflineReader(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	startGateway(t, h)
	defer h.stop()
	const up, tid, card = "BUS-UP-1", "BUS-DENY-1", "county:DEBT1"
	for _, id := range []string{up, tid} {
		if err := h.eng.RegisterTerminal(registry.Terminal{TID: id, Kind: "bus", Merchant: "BUSCO", KeyVersion: 1}); err != nil {
			t.Fatal(err)
		}
	}
	h.open(t, card, 0, 100)
	fullTopic, deltaTopic := engine.DenyTopicFull(h.topics), engine.DenyTopicDelta(h.topics)
	t.Cleanup(func() { clearRetained(t, fullTopic); clearRetained(t, deltaTopic) })

	ctx := context.Background()
	at := time.Now().Add(-time.Hour).UnixMilli()
	ur := testkit.Connect(t, testkit.MQTTURL(), h.topics, up, terminals.DeriveKey(h.master, up, 1))
	req := terminals.Request{Type: terminals.TypeOfflineUpload, Txn: 1, Inst: county("DEBT1")}
	// Sent out of order: the gateway applies them by time. 100 fen cover
	// neither fare of 200: both become debt.
	req.Taps.Add(terminals.UploadTap{Seq: 8, Route: "B1", TS: at + 20*60_000})
	req.Taps.Add(terminals.UploadTap{Seq: 7, Route: "B1", TS: at})
	payload := ur.Request(req)
	raw1, rep1 := ur.Do(t, payload)
	wantCode(t, rep1, terminals.CodeApproved)
	if rep1.Out != "dd" || rep1.Amt == nil || *rep1.Amt != 0 {
		t.Fatalf("upload reply: out %q amt %v", rep1.Out, rep1.Amt)
	}
	raw2, _ := ur.Do(t, payload) // the reader did not see the reply: same bytes again
	if !bytes.Equal(raw1, raw2) {
		t.Fatal("a repeated upload did not get the stored reply")
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.eng.DenyVersion() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the listing follows the durable upload
	}
	if !h.eng.DenyListed(card) || h.eng.DenyVersion() != 1 {
		t.Fatalf("after the upload: listed %t version %d", h.eng.DenyListed(card), h.eng.DenyVersion())
	}
	hb := terminals.Request{Type: terminals.TypeHeartbeat}
	hb.Cfg.Add(engine.DenyCfgName, 1)
	_, rep := ur.Do(t, ur.Request(hb))
	wantCode(t, rep, terminals.CodeApproved)
	if _, list, total := h.eng.DenyLagging(); total != 1 || list[0].TID != tid {
		t.Fatalf("lagging before the reader connects: %d %+v", total, list)
	}

	// The reader connects now and subscribes to its group's deny topics.
	tm := testkit.Connect(t, testkit.MQTTURL(), h.topics, tid, terminals.DeriveKey(h.master, tid, 1))
	got := make(chan []byte, 8)
	tok := tm.Client.Subscribe(deltaTopic, 1, func(_ paho.Client, m paho.Message) {
		got <- append([]byte(nil), m.Payload()...)
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	key := confstore.SigningKey(h.master, confstore.SigningKeyVersion)
	m := nextDeny(t, got, key)
	if m.Kind != "delta" || m.From != 0 || m.Version != 1 || !slices.Equal(m.Add, []string{card}) {
		t.Fatalf("retained delta: %+v", m)
	}
	hb = terminals.Request{Type: terminals.TypeHeartbeat}
	hb.Cfg.Add(engine.DenyCfgName, m.Version)
	_, rep = tm.Do(t, tm.Request(hb))
	wantCode(t, rep, terminals.CodeApproved)
	if _, list, total := h.eng.DenyLagging(); total != 0 {
		t.Fatalf("still lagging after the report: %+v", list)
	}

	// A top-up pays the debt first (400 fen of the two uncovered fares),
	// and the card comes off in the next delta.
	r, err := h.eng.Operate(ctx, core.Input{Op: core.OpTopUp, Account: card, Amount: 1000, Ref: "counter-1"})
	if err != nil || r.Code != terminals.CodeApproved || r.Account.Balance != 700 {
		t.Fatalf("top-up: %v %+v %v", r.Code, r.Account, err)
	}
	m = nextDeny(t, got, key)
	if m.Version != 2 || !slices.Equal(m.Remove, []string{card}) || len(m.Add) != 0 {
		t.Fatalf("delta after the top-up: %+v", m)
	}
	if h.eng.DenyListed(card) {
		t.Fatal("card still listed after its debt was paid")
	}
	if _, list, total := h.eng.DenyLagging(); total != 2 || list[0].Reported != 1 || list[1].Reported != 1 {
		t.Fatalf("after v2: %d %+v", total, list)
	}
}

func nextDeny(t *testing.T, got <-chan []byte, key []byte) engine.DenyMessage {
	t.Helper()
	select {
	case raw := <-got:
		body, err := terminals.Open(key, raw)
		if err != nil {
			t.Fatalf("deny message MAC: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var m engine.DenyMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no deny-list message")
		return engine.DenyMessage{}
	}
}
