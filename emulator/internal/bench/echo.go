package bench

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"scenepay/internal/mqttclient"
	"scenepay/terminals"
)

// Echo is the bare responder of the reference arm: it takes requests from
// the gateway's shared subscription and publishes each payload unchanged on
// the terminal's reply topic at QoS 1. It does no parsing, no MAC check, no
// ledger and no journal. It uses the gateway's own MQTT client
// (internal/mqttclient, the same connections, buffering and reader), so
// the two arms differ only by what the gateway does with a message: the
// ratio is the cost of the gateway's work, not of a different client.
type Echo struct {
	conns  []*mqttclient.Conn
	echoed atomic.Int64
}

// StartEcho connects conns clients as the gateway user (the ACL lets only
// that user read every request topic) and subscribes them to the shared
// request filter.
func StartEcho(ctx context.Context, url, user, password string, topics terminals.Topics, conns int) (*Echo, error) {
	e := &Echo{}
	filter := topics.SharedRequestFilter()
	for i := range conns {
		// The handler can run as soon as Start returns: it finds its
		// connection through self.
		var self atomic.Pointer[mqttclient.Conn]
		c, err := mqttclient.Start(mqttclient.Config{
			BrokerURL: url, ClientID: fmt.Sprintf("scenepay-echo-%d", i), Username: user, Password: password,
			Filters: []string{filter}, ConnectTimeout: connectTimeout, AckDelay: mqttclient.DefaultAckDelay, // as the gateway's default
			Handler: func(topic string, payload []byte) {
				// Topic {root}/t/{tid}/req -> {root}/t/{tid}/resp.
				if c := self.Load(); c != nil && c.Publish(strings.TrimSuffix(topic, "req")+"resp", payload, false, nil) == nil {
					e.echoed.Add(1)
				}
			},
		})
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("bench: echo: %w", err)
		}
		self.Store(c)
		e.conns = append(e.conns, c)
		select {
		case <-c.Ready():
		case <-ctx.Done():
			e.Close()
			return nil, ctx.Err()
		case <-time.After(connectTimeout):
			e.Close()
			return nil, fmt.Errorf("bench: echo connect and subscribe %s: %v", filter, c.Err())
		}
	}
	return e, nil
}

// Echoed is the number of payloads sent back.
func (e *Echo) Echoed() int64 { return e.echoed.Load() }

// Close disconnects the responder; its clean sessions end its subscription.
func (e *Echo) Close() {
	for _, c := range e.conns {
		c.Close()
	}
}
