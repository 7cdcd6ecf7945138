package device

import (
	"net"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"scenepay/terminals"
)

// mosquittoURL is the machine's real broker; the test skips when it is down.
const mosquittoURL = "tcp://127.0.0.1:1883"

func TestAgainstRealMosquitto(t *testing.T) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second)
	if err != nil {
		t.Skipf("no Mosquitto at 127.0.0.1:1883: %v", err)
	}
	c.Close()
	topics := uniqueRoot("t-")
	// A unique terminal id too: the client id is the terminal id, and a
	// persistent session with that id must not collide with other runs.
	tid := "T-" + topics.Root[2:14]
	// Registered first so that it runs after the device has closed.
	t.Cleanup(func() { cleanMosquitto(t, topics, tid) })
	startResponder(t, mosquittoURL, topics, approveAll)
	d := newDevice(t, mosquittoURL, topics, tid, nil)

	rep, raw, err := d.Do(ctx10(t), Purchase(county, 200))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Code != terminals.CodeApproved || rep.Txn != 1 || rep.TID != tid {
		t.Fatalf("reply = %+v", rep)
	}
	if _, err := terminals.Open(testKey(tid), raw); err != nil {
		t.Fatal(err)
	}

	// The retained status reads "online" for a late subscriber.
	got := make(chan string, 1)
	obs := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mosquittoURL).SetClientID(tid + "-obs").SetCleanSession(true))
	if tok := obs.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer obs.Disconnect(100)
	obs.Subscribe(topics.Status(tid), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	})
	select {
	case s := <-got:
		if s != "online" {
			t.Fatalf("status = %q, want online", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained status")
	}
}

// cleanMosquitto removes what the test left on the shared broker: the
// retained status and the persistent session of the terminal's client id.
func cleanMosquitto(t *testing.T, topics terminals.Topics, tid string) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mosquittoURL).SetClientID(tid).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Logf("cleanup connect: %v", tok.Error())
		return
	}
	c.Publish(topics.Status(tid), 1, true, []byte{}).WaitTimeout(2 * time.Second)
	c.Disconnect(100)
}
