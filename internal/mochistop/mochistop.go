// Package mochistop owns the one safe way this project stops an embedded
// mochi-mqtt broker (the gateway's single-process default and the
// emulator's gateway stand-in).
//
// mochi-mqtt v2.7.9's Server.Close disconnects each listener's clients
// through Clients.GetByListener, which takes the clients' read lock and,
// holding it, takes it again (Clients.Len). A client attaching or leaving
// at that moment queues for the write lock between the two, and Go's
// RWMutex then blocks the second read lock behind the writer, which waits
// for the first: Close never returns (seen as a 20-minute hang of a test
// whose client disconnected while the stand-in closed). Close here first
// closes every listener with a closer that reads the clients once
// (Clients.GetAll), so that Server.Close finds its listeners already
// closed and never calls its own closer (a TCP listener calls the closer
// only on its first Close).
package mochistop

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Close stops srv: its listeners, its clients, its hooks.
func Close(srv *mqtt.Server) error {
	srv.Listeners.CloseAll(func(listener string) {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Listener == listener && !cl.Closed() {
				_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
	return srv.Close()
}
