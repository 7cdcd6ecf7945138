// Package testkit owns helpers shared by the gateway's tests: broker
// addresses of the machine's services, unique topic roots, and a minimal
// MQTT terminal that sends raw payloads and collects raw replies. It is
// imported only from _test files.
package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"scenepay/terminals"
)

// MQTTURL is the broker the tests use: the machine's Mosquitto unless
// SCENEPAY_TEST_MQTT says otherwise.
func MQTTURL() string {
	if v := os.Getenv("SCENEPAY_TEST_MQTT"); v != "" {
		return v
	}
	return "tcp://127.0.0.1:1883"
}

// RandHex returns n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Topics returns a topic scheme unique to this test run, so that parallel
// test processes on one broker never hear each other.
func Topics() terminals.Topics {
	r := RandHex(4)
	return terminals.Topics{Root: "test-" + r + "/scp/v1", Group: "gw-" + r}
}

// Terminal is a raw MQTT terminal for tests.
type Terminal struct {
	TID     string
	Key     []byte
	Topics  terminals.Topics
	Client  paho.Client
	Replies chan []byte
	signer  *terminals.Signer
	mu      sync.Mutex
}

// Connect connects a terminal client to url and subscribes to its replies.
func Connect(t testing.TB, url string, topics terminals.Topics, tid string, key []byte) *Terminal {
	t.Helper()
	tm := &Terminal{TID: tid, Key: key, Topics: topics, Replies: make(chan []byte, 1024), signer: terminals.NewSigner(key)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(tid + "-" + RandHex(3)).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetMaxReconnectInterval(time.Second).SetOrderMatters(true)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(topics.Reply(tid), 1, func(_ paho.Client, m paho.Message) {
			select {
			case tm.Replies <- append([]byte(nil), m.Payload()...):
			default:
			}
		}).WaitTimeout(5 * time.Second)
	})
	tm.Client = paho.NewClient(o)
	if tok := tm.Client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("terminal %s: connect %s: %v", tid, url, tok.Error())
	}
	t.Cleanup(func() { tm.Client.Disconnect(100) })
	// Wait until the subscription is in place.
	deadline := time.Now().Add(5 * time.Second)
	for !tm.Client.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return tm
}

// Seal frames body under the terminal key.
func (tm *Terminal) Seal(body []byte) []byte {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.signer.Seal(nil, body)
}

// Request builds a sealed request.
func (tm *Terminal) Request(r terminals.Request) []byte {
	r.V = terminals.Version
	r.TID = tm.TID
	if r.TS == 0 {
		r.TS = time.Now().UnixMilli()
	}
	return tm.Seal(r.AppendJSON(nil))
}

// Send publishes a raw payload on the terminal's request topic.
func (tm *Terminal) Send(t testing.TB, payload []byte) {
	t.Helper()
	tok := tm.Client.Publish(tm.Topics.Request(tm.TID), 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// Next waits for the next reply.
func (tm *Terminal) Next(t testing.TB, d time.Duration) []byte {
	t.Helper()
	select {
	case b := <-tm.Replies:
		return b
	case <-time.After(d):
		t.Fatalf("terminal %s: no reply within %s", tm.TID, d)
		return nil
	}
}

// Do sends payload and returns the next reply, raw and decoded (MAC checked).
func (tm *Terminal) Do(t testing.TB, payload []byte) ([]byte, *terminals.Reply) {
	t.Helper()
	tm.Send(t, payload)
	raw := tm.Next(t, 10*time.Second)
	return raw, tm.Decode(t, raw)
}

// Decode verifies and decodes a reply.
func (tm *Terminal) Decode(t testing.TB, raw []byte) *terminals.Reply {
	t.Helper()
	tm.mu.Lock()
	body, err := tm.signer.Open(raw)
	tm.mu.Unlock()
	if err != nil {
		t.Fatalf("reply MAC: %v (%q)", err, raw)
	}
	rep, err := terminals.DecodeReply(body)
	if err != nil {
		t.Fatalf("reply decode: %v", err)
	}
	return rep
}

// ExpectSilence fails if a reply arrives within d.
func (tm *Terminal) ExpectSilence(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case b := <-tm.Replies:
		t.Fatalf("unexpected reply %q", b)
	case <-time.After(d):
	}
}
