package testkit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Mosquitto is a private Mosquitto instance for tests that need their own
// broker settings or must restart the broker.
type Mosquitto struct {
	t    testing.TB
	conf string
	Addr string
	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *syncBuf
}

// syncBuf is a strings.Builder safe for the two output-copying goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartMosquitto writes conf (a Mosquitto config without a listener line;
// one for a free port is appended) into a temp dir and starts the broker.
// It is stopped when the test ends.
func StartMosquitto(t testing.TB, conf string) *Mosquitto {
	t.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Fatal("mosquitto is not installed (.ci/run installs it)")
	}
	dir := t.TempDir()
	m := &Mosquitto{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
	conf += fmt.Sprintf("\nlistener %s 127.0.0.1\n", strings.Split(m.Addr, ":")[1])
	if os.Geteuid() == 0 {
		// As root Mosquitto drops to user "mosquitto", which cannot read
		// the test's private temp dir.
		conf += "user root\n"
	}
	m.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("private mosquitto output:\n%s", m.log.String())
		}
	})
	return m
}

// URL is the broker URL.
func (m *Mosquitto) URL() string { return "tcp://" + m.Addr }

// Start (re)starts the broker and waits until it listens.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.log == nil {
		m.log = &syncBuf{}
	}
	cmd := exec.Command("mosquitto", "-c", m.conf)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	for i := 0; ; i++ {
		if c, err := net.DialTimeout("tcp", m.Addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			m.t.Fatalf("private mosquitto exited:\n%s", m.log.String())
		default:
		}
		if i > 100 {
			m.t.Fatalf("private mosquitto did not listen on %s:\n%s", m.Addr, m.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the broker (as a crash or a restart would).
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Kill()
		for i := 0; i < 100; i++ { // wait for the port to close
			c, err := net.DialTimeout("tcp", m.Addr, 50*time.Millisecond)
			if err != nil {
				break
			}
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
		m.cmd = nil
	}
}
