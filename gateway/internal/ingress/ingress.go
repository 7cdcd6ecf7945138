// Package ingress owns the gateway's MQTT connections: it consumes every
// terminal's request topic through a shared subscription, hands each
// message to the engine, and publishes the engine's replies. It speaks MQTT
// 3.1.1 through the project's lean client (internal/mqttclient) and
// reconnects and resubscribes by itself after a broker restart.
//
// Why not paho: the gateway used paho.mqtt.golang, which starts a goroutine
// per received message (OrderMatters(false)), allocates a token with a
// channel per publication, and passes every packet through two more
// goroutines and channels before the socket. In the end-to-end benchmark
// that was most of the gateway's CPU outside the journal. Here a
// connection's reader decodes packets from one large read and calls the
// handler itself (the engine never blocks a handler on the journal, so the
// reader keeps reading and PUBACKs go out promptly), and every packet sent
// is appended to the connection's buffer and written by its flusher
// (internal/mqttclient), many packets per system call.
//
// Per-terminal order does not depend on the reader: a shared subscription
// spreads one terminal's requests over the connections anyway, and the
// idempotency store decides resends whatever order they arrive in.
//
// Retained messages (the signed config documents and deny lists) are the
// engine's to publish again after a broker restart, which loses them when
// the broker keeps no persistence: whenever a (re)connect leaves every
// connection up, Ingress calls the hook set with OnConnected (the engine
// sets it in SetPublisher) to publish the current version of each. Nothing
// is resent by the connection itself: sessions are clean, and a publication
// whose PUBACK had not come when its connection dropped is forgotten (a
// reply is sent again when the terminal retries and gets the stored reply;
// a retained document is published again by the hook, never a stale
// version after a newer one).
package ingress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/internal/mqttclient"
	"scenepay/terminals"
)

// statusSuffix ends a terminal's status topic (terminals.Topics.Status):
// the one plain subscription, on the first connection.
const statusSuffix = "/status"

// retainedAckTimeout bounds PublishRetained's wait for the PUBACK.
const retainedAckTimeout = 10 * time.Second

// Config of the ingress.
type Config struct {
	BrokerURL string // tcp://host:port, or ssl://host:port for TLS
	// TLS configures ssl:// and the other TLS schemes; nil: the system
	// roots and the URL's host name.
	TLS      *tls.Config
	ClientID string // base client id; connection i gets "-i" appended
	Username string
	Password string
	Conns    int // MQTT connections in the shared group
	// AckDelay: see mqttclient.Config.AckDelay.
	AckDelay time.Duration
	Topics   terminals.Topics
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

// Handler consumes one message. It owns topic and payload.
type Handler func(topic string, payload []byte)

// Ingress is a set of MQTT connections.
type Ingress struct {
	cfg        Config
	conns      []*mqttclient.Conn
	log        *slog.Logger
	reconnects prometheus.Counter
	connected  prometheus.Gauge
	pubErrors  prometheus.Counter
	up         atomic.Int32
	sessions   atomic.Int64 // sessions started, to tell reconnects from first connects

	hook    atomic.Pointer[func()] // OnConnected
	kick    chan struct{}          // a (re)connect left every connection up
	done    chan struct{}          // closed by Close
	closing sync.Once
}

// Start connects cfg.Conns connections and subscribes each to the shared
// request filter (the first also to the status filter). It fails if the
// connections are not up and subscribed within ConnectTimeout; later losses
// are retried forever with backoff.
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
		cfg:  cfg,
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
		log:  cfg.Logger.With("component", "ingress"),
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
	// Status messages come on the first connection's plain (not shared)
	// subscription: every gateway instance keeps the whole fleet's status
	// for its operators.
	route := h
	if sh := cfg.StatusHandler; sh != nil {
		route = func(topic string, payload []byte) {
			if strings.HasSuffix(topic, statusSuffix) {
				sh(topic, payload)
				return
			}
			h(topic, payload)
		}
	}
	for i := 0; i < cfg.Conns; i++ {
		filters := []string{cfg.Topics.SharedRequestFilter()}
		if i == 0 && cfg.StatusHandler != nil {
			filters = append(filters, cfg.Topics.StatusFilter())
		}
		c, err := mqttclient.Start(mqttclient.Config{
			BrokerURL: cfg.BrokerURL, TLS: cfg.TLS, ClientID: cfg.ClientID + "-" + strconv.Itoa(i),
			Username: cfg.Username, Password: cfg.Password, Filters: filters,
			ConnectTimeout: cfg.ConnectTimeout, Logger: in.log.With("conn", i), Handler: route,
			OnUp: func() { in.sessionUp(i) }, OnDown: in.sessionDown, AckDelay: cfg.AckDelay,
		})
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("ingress: %w", err)
		}
		in.conns = append(in.conns, c)
	}
	deadline := time.NewTimer(cfg.ConnectTimeout)
	defer deadline.Stop()
	for _, c := range in.conns {
		select {
		case <-c.Ready():
		case <-deadline.C:
			in.Close()
			msg := fmt.Sprintf("ingress: no MQTT connection to %s within %s (is the broker running?)", cfg.BrokerURL, cfg.ConnectTimeout)
			if err := c.Err(); err != nil {
				return nil, fmt.Errorf("%s: %w", msg, err)
			}
			return nil, errors.New(msg)
		}
	}
	go in.republishLoop()
	return in, nil
}

// sessionUp counts a connection that came up.
func (in *Ingress) sessionUp(i int) {
	in.connected.Inc()
	if in.sessions.Add(1) > int64(in.cfg.Conns) {
		in.reconnects.Inc()
		in.log.Info("MQTT reconnected", "conn", i)
	}
	if in.up.Add(1) >= int32(in.cfg.Conns) {
		in.connectedAll()
	}
}

// sessionDown counts a connection that went down.
func (in *Ingress) sessionDown() {
	in.connected.Dec()
	in.up.Add(-1)
}

// OnConnected sets f to be called after every reconnect that leaves all
// connections up (a broker restart, a network loss), so the caller can
// publish its retained messages again. f runs on its own goroutine, one
// call at a time; reconnects during a call cause one more call after it.
// The caller publishes once itself when it starts; f may also run once
// just after Start, for Start's own connections (publishing the current
// versions again is harmless).
func (in *Ingress) OnConnected(f func()) { in.hook.Store(&f) }

func (in *Ingress) connectedAll() {
	select {
	case in.kick <- struct{}{}:
	default: // a call is already due
	}
}

func (in *Ingress) republishLoop() {
	for {
		select {
		case <-in.done:
			return
		case <-in.kick:
		}
		if f := in.hook.Load(); f != nil {
			in.log.Info("MQTT connections up again; publishing retained messages")
			(*f)()
		}
	}
}

// Publish sends a reply at QoS 1 on one of the connections, without
// waiting for the broker's acknowledgement. It never waits for the
// network: a reply that cannot be buffered (connection down, buffer full)
// is counted as a publish error; the terminal retries and gets the stored
// reply.
func (in *Ingress) Publish(topic string, payload []byte) {
	n := len(in.conns)
	if n == 0 {
		return
	}
	// One connection per topic: messages to one terminal (a reply and the
	// notice that follows it) leave in the order they were published.
	if err := in.conns[topicConn(topic, n)].Publish(topic, payload, false, nil); err != nil {
		in.pubErrors.Inc()
	}
}

// PublishRetained publishes a retained QoS 1 message (scene configuration)
// and waits for the broker's acknowledgement, so the caller knows whether
// the broker holds it for terminals that connect later.
func (in *Ingress) PublishRetained(topic string, payload []byte) error {
	n := len(in.conns)
	if n == 0 {
		return errors.New("ingress: no MQTT connection")
	}
	ack := make(chan error, 1)
	err := in.conns[topicConn(topic, n)].Publish(topic, payload, true, ack)
	if errors.Is(err, mqttclient.ErrNotConnected) {
		// Not queued for the reconnect: the OnConnected hook publishes the
		// current version once every connection is up.
		in.pubErrors.Inc()
		return fmt.Errorf("ingress: retained publish to %s: not connected; published again on reconnect", topic)
	}
	if err == nil {
		t := time.NewTimer(retainedAckTimeout)
		defer t.Stop()
		select {
		case err = <-ack:
		case <-t.C:
			err = fmt.Errorf("no acknowledgement within %s", retainedAckTimeout)
		}
	}
	if err != nil {
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

// Close disconnects every connection, letting buffered publications go
// out first, and waits for the connections' goroutines.
func (in *Ingress) Close() {
	in.closing.Do(func() { close(in.done) })
	var wg sync.WaitGroup
	for _, c := range in.conns {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
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
