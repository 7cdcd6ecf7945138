package mochistop

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
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
