package broker

import (
	"errors"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func cfg(addr string) Config {
	return Config{Addr: addr, TopicRoot: "scp/v1", GatewayUser: "gw", GatewayPassword: "pw"}
}

// A taken port is a clear error at once, never a hang.
func TestTakenPortIsAClearError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	b, err := Start(cfg(l.Addr().String()))
	if err == nil {
		b.Close()
		t.Fatal("started on a taken port")
	}
	if !errors.Is(err, ErrAddrInUse) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
	}
	t.Logf("%v", err)
}

func client(t *testing.T, url, id, user, pass string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// The embedded broker confines terminals the way the production ACL does.
func TestEmbeddedACL(t *testing.T) {
	b, err := Start(cfg(freeAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	gw := client(t, b.URL(), "gw-0", "gw", "pw")
	got := make(chan string, 8)
	gw.Subscribe("$share/g/scp/v1/t/+/req", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).WaitTimeout(5 * time.Second)
	bus1 := client(t, b.URL(), "BUS-1", "", "")
	bus1.Publish("scp/v1/t/BUS-1/req", 1, false, "own").WaitTimeout(2 * time.Second)
	bus1.Publish("scp/v1/t/BUS-2/req", 1, false, "forged").WaitTimeout(2 * time.Second)
	select {
	case tp := <-got:
		if tp != "scp/v1/t/BUS-1/req" {
			t.Fatalf("first delivery %s", tp)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("own request not delivered")
	}
	select {
	case tp := <-got:
		t.Fatalf("forged request delivered on %s", tp)
	case <-time.After(500 * time.Millisecond):
	}
	// Wrong gateway password is refused.
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("x").SetUsername("gw").SetPassword("bad"))
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("gateway user accepted with a wrong password")
	}
	for _, c := range []struct {
		topic string
		write bool
		want  bool
	}{
		{"scp/v1/t/BUS-1/req", true, true}, {"scp/v1/t/BUS-1/req", false, false},
		{"scp/v1/t/BUS-1/resp", false, true}, {"scp/v1/t/BUS-1/resp", true, false},
		{"scp/v1/t/BUS-2/resp", false, false}, {"scp/v1/g/buses/cfg", false, true},
		{"scp/v1/g/buses/cfg", true, false}, {"other/topic", false, false},
	} {
		h := &aclHook{cfg: cfg("")}
		if got := h.check("BUS-1", c.topic, c.write); got != c.want {
			t.Errorf("%s write=%v: %v, want %v", c.topic, c.write, got, c.want)
		}
	}
}
