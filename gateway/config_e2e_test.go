package gateway_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// TestConfigPushToOfflineTerminal: a bus reader is registered but not
// connected when the operator changes the transit config. It connects
// later, gets the retained document as soon as it subscribes, verifies the
// MAC under the config-signing key, reports the version in a heartbeat, and
// the operator's lagging list empties. Through the machine's Mosquitto.
func TestConfigPushToOfflineTerminal(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	startGateway(t, h)
	defer h.stop()
	const tid = "BUS-CFG-1"
	if err := h.eng.RegisterTerminal(registry.Terminal{TID: tid, Kind: "bus", Merchant: "BUSCO", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.PutConfig("transit", []byte(e2eTransitDoc(t, 200))); err != nil {
		t.Fatal(err)
	}
	d, err := h.eng.PutConfig("transit", []byte(e2eTransitDoc(t, 250)))
	if err != nil || d.Version != 2 {
		t.Fatalf("put: %+v %v", d, err)
	}
	groupTopic := h.topics.GroupConfig("bus")
	t.Cleanup(func() { clearRetained(t, groupTopic) })
	if cur, list, total := h.eng.ConfigLagging("transit"); cur != 2 || total != 1 || list[0].TID != tid || list[0].Reported != 0 {
		t.Fatalf("lagging before the terminal connects: v%d %d %+v", cur, total, list)
	}

	// The terminal connects now and subscribes to its group's config topic.
	tm := testkit.Connect(t, testkit.MQTTURL(), h.topics, tid, terminals.DeriveKey(h.master, tid, 1))
	got := make(chan []byte, 4)
	tok := tm.Client.Subscribe(groupTopic, 1, func(_ paho.Client, m paho.Message) {
		if m.Retained() {
			got <- append([]byte(nil), m.Payload()...)
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	var raw []byte
	select {
	case raw = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no retained config on subscribe")
	}
	env, err := confstore.Open(confstore.SigningKey(h.master, confstore.SigningKeyVersion), raw)
	if err != nil || env.Name != "transit" || env.Version != 2 || string(env.Doc) != e2eTransitDoc(t, 250) {
		t.Fatalf("retained config: %+v %v", env, err)
	}
	if _, err := terminals.Open(terminals.DeriveKey(h.master, tid, 1), raw); err == nil {
		t.Fatal("config verified under the terminal's own key; it must need the config key")
	}

	// It reports what it applied; the lagging list empties.
	hb := terminals.Request{Type: terminals.TypeHeartbeat}
	hb.Cfg.Add("transit", env.Version)
	_, rep := tm.Do(t, tm.Request(hb))
	wantCode(t, rep, terminals.CodeApproved)
	if _, list, total := h.eng.ConfigLagging("transit"); total != 0 {
		t.Fatalf("still lagging after the report: %+v", list)
	}
	// A newer version makes it lag again until the next report.
	if _, err := h.eng.PutConfig("transit", []byte(e2eTransitDoc(t, 300))); err != nil {
		t.Fatal(err)
	}
	if _, list, total := h.eng.ConfigLagging("transit"); total != 1 || list[0].Reported != 2 {
		t.Fatalf("after v3: %d %+v", total, list)
	}
}

// clearRetained removes a test's retained message from the shared broker.
func clearRetained(t *testing.T, topic string) {
	o := paho.NewClientOptions().AddBroker(testkit.MQTTURL()).SetClientID("clr-" + testkit.RandHex(4))
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Logf("clear retained %s: %v", topic, tok.Error())
		return
	}
	c.Publish(topic, 1, true, []byte{}).WaitTimeout(5 * time.Second)
	c.Disconnect(100)
}

// e2eTransitDoc is the default fare table with route B1's flat fare set.
func e2eTransitDoc(t *testing.T, b1Fare int64) string {
	t.Helper()
	c := core.DefaultTransit().Config()
	c.Routes[0].Fare = b1Fare
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
