package bench

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"scenepay/terminals"
)

// Echo is the bare responder of the reference arm: it takes requests from
// the gateway's shared subscription and publishes each payload unchanged on
// the terminal's reply topic at QoS 1. It does no parsing, no MAC check, no
// ledger and no journal, so its rate is what the broker and the MQTT client
// library allow on this machine.
type Echo struct {
	clients []mqtt.Client
	echoed  atomic.Int64
}

// StartEcho connects conns clients as the gateway user (the ACL lets only
// that user read every request topic) and subscribes them to the shared
// request filter.
func StartEcho(ctx context.Context, url, user, password string, topics terminals.Topics, conns int) (*Echo, error) {
	e := &Echo{}
	filter := topics.SharedRequestFilter()
	for i := range conns {
		o := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("scenepay-echo-%d", i)).
			SetUsername(user).SetPassword(password).SetCleanSession(true).
			SetAutoReconnect(false).SetConnectTimeout(connectTimeout)
		c := mqtt.NewClient(o)
		if err := wait(ctx, c.Connect()); err != nil {
			e.Close()
			return nil, fmt.Errorf("bench: echo connect: %w", err)
		}
		e.clients = append(e.clients, c)
		err := wait(ctx, c.Subscribe(filter, 1, func(c mqtt.Client, m mqtt.Message) {
			// Topic {root}/t/{tid}/req -> {root}/t/{tid}/resp.
			topic := strings.TrimSuffix(m.Topic(), "req") + "resp"
			c.Publish(topic, 1, false, m.Payload())
			e.echoed.Add(1)
		}))
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("bench: echo subscribe %s: %w", filter, err)
		}
	}
	return e, nil
}

// Echoed is the number of payloads sent back.
func (e *Echo) Echoed() int64 { return e.echoed.Load() }

// Close disconnects the responder; its clean sessions end its subscription.
func (e *Echo) Close() {
	for _, c := range e.clients {
		c.Disconnect(50)
	}
}
