// Package broker owns the embedded MQTT broker of the single-process default
// (mochi-mqtt), so that `make run` needs no external service. It enforces the
// same confinement as the production Mosquitto ACL (deploy/mosquitto): the
// gateway logs in with its own secret and may use every topic; any other
// client may only use the subtree {root}/t/{its client id}/ and read the
// retained config of groups.
package broker

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"

	"scenepay/internal/mochistop"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Config of the embedded broker.
type Config struct {
	Addr            string // listen address, e.g. 127.0.0.1:11883
	TopicRoot       string // e.g. scp/v1
	GatewayUser     string
	GatewayPassword string
	Logger          *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	srv  *mqtt.Server
	addr string
}

// ErrAddrInUse wraps a listen failure on a taken port.
var ErrAddrInUse = errors.New("address already in use")

// Start listens on cfg.Addr and serves. A taken port is reported at once with
// a clear error, never a hang.
func Start(cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GatewayUser == "" || cfg.GatewayPassword == "" {
		return nil, errors.New("broker: gateway credentials are required")
	}
	opts := &mqtt.Options{Logger: cfg.Logger.With("component", "embedded-broker")}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 8192
	opts.Capabilities = caps
	srv := mqtt.New(opts)
	if err := srv.AddHook(&aclHook{cfg: cfg}, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Addr})
	if err := mochistop.AddListener(srv, tcp); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded MQTT broker: %s: %w (another broker is listening there; choose another port with -mqtt-listen or SCENEPAY_MQTT_LISTEN, or use it with -broker)", cfg.Addr, ErrAddrInUse)
		}
		return nil, fmt.Errorf("embedded MQTT broker: listen %s: %w", cfg.Addr, err)
	}
	go func() {
		if err := srv.Serve(); err != nil {
			cfg.Logger.Error("embedded broker stopped", "err", err)
		}
	}()
	return &Broker{srv: srv, addr: tcp.Address()}, nil
}

// URL is the broker URL for MQTT clients.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Addr is the listen address.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker.
func (b *Broker) Close() error { return mochistop.Close(b.srv) }

// CheckFree reports whether addr can be listened on, with a clear error.
func CheckFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

type aclHook struct {
	mqtt.HookBase
	cfg Config
}

func (h *aclHook) ID() string { return "scenepay-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *aclHook) isGateway(cl *mqtt.Client) bool {
	return string(cl.Properties.Username) == h.cfg.GatewayUser
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if string(pk.Connect.Username) == h.cfg.GatewayUser {
		return string(pk.Connect.Password) == h.cfg.GatewayPassword
	}
	// Terminals authenticate end to end with their MAC key; on the broker a
	// terminal is confined to its own topics by client id.
	return cl.ID != "" && !strings.ContainsAny(cl.ID, "/+#")
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.isGateway(cl) {
		return true
	}
	return h.check(cl.ID, topic, write)
}

// check is the terminal rule: its own subtree, and group config read-only.
func (h *aclHook) check(id, topic string, write bool) bool {
	own := h.cfg.TopicRoot + "/t/" + id + "/"
	if !strings.HasPrefix(topic, own) {
		return !write && strings.HasPrefix(topic, h.cfg.TopicRoot+"/g/") && strings.HasSuffix(topic, "/cfg")
	}
	switch topic[len(own):] {
	case "req", "status":
		return write
	case "resp", "cfg":
		return !write
	}
	return false
}
