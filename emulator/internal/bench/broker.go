package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Broker bounds.
const (
	// brokerStartTimeout bounds the wait for a fresh Mosquitto to listen.
	brokerStartTimeout = 10 * time.Second
	// brokerLogBytesMax bounds the broker output kept for error messages.
	brokerLogBytesMax = 64 << 10
)

// BrokerConfig says where the deployed settings are and who the gateway is.
type BrokerConfig struct {
	ConfPath string // deploy/mosquitto/mosquitto.conf
	ACLPath  string // deploy/mosquitto/scenepay.acl
	Dir      string // private directory for config, password and ACL files
	User     string // the gateway's MQTT user (as in the ACL)
	Password string
	// Nice, when not 0, is the broker's scheduling priority (the deployed
	// unit's Nice=, UnitNice): it is started through nice(1). Whether the
	// kernel granted it is Broker.Nice's to say (a negative value needs
	// CAP_SYS_NICE; nice(1) then runs the broker unchanged).
	Nice int
}

// Broker is a private Mosquitto process.
type Broker struct {
	Addr string
	cmd  *exec.Cmd
	log  *capBuf
	done chan struct{}
}

// capBuf keeps the first brokerLogBytesMax bytes of the broker's output.
type capBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *capBuf) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := brokerLogBytesMax - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capBuf) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dropKeys are the deployed settings the private broker replaces: paths of
// the production machine, the production listeners, and persistence (a
// benchmark must not read or leave a broker database). The options of the
// deployed TLS listener go too: the private broker has one plain loopback
// listener, and Mosquitto would open a default listener on 1883 for
// listener options left above the first "listener" line.
var dropKeys = map[string]bool{
	"password_file": true, "acl_file": true, "persistence": true,
	"persistence_location": true, "listener": true, "max_connections": true,
	"user": true, "log_dest": true,
	"cafile": true, "capath": true, "certfile": true, "keyfile": true,
	"require_certificate": true, "use_identity_as_username": true,
	"use_subject_as_username": true, "use_username_as_clientid": true,
	"tls_version": true, "crlfile": true,
}

// BrokerConf derives the private broker's configuration from the deployed
// one: every setting is kept (set_tcp_nodelay, max_inflight_messages,
// max_queued_messages, max_packet_size, ...) except those in dropKeys,
// which are replaced by the private files, a loopback listener on port,
// no persistence and no connection limit (the scale probe holds 10,000+).
func BrokerConf(deployed []byte, dir string, port int, root bool) (string, error) {
	var out strings.Builder
	out.WriteString("# Private benchmark broker, derived from deploy/mosquitto/mosquitto.conf.\n")
	sc := bufio.NewScanner(bytes.NewReader(deployed))
	kept := map[string]bool{}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, _ := strings.Cut(line, " ")
		if dropKeys[key] {
			continue
		}
		kept[key] = true
		out.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	// The benchmark measures these settings; a deployed file without them
	// would silently measure something else.
	for _, k := range []string{"set_tcp_nodelay", "max_inflight_messages", "max_queued_messages"} {
		if !kept[k] {
			return "", fmt.Errorf("bench: deployed mosquitto.conf lacks %s", k)
		}
	}
	fmt.Fprintf(&out, "password_file %s\nacl_file %s\npersistence false\nmax_connections -1\nlog_dest stderr\n",
		filepath.Join(dir, "passwd"), filepath.Join(dir, "scenepay.acl"))
	if root {
		// As root Mosquitto drops to user "mosquitto", which cannot read the
		// private directory.
		out.WriteString("user root\n")
	}
	fmt.Fprintf(&out, "listener %d 127.0.0.1\n", port)
	return out.String(), nil
}

// StartBroker writes the private files and starts Mosquitto. The caller's
// file-descriptor limit is inherited, so raise it first (RaiseFileLimit).
func StartBroker(c BrokerConfig) (*Broker, error) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		return nil, errors.New("bench: mosquitto is not installed")
	}
	deployed, err := os.ReadFile(c.ConfPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	acl, err := os.ReadFile(c.ACLPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf, err := BrokerConf(deployed, c.Dir, port, os.Geteuid() == 0)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "scenepay.acl"), acl, 0o600); err != nil {
		return nil, err
	}
	pw := filepath.Join(c.Dir, "passwd")
	if err := os.WriteFile(pw, nil, 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command("mosquitto_passwd", "-b", pw, c.User, c.Password).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: mosquitto_passwd: %v: %s", err, out)
	}
	confPath := filepath.Join(c.Dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	b := &Broker{Addr: fmt.Sprintf("127.0.0.1:%d", port), log: &capBuf{}, done: make(chan struct{})}
	b.cmd = exec.Command("mosquitto", "-c", confPath)
	if c.Nice != 0 {
		if _, err := exec.LookPath("nice"); err != nil {
			return nil, errors.New("bench: nice(1) is not installed (it starts the broker at the deployed Nice=)")
		}
		b.cmd = exec.Command("nice", "-n", strconv.Itoa(c.Nice), "mosquitto", "-c", confPath)
	}
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { b.cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(brokerStartTimeout)
	for {
		if conn, err := net.DialTimeout("tcp", b.Addr, 100*time.Millisecond); err == nil {
			conn.Close()
			return b, nil
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("bench: mosquitto exited:\n%s", b.log.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Stop()
			return nil, fmt.Errorf("bench: mosquitto did not listen on %s:\n%s", b.Addr, b.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the broker URL for paho.
func (b *Broker) URL() string { return "tcp://" + b.Addr }

// Pid is the broker's process id.
func (b *Broker) Pid() int { return b.cmd.Process.Pid }

// Nice is the broker's scheduling priority as the kernel has it
// (/proc/PID/stat), which may differ from BrokerConfig.Nice.
func (b *Broker) Nice() (int, error) { return procNice(b.Pid()) }

// UnitNice reads Nice= from the [Service] section of a systemd unit or
// drop-in (deploy/systemd/mosquitto.service.d/scenepay.conf): 0 when it
// sets none.
func UnitNice(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	nice, section := 0, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.TrimSpace(k) != "Nice" {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < -20 || n > 19 {
				return 0, fmt.Errorf("bench: %s: Nice=%s: want an integer from -20 to 19", path, strings.TrimSpace(v))
			}
			nice = n
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("bench: %s: %w", path, err)
	}
	return nice, nil
}

// Log is the start of the broker's output.
func (b *Broker) Log() string { return b.log.String() }

// Stop ends the broker and waits for it (bounded).
func (b *Broker) Stop() {
	if b == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
}
