// Package mochistop owns the one safe way this project stops an embedded
// mochi-mqtt broker (the gateway's single-process default, the emulator's
// gateway stand-in and the device tests' broker), and the one safe way a
// client reconnects to it under the id it just left with.
//
// mochi-mqtt v2.7.9's Server.Close has two faults when a client comes or
// goes during it:
//
//   - It disconnects each listener's clients through Clients.GetByListener,
//     which takes the clients' read lock and, holding it, takes it again
//     (Clients.Len). A client attaching or leaving at that moment queues for
//     the write lock between the two, and Go's RWMutex then blocks the
//     second read lock behind the writer, which waits for the first: Close
//     never returns (seen as a 20-minute hang of a test whose client
//     disconnected while the stand-in closed, and as an 8-minute hang of the
//     device tests).
//   - It waits for the clients (Listeners.ClientsWg.Wait) while a
//     connection accepted just before the listener closed may still be on
//     its way to ClientsWg.Add: a WaitGroup reused during Wait (the race
//     detector's report in the device tests).
//
// So listeners are added through AddListener, which puts a gate in front
// of each connection, and Close shuts the gate first: it refuses new
// connections, closes the ones inside, and waits until every connection
// that passed the gate has left mochi's handler (its Add and Done both
// done). Only then does it close the listeners with a closer that reads the
// clients once (Clients.GetAll), so that Server.Close finds its listeners
// already closed and never calls its own closer (a TCP listener calls the
// closer only on its first Close), and its Wait finds nothing to wait for.
//
// A third fault is not about Close. When a clean-session client leaves,
// mochi's handler of that connection unsubscribes and forgets the client
// by its id (Topics.Unsubscribe, Clients.Delete) after the connection has
// closed. A terminal that reconnects at once under the same id (a reboot,
// a reconnect after DISCONNECT) can be admitted in between: the old
// handler then deletes the new client from the server's clients, and every
// message for its subscriptions is dropped (seen as a reply never
// delivered after a device "reboot" in the device tests). AddListener also
// adds a hook that holds a CONNECT back, for at most reconnectWaitMax,
// while a closed connection's client still holds the same id. A client
// whose old connection is still open takes it over as mochi does; that
// path has a window of the same kind, between mochi closing the old
// connection and marking it taken over (a few instructions), which this
// hook does not cover.
package mochistop

import (
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// gates holds the gate of each server with a listener added here.
var gates sync.Map // *mqtt.Server -> *gate

// gate counts the connections inside mochi's handler and can be shut.
type gate struct {
	mu     sync.Mutex
	shut   bool
	inside map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// enter admits c unless the gate is shut.
func (g *gate) enter(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	g.inside[c] = struct{}{}
	g.wg.Add(1)
	return true
}

func (g *gate) leave(c net.Conn) {
	g.mu.Lock()
	delete(g.inside, c)
	g.mu.Unlock()
	g.wg.Done()
}

// shutAndDrain refuses new connections, closes those inside and waits
// until they have left the handler.
func (g *gate) shutAndDrain() {
	g.mu.Lock()
	g.shut = true
	for c := range g.inside {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// gated is a listener whose connections pass a gate.
type gated struct {
	listeners.Listener
	g *gate
}

func (l *gated) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		if !l.g.enter(c) {
			return c.Close()
		}
		defer l.g.leave(c)
		return establish(id, c)
	})
}

// AddListener adds l to srv behind srv's gate, and (once per server) the
// hook that lets a reconnecting client wait for its old connection's
// clean-up (see the package comment).
func AddListener(srv *mqtt.Server, l listeners.Listener) error {
	v, loaded := gates.LoadOrStore(srv, &gate{inside: map[net.Conn]struct{}{}})
	if !loaded {
		if err := srv.AddHook(&reconnectHook{srv: srv}, nil); err != nil {
			gates.Delete(srv)
			return err
		}
	}
	return srv.AddListener(&gated{Listener: l, g: v.(*gate)})
}

// reconnectWaitMax bounds how long a CONNECT waits for the clean-up of the
// closed connection that last used its client id. The clean-up is a few
// map and tree deletions; past the bound the client is admitted anyway.
const reconnectWaitMax = 2 * time.Second

// reconnectHook holds a CONNECT back while the client id's previous
// connection is closed but not yet forgotten by the server.
type reconnectHook struct {
	mqtt.HookBase
	srv *mqtt.Server
}

func (h *reconnectHook) ID() string { return "mochistop-reconnect" }

func (h *reconnectHook) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

// OnSessionEstablish runs after authentication, just before mochi looks
// for an existing session of the id.
func (h *reconnectHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	deadline := time.Now().Add(reconnectWaitMax)
	for {
		old, ok := h.srv.Clients.Get(cl.ID)
		if !ok || old == cl || !old.Closed() || !expires(old) || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// expires reports whether mochi forgets cl when its connection ends (the
// condition of its handler's clean-up): a clean session. A persistent
// session's client stays known while closed, and its reconnect takes the
// session over at once.
func expires(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// Close stops srv: its listeners, its clients, its hooks.
func Close(srv *mqtt.Server) error {
	// Clients that completed CONNECT get mochi's disconnect first; the gate
	// then closes whatever connection is left.
	disconnectAll(srv)
	if v, ok := gates.LoadAndDelete(srv); ok {
		v.(*gate).shutAndDrain()
	}
	// The closer replaces mochi's own (see the package comment); with the
	// gate drained it finds no client, but a listener added without
	// AddListener may still have some.
	srv.Listeners.CloseAll(func(string) { disconnectAll(srv) })
	return srv.Close()
}

// disconnectAll disconnects every client of srv, reading the clients once.
func disconnectAll(srv *mqtt.Server) {
	for _, cl := range srv.Clients.GetAll() {
		if !cl.Closed() {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
