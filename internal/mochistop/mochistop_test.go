package mochistop

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"scenepay/internal/mqttwire"
)

// Close returns, and the listener stops accepting, while connected clients
// leave during it: each leaving client's Clients.Delete queues for the
// write lock, the case that can hang mochi's own Server.Close (its closer
// takes the read lock twice). The hang needs a writer to arrive between
// those two read locks, a window too narrow to hit on demand: this test
// runs the path 20 times; it does not prove the window closed (the
// argument for that is in the package comment).
func TestCloseWhileClientsLeave(t *testing.T) {
	for round := range 20 {
		srv, addr := serve(t)
		var conns []net.Conn
		for i := range 64 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(mqttwire.AppendConnect(nil, fmt.Sprintf("c%d-%d", round, i), "", "", 0))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil { // CONNACK: attached
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
		closeWithin(t, srv, fmt.Sprintf("round %d, while clients left", round))
		wg.Wait()
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatal("the listener still accepts after Close")
		}
	}
}

// closeWithin calls Close and fails the test if it errs or takes 30 s.
func closeWithin(t *testing.T, srv *mqtt.Server, when string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Close(srv) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: Close did not return", when)
	}
}

// serve starts a broker that lets everyone in, on a free port, with its
// listener added through AddListener.
func serve(t *testing.T) (*mqtt.Server, string) {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := AddListener(srv, listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	return srv, addr
}

// allowAll lets every client in and everything through.
type allowAll struct{ mqtt.HookBase }

func (allowAll) ID() string { return "allow-all" }

func (allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// Close returns, with no data race, while clients keep connecting: a
// connection accepted as the listener closes must not reach mochi's
// ClientsWg.Add while Close waits on it (the race detector reported that
// in the device tests), and a connection that never sends CONNECT does not
// hold Close up. The window is narrow: this runs it 20 times under the race
// detector of make test.
func TestCloseWhileClientsArrive(t *testing.T) {
	for round := range 20 {
		srv, addr := serve(t)
		silent, err := net.DialTimeout("tcp", addr, 5*time.Second) // never sends CONNECT
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						continue // closed: keep trying until told to stop
					}
					c.Write(mqttwire.AppendConnect(nil, fmt.Sprintf("a%d-%d-%d", round, w, i), "", "", 0))
					c.Close()
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
		closeWithin(t, srv, fmt.Sprintf("round %d, while clients arrived", round))
		close(stop)
		wg.Wait()
		silent.Close()
	}
}

// A client that reconnects under the id it just left with keeps its new
// subscriptions. mochi forgets a leaving clean-session client by id after
// its connection closed; a hook here holds that clean-up up (the window
// is otherwise too narrow to hit on demand) while the same id connects
// again and subscribes. Without the reconnect hook the old connection's
// clean-up deletes the new client, and the publication below is dropped.
func TestReconnectUnderSameIDKeepsSubscriptions(t *testing.T) {
	srv, addr := serve(t)
	t.Cleanup(func() { closeWithin(t, srv, "at the end") })
	slow := &slowForget{id: "BUS-1", entered: make(chan struct{}), left: make(chan struct{})}
	if err := srv.AddHook(slow, nil); err != nil {
		t.Fatal(err)
	}
	const topic = "t/BUS-1/resp"

	old := dialConnected(t, addr, "BUS-1")
	subscribe(t, old, topic)
	old.c.Write(mqttwire.AppendDisconnect(nil))
	old.c.Close()
	select {
	case <-slow.entered: // the old connection's clean-up is under way
	case <-time.After(5 * time.Second):
		t.Fatal("the old connection's clean-up never started")
	}

	again := dialConnected(t, addr, "BUS-1") // while the old one is being forgotten
	subscribe(t, again, topic)
	<-slow.left                       // the old clean-up goes on to forget "BUS-1"
	time.Sleep(50 * time.Millisecond) // and has done so
	pub := dialConnected(t, addr, "gw")
	pub.c.Write(append(mqttwire.AppendPublishHeader(nil, topic, 1, false, 5), "hello"...))
	for {
		p := again.next(t)
		if p.Type == mqttwire.TypePublish && string(p.Payload) == "hello" {
			return
		}
	}
}

// slowForget sleeps in the unsubscribe of client id's first clean-up,
// between mochi's removal of its subscriptions and of the client itself.
type slowForget struct {
	mqtt.HookBase
	id      string
	entered chan struct{} // closed as the sleep starts
	left    chan struct{} // closed as it ends
	done    atomic.Bool   // not a sync.Once: a second caller must not wait for the first
}

func (*slowForget) ID() string { return "slow-forget" }

func (*slowForget) Provides(b byte) bool { return b == mqtt.OnUnsubscribed }

func (h *slowForget) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if cl.ID != h.id {
		return
	}
	if h.done.CompareAndSwap(false, true) {
		close(h.entered)
		time.Sleep(300 * time.Millisecond)
		close(h.left)
	}
}

// wireClient is a raw MQTT 3.1.1 client for these tests.
type wireClient struct {
	c   net.Conn
	buf []byte
}

// dialConnected connects as id and waits for the CONNACK.
func dialConnected(t *testing.T, addr, id string) *wireClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := &wireClient{c: c}
	c.Write(mqttwire.AppendConnect(nil, id, "", "", 0))
	if p := w.next(t); p.Type != mqttwire.TypeConnack || p.Code != 0 {
		t.Fatalf("%s: CONNACK expected, got type %d code %d", id, p.Type, p.Code)
	}
	return w
}

// subscribe subscribes to filter and waits for the SUBACK.
func subscribe(t *testing.T, w *wireClient, filter string) {
	t.Helper()
	w.c.Write(mqttwire.AppendSubscribe(nil, 7, filter))
	if p := w.next(t); p.Type != mqttwire.TypeSuback {
		t.Fatalf("SUBACK expected, got type %d", p.Type)
	}
}

// next reads the next packet, failing the test after 3 s without one.
func (w *wireClient) next(t *testing.T) mqttwire.Packet {
	t.Helper()
	w.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	tmp := make([]byte, 4096)
	for {
		if p, n, err := mqttwire.Parse(w.buf); err != nil {
			t.Fatal(err)
		} else if n > 0 {
			p.Topic, p.Payload = append([]byte(nil), p.Topic...), append([]byte(nil), p.Payload...)
			w.buf = w.buf[n:]
			return p
		}
		k, err := w.c.Read(tmp)
		if err != nil {
			t.Fatalf("no packet within 3 s: %v", err)
		}
		w.buf = append(w.buf, tmp[:k]...)
	}
}

// A persistent session stays known while its connection is closed: its
// reconnect is not held back (the reconnect hook waits only for a clean
// session's clean-up, which a persistent one never gets).
func TestReconnectOfPersistentSessionIsNotHeld(t *testing.T) {
	srv, addr := serve(t)
	t.Cleanup(func() { closeWithin(t, srv, "at the end") })
	connect := func() time.Duration {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pk := mqttwire.AppendConnect(nil, "KIOSK-1", "", "", 0)
		pk[9] &^= 0x02 // the connect flags: not a clean session
		start := time.Now()
		c.Write(pk)
		w := &wireClient{c: c}
		if p := w.next(t); p.Type != mqttwire.TypeConnack || p.Code != 0 {
			t.Fatalf("CONNACK expected, got type %d code %d", p.Type, p.Code)
		}
		took := time.Since(start)
		c.Write(mqttwire.AppendDisconnect(nil))
		return took
	}
	connect()
	deadline := time.Now().Add(5 * time.Second)
	for { // the first connection's handler has finished with it
		if old, ok := srv.Clients.Get("KIOSK-1"); ok && old.Closed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the persistent session's first connection never closed")
		}
		time.Sleep(time.Millisecond)
	}
	if took := connect(); took >= reconnectWaitMax {
		t.Fatalf("the persistent session's reconnect was held %v", took)
	}
}
