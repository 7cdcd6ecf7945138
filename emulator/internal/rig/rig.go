// Package rig owns the processes an emulator run starts itself: the gateway
// binary (so that the run can SIGKILL it and start it again on the same
// data) and, optionally, a private Mosquitto on a fixed port (so that the
// run can restart the broker under a live fleet). A rig is what lets a bank
// rehearse "the gateway host lost power" and "the broker was restarted" on
// one machine, with the end-of-run audit as the verdict.
package rig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"scenepay/emulator/internal/bench"
)

// Bounds.
const (
	// brokerStartTimeout bounds the wait for Mosquitto to listen.
	brokerStartTimeout = 10 * time.Second
	// brokerStopTimeout bounds a clean broker stop before SIGKILL.
	brokerStopTimeout = 3 * time.Second
)

// Config says what to start.
type Config struct {
	GatewayBin string // the gateway binary
	DataDir    string // the gateway's -data-dir (journal, snapshots, settlement.db)
	// BrokerURL is an external broker for the gateway and the fleet; ""
	// starts a private Mosquitto (anonymous, loopback, no persistence),
	// which RestartBroker can restart.
	BrokerURL string
	TopicRoot string
	Token     string // the operator token the gateway is given
	// WalletToken is the wallet backend's token the gateway is given (it
	// takes it on the stall code payment routes only); "" = none.
	WalletToken string
	// SettlementDB is the gateway's -settlement-db: a postgres:// URL, or
	// "" for the embedded SQLite store in DataDir. The rig passes it on so
	// that the gateway's handoff and the emulator's settlement audit read
	// and write the same store (a rig that kept SQLite while the audit read
	// PostgreSQL would report every merchant as missing).
	SettlementDB string
	ExtraArgs    []string // more gateway flags
}

// Rig is the running processes.
type Rig struct {
	cfg    Config
	master string
	// instance is the gateway's -instance, its MQTT client ids' stem: one
	// of its own per rig (kept across restarts), so that rigs sharing the
	// machine's broker do not take over each other's sessions.
	instance string
	mu       sync.Mutex
	gw       *bench.Gateway
	broker   *mosquitto
}

// Start starts the broker (when private) and the gateway, and returns once
// the gateway is ready.
func Start(ctx context.Context, c Config) (*Rig, error) {
	if c.GatewayBin == "" || c.DataDir == "" {
		return nil, errors.New("rig: a gateway binary and a data directory are required")
	}
	if c.SettlementDB != "" && !isPostgresURL(c.SettlementDB) {
		return nil, fmt.Errorf("rig: the gateway's settlement store is a postgres:// URL or the embedded one, got %q", c.SettlementDB)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	rand.Read(id)
	r := &Rig{cfg: c, master: filepath.Join(c.DataDir, "master.key"), instance: "rig-" + hex.EncodeToString(id)}
	if _, err := os.Stat(r.master); errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		rand.Read(k)
		if err := os.WriteFile(r.master, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	if c.BrokerURL == "" {
		b, err := startMosquitto(filepath.Join(c.DataDir, "mosquitto"), 0)
		if err != nil {
			return nil, err
		}
		r.broker = b
	}
	if err := r.startGateway(ctx); err != nil {
		r.broker.stop()
		return nil, err
	}
	return r, nil
}

func (r *Rig) startGateway(ctx context.Context) error {
	args := []string{"-topic-root", r.cfg.TopicRoot}
	if !hasFlag(r.cfg.ExtraArgs, "instance") {
		args = append(args, "-instance", r.instance)
	}
	if r.cfg.SettlementDB != "" {
		args = append(args, "-settlement-db", r.cfg.SettlementDB)
	}
	args = append(args, r.cfg.ExtraArgs...)
	g, err := bench.StartGateway(ctx, bench.GatewayConfig{
		Bin: r.cfg.GatewayBin, DataDir: r.cfg.DataDir, BrokerURL: r.BrokerURL(),
		MasterFile: r.master, Token: r.cfg.Token, WalletToken: r.cfg.WalletToken, ExtraArgs: args,
	})
	if err != nil {
		return fmt.Errorf("rig: %w", err)
	}
	r.mu.Lock()
	r.gw = g
	r.mu.Unlock()
	return nil
}

// MasterKeyFile is the master key file the gateway was started with.
func (r *Rig) MasterKeyFile() string { return r.master }

// SettlementDB is the settlement store the gateway writes: the configured
// postgres:// URL, or else the embedded SQLite file in the data directory.
func (r *Rig) SettlementDB() string {
	if r.cfg.SettlementDB != "" {
		return r.cfg.SettlementDB
	}
	return filepath.Join(r.cfg.DataDir, "settlement.db")
}

// isPostgresURL is the gateway's own test for a PostgreSQL settlement store.
func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// BrokerURL is the broker the gateway and the fleet use.
func (r *Rig) BrokerURL() string {
	if r.broker != nil {
		return r.broker.url()
	}
	return r.cfg.BrokerURL
}

// API is the gateway's operator API base URL; a restart may change it.
func (r *Rig) API() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gw.API
}

// KillGateway SIGKILLs the gateway (no drain, no snapshot: a power cut)
// and starts it again on the same data directory.
func (r *Rig) KillGateway(ctx context.Context) error {
	r.mu.Lock()
	g := r.gw
	r.mu.Unlock()
	if err := syscall.Kill(g.Pid(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("rig: kill gateway: %w", err)
	}
	g.Stop() // reaps it; the exit status is the kill's, not an error
	return r.startGateway(ctx)
}

// RestartBroker stops the private broker and starts it on the same port.
func (r *Rig) RestartBroker(ctx context.Context) error {
	if r.broker == nil {
		return errors.New("rig: the broker is external; only a broker the rig started can be restarted")
	}
	port := r.broker.port
	r.broker.stop()
	b, err := startMosquitto(r.broker.dir, port)
	if err != nil {
		return err
	}
	r.broker = b
	return nil
}

// Close stops the gateway cleanly, then the broker.
func (r *Rig) Close() error {
	r.mu.Lock()
	g := r.gw
	r.mu.Unlock()
	err := g.Stop()
	r.broker.stop()
	return err
}

// GatewayLog is the start of the gateway's output, for error reports.
func (r *Rig) GatewayLog() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gw.Log()
}

type mosquitto struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (m *mosquitto) url() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

// startMosquitto starts an anonymous loopback Mosquitto on port (0 = a free
// one) with TCP_NODELAY as deployed and no persistence: a restart loses
// every session, which is the harder case for terminals and the gateway.
func startMosquitto(dir string, port int) (*mosquitto, error) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		return nil, errors.New("rig: mosquitto is not installed")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_inflight_messages 1000\nmax_queued_messages 10000\nlog_dest none\n", port)
	if os.Geteuid() == 0 {
		conf += "user root\n"
	}
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	m := &mosquitto{dir: dir, port: port, cmd: exec.Command("mosquitto", "-c", path), done: make(chan struct{})}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("rig: mosquitto: %w", err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	deadline := time.Now().Add(brokerStartTimeout)
	for {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond); err == nil {
			c.Close()
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("rig: mosquitto exited (port %d)", port)
		default:
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("rig: mosquitto did not listen on port %d", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *mosquitto) stop() {
	if m == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(brokerStopTimeout):
		m.cmd.Process.Kill()
		<-m.done
	}
}

// hasFlag reports whether args set the flag name (-name or --name, with or
// without =value).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
