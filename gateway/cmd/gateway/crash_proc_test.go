package main

// The crash test's handle on the gateway as a separate operating-system
// process: build the binary once, start it, wait until it is ready, kill it
// with SIGKILL, and talk to its operator API. Everything the gateway writes
// goes to one log file in the test's temp dir (each start is marked), so that
// the proofs can read its recovery lines and a failure can show its tail.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// crashReadyWait bounds how long one start may take to answer
	// GET /readyz with 200 (recovery + MQTT connect).
	crashReadyWait = 20 * time.Second
	// crashExitWait bounds how long a SIGKILLed gateway may take to be reaped.
	crashExitWait = 10 * time.Second
	// crashPortAttempts bounds the starts retried because the chosen free
	// HTTP port was taken by someone else in between.
	crashPortAttempts = 3
	// crashHTTPTimeout bounds one operator API call.
	crashHTTPTimeout = 5 * time.Second
	// crashTailLines is how much of the gateway's log a failure shows.
	crashTailLines = 60
)

// errPortTaken marks a start that failed only because its HTTP port was taken.
var errPortTaken = errors.New("http port taken")

// buildGateway builds the gateway binary (without -race: the process under
// test should run at production speed) into dir.
func buildGateway(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("crash test skipped: the go tool is not in PATH (%v); it is needed to build the gateway binary", err)
	}
	bin := filepath.Join(dir, "gateway")
	cmd := exec.Command(goTool, "build", "-o", bin, "scenepay/gateway/cmd/gateway")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build scenepay/gateway/cmd/gateway: %v\n%s", err, out)
	}
	t.Logf("built the gateway binary in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// crashGateway is one gateway data directory run as a sequence of processes.
// start and kill are called from the test goroutine only; base is read by the
// top-up goroutine too, hence atomic.
type crashGateway struct {
	bin     string
	args    []string // every flag but -http-listen
	env     []string
	token   string
	logPath string
	log     *os.File
	hc      *http.Client

	starts  int   // successful starts (each logs "engine recovered" once)
	logFrom int64 // log offset where the current process's output begins
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // written before exited is closed
	base    atomic.Pointer[string]
}

func newCrashGateway(t *testing.T, bin, dir string, args []string, token string) *crashGateway {
	t.Helper()
	logPath := filepath.Join(dir, "gateway.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	env := append(os.Environ(), "SCENEPAY_OPERATOR_TOKEN="+token)
	return &crashGateway{
		bin: bin, args: args, env: env, token: token, logPath: logPath, log: f,
		hc: &http.Client{Timeout: crashHTTPTimeout, Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// start runs a new gateway process and waits until it is ready.
func (g *crashGateway) start() error {
	var err error
	for attempt := 0; attempt < crashPortAttempts; attempt++ {
		if err = g.startOnce(); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

func (g *crashGateway) startOnce() error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	st, err := g.log.Stat()
	if err != nil {
		return err
	}
	from := st.Size()
	fmt.Fprintf(g.log, "=== crash test: start %d on %s at %s\n", g.starts+1, addr, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(g.bin, append(append([]string(nil), g.args...), "-http-listen", addr)...)
	cmd.Env = g.env
	cmd.Stdout, cmd.Stderr = g.log, g.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start gateway: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		g.waitErr = cmd.Wait()
		close(exited)
	}()
	g.cmd, g.exited = cmd, exited
	base := "http://" + addr
	g.base.Store(&base)
	if err := g.waitReady(); err != nil {
		if g.hasExited() {
			if b, rerr := os.ReadFile(g.logPath); rerr == nil && int64(len(b)) > from &&
				bytes.Contains(b[from:], []byte("is not free")) {
				return fmt.Errorf("%w: %v", errPortTaken, err)
			}
		}
		return err
	}
	g.starts++
	g.logFrom = from
	return nil
}

// waitLog waits until the current process has logged substr, up to d.
func (g *crashGateway) waitLog(substr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if b, err := os.ReadFile(g.logPath); err == nil && int64(len(b)) > g.logFrom &&
			bytes.Contains(b[g.logFrom:], []byte(substr)) {
			return true
		}
		if time.Now().After(deadline) || g.hasExited() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *crashGateway) hasExited() bool {
	if g.exited == nil {
		return true
	}
	select {
	case <-g.exited:
		return true
	default:
		return false
	}
}

// waitReady polls /readyz until it answers 200, the process exits, or
// crashReadyWait passes.
func (g *crashGateway) waitReady() error {
	deadline := time.Now().Add(crashReadyWait)
	url := *g.base.Load() + "/readyz"
	last := "no answer yet"
	for {
		select {
		case <-g.exited:
			return fmt.Errorf("gateway exited during startup: %v", g.waitErr)
		default:
		}
		resp, err := g.hc.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway not ready within %s (last /readyz: %s)", crashReadyWait, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and reaps the process. It is an error if the process
// had already exited by itself: nothing but this test should stop it.
func (g *crashGateway) kill() error {
	if g.hasExited() {
		return fmt.Errorf("gateway exited by itself before the kill: %v", g.waitErr)
	}
	if err := g.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	select {
	case <-g.exited:
		return nil
	case <-time.After(crashExitWait):
		return fmt.Errorf("gateway not reaped within %s of SIGKILL", crashExitWait)
	}
}

// stop kills a process still running (test cleanup).
func (g *crashGateway) stop() {
	if g.cmd != nil && !g.hasExited() {
		_ = g.cmd.Process.Kill()
		select {
		case <-g.exited:
		case <-time.After(crashExitWait):
		}
	}
}

// call makes one operator API call and returns the status and body.
func (g *crashGateway) call(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, *g.base.Load()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// balance reads an account's balance in fen.
func (g *crashGateway) balance(key string) (int64, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		status, b, err := g.call(http.MethodGet, "/v1/accounts/"+key, nil)
		if err == nil && status == http.StatusOK {
			var v struct {
				Balance *int64 `json:"balance"`
			}
			if err := json.Unmarshal(b, &v); err != nil || v.Balance == nil {
				return 0, fmt.Errorf("GET account %s: body %q: %v", key, b, err)
			}
			return *v.Balance, nil
		}
		lastErr = fmt.Errorf("GET account %s: status %d %q: %v", key, status, b, err)
		time.Sleep(100 * time.Millisecond)
	}
	return 0, lastErr
}

// logText is everything the gateway processes wrote.
func (g *crashGateway) logText() string {
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		return "(cannot read " + g.logPath + ": " + err.Error() + ")"
	}
	return string(b)
}

// tail is the last n lines of the gateway's log.
func (g *crashGateway) tail(n int) string {
	lines := strings.Split(strings.TrimRight(g.logText(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
