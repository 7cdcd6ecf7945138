// Package ingress owns the gateway's MQTT connections (paho.mqtt.golang):
// it consumes every terminal's request topic through a shared subscription,
// hands each message to the engine, and publishes the engine's replies. It
// reconnects and resubscribes by itself after a broker restart.
//
// Messages are handled concurrently (paho's OrderMatters(false)); the engine
// never blocks a handler on the journal, so paho acknowledges QoS 1 messages
// promptly and the broker's per-client in-flight window is not the limit.
package ingress

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"scenepay/terminals"
)

// Config of the ingress.
type Config struct {
	BrokerURL string // tcp://host:port
	ClientID  string // base client id; connection i gets "-i" appended
	Username  string
	Password  string
	Conns     int // MQTT connections in the shared group
	Topics    terminals.Topics
	// ConnectTimeout bounds the first connection attempt.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	// StatusHandler, if set, receives every terminal's retained status
	// ("online"/"offline", the last will) on the first connection. It is a
	// plain, not shared, subscription: every gateway instance keeps the
	// whole fleet's status for its operators.
	StatusHandler Handler
}

// Handler consumes one request message.
type Handler func(topic string, payload []byte)

// Ingress is a set of MQTT connections.
type Ingress struct {
	cfg        Config
	clients    []paho.Client
	log        *slog.Logger
	reconnects prometheus.Counter
	connected  prometheus.Gauge
	pubErrors  prometheus.Counter
	up         atomic.Int32
}

// Start connects cfg.Conns clients and subscribes each to the shared request
// filter. It fails if the first connection cannot be made within
// ConnectTimeout; later losses are retried forever with backoff.
func Start(cfg Config, h Handler) (*Ingress, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	in := &Ingress{
		cfg: cfg,
		log: cfg.Logger.With("component", "ingress"),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_mqtt_reconnects_total", Help: "MQTT connections of the gateway re-established after a loss.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scenepay_gateway_mqtt_connections", Help: "Gateway MQTT connections currently up.",
		}),
		pubErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scenepay_gateway_mqtt_publish_errors_total", Help: "Reply publications that failed (the terminal retries and gets the stored reply).",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(in.reconnects, in.connected, in.pubErrors)
	}
	filter := cfg.Topics.SharedRequestFilter()
	for i := 0; i < cfg.Conns; i++ {
		first := true
		o := paho.NewClientOptions()
		o.AddBroker(cfg.BrokerURL)
		o.SetClientID(cfg.ClientID + "-" + strconv.Itoa(i))
		o.SetUsername(cfg.Username)
		o.SetPassword(cfg.Password)
		// Clean session: a persistent session of a stopped or killed gateway
		// would stay in the shared group and keep receiving its share of
		// requests while nobody reads them. Requests sent while no gateway is
		// connected are retried by the terminals (safety is end to end).
		o.SetCleanSession(true)
		o.SetOrderMatters(false)
		o.SetAutoReconnect(true)
		o.SetConnectRetry(true)
		o.SetConnectRetryInterval(time.Second)
		o.SetMaxReconnectInterval(5 * time.Second)
		o.SetKeepAlive(20 * time.Second)
		o.SetPingTimeout(5 * time.Second)
		o.SetWriteTimeout(5 * time.Second)
		o.SetConnectionLostHandler(func(_ paho.Client, err error) {
			in.connected.Dec()
			in.up.Add(-1)
			in.log.Warn("MQTT connection lost; reconnecting", "conn", i, "err", err)
		})
		o.SetOnConnectHandler(func(c paho.Client) {
			in.connected.Inc()
			in.up.Add(1)
			if !first {
				in.reconnects.Inc()
				in.log.Info("MQTT reconnected", "conn", i)
			}
			first = false
			// Subscribe on every connect: a broker that lost our session
			// (restart without persistence) must get the subscription again.
			tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
				h(m.Topic(), m.Payload())
			})
			if i == 0 && cfg.StatusHandler != nil {
				sf := cfg.Topics.StatusFilter()
				st := c.Subscribe(sf, 1, func(_ paho.Client, m paho.Message) { cfg.StatusHandler(m.Topic(), m.Payload()) })
				go func() {
					if st.WaitTimeout(10*time.Second) && st.Error() != nil {
						in.log.Error("subscribe failed", "filter", sf, "err", st.Error())
					}
				}()
			}
			go func() {
				if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
					in.log.Error("subscribe failed", "filter", filter, "err", tok.Error())
				}
			}()
		})
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(cfg.ConnectTimeout) {
			in.Close()
			c.Disconnect(0)
			return nil, fmt.Errorf("ingress: no MQTT connection to %s within %s (is the broker running?)", cfg.BrokerURL, cfg.ConnectTimeout)
		}
		if err := tok.Error(); err != nil {
			in.Close()
			return nil, fmt.Errorf("ingress: connect %s: %w", cfg.BrokerURL, err)
		}
		in.clients = append(in.clients, c)
	}
	return in, nil
}

// Publish sends a reply at QoS 1 on one of the connections, without waiting
// for the broker's acknowledgement.
func (in *Ingress) Publish(topic string, payload []byte) {
	n := len(in.clients)
	if n == 0 {
		return
	}
	// One connection per topic: messages to one terminal (a reply and the
	// notice that follows it) leave in the order they were published.
	c := in.clients[topicConn(topic, n)]
	tok := c.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			in.pubErrors.Inc()
		}
	default:
	}
}

// PublishRetained publishes a retained QoS 1 message (scene configuration)
// and waits for the broker's acknowledgement, so the caller knows whether
// the broker holds it for terminals that connect later.
func (in *Ingress) PublishRetained(topic string, payload []byte) error {
	n := len(in.clients)
	if n == 0 {
		return errors.New("ingress: no MQTT connection")
	}
	tok := in.clients[topicConn(topic, n)].Publish(topic, 1, true, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		in.pubErrors.Inc()
		return fmt.Errorf("ingress: retained publish to %s: no acknowledgement within 10s", topic)
	}
	if err := tok.Error(); err != nil {
		in.pubErrors.Inc()
		return fmt.Errorf("ingress: retained publish to %s: %w", topic, err)
	}
	return nil
}

// Connected reports whether at least one connection is up.
func (in *Ingress) Connected() error {
	if in.up.Load() > 0 {
		return nil
	}
	return errors.New("no MQTT connection")
}

// Close disconnects every client, letting queued publications go out.
func (in *Ingress) Close() {
	for _, c := range in.clients {
		c.Disconnect(500)
	}
}

// topicConn picks the connection for topic: FNV-1a of the topic, so every
// message to one terminal uses the same connection and keeps its order.
func topicConn(topic string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		h ^= uint32(topic[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}
