package ingress_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/ingress"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// TestRetainedAfterBrokerRestart: a private Mosquitto without persistence
// loses every retained message when it restarts. The gateway publishes
// the current signed config document and deny list again once its
// connections are back, so a terminal subscribing after the restart gets
// the current versions (not version 0 until the gateway restarts), also
// of changes made while the broker was down; a change after the reconnect
// is what stays retained.
func TestRetainedAfterBrokerRestart(t *testing.T) {
	m := testkit.StartMosquitto(t, "allow_anonymous true\npersistence false\n")
	topics := testkit.Topics()
	master := []byte(testkit.RandHex(32))
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Topics = topics
	cfg.Shards = 2
	cfg.Metrics = engine.NewMetrics(prometheus.NewRegistry())
	eng, err := engine.Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	in, err := ingress.Start(ingress.Config{BrokerURL: m.URL(), ClientID: "gw-" + testkit.RandHex(4), Conns: 2, Topics: topics}, eng.HandleMessage)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	eng.SetPublisher(in)

	key := confstore.SigningKey(master, confstore.SigningKeyVersion)
	cfgTopic, fullTopic, deltaTopic := topics.GroupConfig("bus"), engine.DenyTopicFull(topics), engine.DenyTopicDelta(topics)
	for i, c := range []string{"county:DENY-1", "county:DENY-2"} {
		if _, err := eng.DenyAdd(c); err != nil {
			t.Fatal(err)
		}
		if _, err := eng.PutConfig("transit", transitDoc(t, 200+int64(i)*50)); err != nil {
			t.Fatal(err)
		}
	}
	want := state{cfg: 2, fare: 250, deny: 2, cards: []string{"county:DENY-1", "county:DENY-2"}}
	waitRetained(t, m.URL(), key, cfgTopic, fullTopic, deltaTopic, want, "before the restart")

	// The broker keeps nothing over a restart: a retained probe of our own
	// is gone afterwards.
	probe := topics.Root + "/probe"
	pub := connect(t, m.URL())
	if tok := pub.Publish(probe, 1, true, []byte("x")); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("probe: %v", tok.Error())
	}
	pub.Disconnect(100)
	m.Stop()
	// Changes while the broker is down are durable; their publication
	// fails, and the reconnect publishes them.
	if _, err := eng.DenyAdd("county:DENY-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.PutConfig("transit", transitDoc(t, 275)); err != nil {
		t.Fatal(err)
	}
	m.Start()
	if got := retained(t, m.URL(), probe); got != nil {
		t.Fatalf("the broker kept a retained message over its restart (%q): the test proves nothing", got)
	}
	want = state{cfg: 3, fare: 275, deny: 3, cards: []string{"county:DENY-1", "county:DENY-2", "county:DENY-3"}}
	waitRetained(t, m.URL(), key, cfgTopic, fullTopic, deltaTopic, want, "after the restart")

	// After the reconnect a change is published as usual and is what stays.
	if _, err := eng.DenyRemove("county:DENY-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.PutConfig("transit", transitDoc(t, 300)); err != nil {
		t.Fatal(err)
	}
	want = state{cfg: 4, fare: 300, deny: 4, cards: []string{"county:DENY-2", "county:DENY-3"}}
	waitRetained(t, m.URL(), key, cfgTopic, fullTopic, deltaTopic, want, "after a change")
}

// state is what a terminal subscribing now holds after reading the
// retained messages: the config version and its route B1 fare, and the
// deny list it builds by the reader's rule of docs/protocol.md section 16
// (holding no list: the full list, then the delta from it).
type state struct {
	cfg   uint64
	fare  int64
	deny  uint64
	cards []string
}

func readState(t *testing.T, url string, key []byte, cfgTopic, fullTopic, deltaTopic string) (state, string) {
	t.Helper()
	var s state
	raw := retained(t, url, cfgTopic)
	if raw == nil {
		return s, "no retained config"
	}
	env, err := confstore.Open(key, raw)
	if err != nil {
		t.Fatalf("retained config: %v", err)
	}
	tc, err := transit.DecodeConfig(env.Doc)
	if err != nil {
		t.Fatalf("retained transit document: %v", err)
	}
	s.cfg, s.fare = env.Version, tc.Routes[0].Fare
	delta, ok := denyMessage(t, key, retained(t, url, deltaTopic))
	if !ok {
		return s, "no retained deny delta"
	}
	// The reader's rule (docs/protocol.md section 16), holding no list
	// (h = 0): a delta from 0 applies directly; a delta from F > 0 needs
	// the retained full list of version F first. (A gateway that started
	// with an empty list publishes its first change as a delta from 0: no
	// full list exists until the next start, reconnect or full cut.)
	var full engine.DenyMessage
	if delta.From > 0 {
		if full, ok = denyMessage(t, key, retained(t, url, fullTopic)); !ok {
			return s, "no retained full deny list"
		}
		if delta.From != full.Version {
			t.Fatalf("retained delta from %d, the retained full list is %d", delta.From, full.Version)
		}
	}
	list := map[string]bool{}
	for _, c := range full.Cards {
		list[c] = true
	}
	for _, c := range delta.Add {
		list[c] = true
	}
	for _, c := range delta.Remove {
		delete(list, c)
	}
	s.deny = delta.Version
	for c := range list {
		s.cards = append(s.cards, c)
	}
	slices.Sort(s.cards)
	return s, ""
}

func waitRetained(t *testing.T, url string, key []byte, cfgTopic, fullTopic, deltaTopic string, want state, when string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, missing := readState(t, url, key, cfgTopic, fullTopic, deltaTopic)
		if missing == "" && got.cfg == want.cfg && got.fare == want.fare && got.deny == want.deny && slices.Equal(got.cards, want.cards) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: a new subscriber reads %+v (%s), want %+v", when, got, missing, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func denyMessage(t *testing.T, key, raw []byte) (engine.DenyMessage, bool) {
	t.Helper()
	var m engine.DenyMessage
	if raw == nil {
		return m, false
	}
	body, err := terminals.Open(key, raw)
	if err != nil {
		t.Fatalf("deny message MAC: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m, true
}

func connect(t *testing.T, url string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("rd-" + testkit.RandHex(4)).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	return c
}

// retained subscribes a fresh client to topic, as a terminal that just
// connected, and returns the retained message (nil if none comes).
func retained(t *testing.T, url, topic string) []byte {
	t.Helper()
	c := connect(t, url)
	defer c.Disconnect(50)
	got := make(chan []byte, 1)
	tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		if m.Retained() && len(m.Payload()) > 0 {
			select {
			case got <- append([]byte(nil), m.Payload()...):
			default:
			}
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	select {
	case b := <-got:
		return b
	case <-time.After(300 * time.Millisecond): // the broker sends retained messages with the SUBACK
		return nil
	}
}

// transitDoc is the default fare table with route B1's flat fare set.
func transitDoc(t *testing.T, b1Fare int64) []byte {
	t.Helper()
	c := core.DefaultTransit().Config()
	c.Routes[0].Fare = b1Fare
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
