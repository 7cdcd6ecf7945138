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
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// TestDenyListPushToOfflineReader: a card's offline upload leaves debt, the
// card goes on the deny list while its bus reader is offline; the reader
// connects later, gets the signed retained delta, reports the version, and
// the lagging list empties; a top-up pays the debt and the next delta
// takes the card off. Through the machine's Mosquitto, under a unique
// topic root. (The upload enters through the engine's operator path here:
// the reader's offline_upload message is not on the wire yet.)
func TestDenyListPushToOfflineReader(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	startGateway(t, h)
	defer h.stop()
	const tid, card = "BUS-DENY-1", "county:DEBT1"
	if err := h.eng.RegisterTerminal(registry.Terminal{TID: tid, Kind: "bus", Merchant: "BUSCO", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	h.open(t, card, 0, 100)
	fullTopic, deltaTopic := engine.DenyTopicFull(h.topics), engine.DenyTopicDelta(h.topics)
	t.Cleanup(func() { clearRetained(t, fullTopic); clearRetained(t, deltaTopic) })

	ctx := context.Background()
	at := time.Now().Add(-time.Hour)
	up := core.Input{Op: core.OpTapUpload, Account: card, TID: tid, Txn: 1, Merchant: "BUSCO", Taps: []transit.Tap{
		{Kind: transit.TapIn, Route: "B1", At: at, Reader: tid, Seq: 1},
		{Kind: transit.TapIn, Route: "B1", At: at.Add(20 * time.Minute), Reader: tid, Seq: 2},
	}}
	if r, err := h.eng.Operate(ctx, up); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("upload: %v %v", r.Code, err)
	}
	if !h.eng.DenyListed(card) || h.eng.DenyVersion() != 1 {
		t.Fatalf("after the upload: listed %t version %d", h.eng.DenyListed(card), h.eng.DenyVersion())
	}
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
	hb := terminals.Request{Type: terminals.TypeHeartbeat}
	hb.Cfg.Add(engine.DenyCfgName, m.Version)
	_, rep := tm.Do(t, tm.Request(hb))
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
	if _, list, total := h.eng.DenyLagging(); total != 1 || list[0].Reported != 1 {
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
