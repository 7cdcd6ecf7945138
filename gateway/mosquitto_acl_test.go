package gateway_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// startMosquitto runs a private Mosquitto from ../deploy/mosquitto/mosquitto.conf
// (see startDeployMosquitto) and returns its loopback listener and the
// gateway user's password.
func startMosquitto(t *testing.T) (url, gwPassword string) {
	t.Helper()
	b := startDeployMosquitto(t)
	return b.URL, b.GWPassword
}

func connect(t *testing.T, url, id, user, pass string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).SetAutoReconnect(false)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func collect(t *testing.T, c paho.Client, filter string) chan string {
	t.Helper()
	ch := make(chan string, 16)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { ch <- m.Topic() + " " + string(m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return ch
}

func publish(c paho.Client, topic, payload string) {
	c.Publish(topic, 1, false, payload).WaitTimeout(2 * time.Second)
}

func expect(t *testing.T, ch chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("did not receive %q", want)
	}
}

func expectNone(t *testing.T, ch chan string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("ACL let through %q", got)
	case <-time.After(500 * time.Millisecond):
	}
}

// Promise 6: the broker config confines each terminal to its own topics.
func TestMosquittoACLConfinesTerminals(t *testing.T) {
	url, pw := startMosquitto(t)
	gw := connect(t, url, "scenepay-gw1-0", "scenepay-gateway", pw)
	reqs := collect(t, gw, "$share/scp-gateway/scp/v1/t/+/req")

	bus1 := connect(t, url, "BUS-1", "", "")
	bus2 := connect(t, url, "BUS-2", "", "")
	resp1 := collect(t, bus1, "scp/v1/t/BUS-1/resp")
	spy := collect(t, bus1, "scp/v1/t/BUS-2/resp") // not allowed: must receive nothing
	wild := collect(t, bus2, "scp/v1/t/+/resp")    // not allowed either

	publish(bus1, "scp/v1/t/BUS-1/req", "own")
	expect(t, reqs, "scp/v1/t/BUS-1/req own")
	publish(bus1, "scp/v1/t/BUS-2/req", "forged")
	expectNone(t, reqs)

	publish(gw, "scp/v1/t/BUS-1/resp", "r1")
	expect(t, resp1, "scp/v1/t/BUS-1/resp r1")
	publish(gw, "scp/v1/t/BUS-2/resp", "r2")
	expectNone(t, spy)
	// BUS-2's wildcard subscription delivers only what BUS-2 may read: its
	// own reply (r2), never BUS-1's (r1, published first).
	expect(t, wild, "scp/v1/t/BUS-2/resp r2")
	expectNone(t, wild)

	// A terminal cannot publish replies, even to itself.
	publish(bus1, "scp/v1/t/BUS-1/resp", "fake")
	expectNone(t, resp1)

	// The gateway user needs its password.
	o := paho.NewClientOptions().AddBroker(url).SetClientID("intruder").SetUsername("scenepay-gateway").SetPassword("wrong")
	c := paho.NewClient(o)
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("gateway user connected with a wrong password")
	}
}
