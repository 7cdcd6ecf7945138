package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repoRoot finds the module root (the directory holding go.mod).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func TestBrokerConfKeepsDeployedSettings(t *testing.T) {
	deployed := []byte("# c\nset_tcp_nodelay true\nmax_inflight_messages 1000\nmax_queued_messages 10000\n" +
		"persistence true\npersistence_location /var/lib/mosquitto/\npassword_file /etc/p\nacl_file /etc/a\nlistener 1883 127.0.0.1\n" +
		"listener 8883\ncafile /etc/ca.pem\ncertfile /etc/b.pem\nkeyfile /etc/b.key\nrequire_certificate true\nuse_identity_as_username true\nuse_username_as_clientid true\n")
	got, err := BrokerConf(deployed, "/d", 4242, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"set_tcp_nodelay true\n", "max_inflight_messages 1000\n", "max_queued_messages 10000\n",
		"persistence false\n", "max_connections -1\n", "password_file /d/passwd\n", "acl_file /d/scenepay.acl\n", "listener 4242 127.0.0.1\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("conf lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"/etc/p", "/etc/a", "listener 1883", "persistence true", "user root",
		"listener 8883", "cafile", "certfile", "keyfile", "require_certificate", "use_identity_as_username", "use_username_as_clientid"} {
		if strings.Contains(got, bad) {
			t.Errorf("conf keeps %q:\n%s", bad, got)
		}
	}
	if _, err := BrokerConf([]byte("max_inflight_messages 1000\nmax_queued_messages 1\n"), "/d", 1, false); err == nil {
		t.Error("a deployed config without set_tcp_nodelay was accepted")
	}
}

func TestQuantileAndObjective(t *testing.T) {
	s := make([]int64, 1000)
	for i := range s {
		s[i] = int64(i + 1)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}} {
		if got := quantile(s, c.q); got != c.want {
			t.Errorf("quantile(%v) = %d, want %d", c.q, got, c.want)
		}
	}
	o := Objective{P99: 50 * time.Millisecond, FailureRate: 0.001}
	w := Window{Sent: 10000, Samples: 9990, P99: 40 * time.Millisecond, Timeouts: 10}
	if !o.Meets(w) {
		t.Error("10 failures in 10000 should meet 0.1%")
	}
	w.Timeouts = 11
	if o.Meets(w) {
		t.Error("11 failures in 10000 should break 0.1%")
	}
	w.Timeouts, w.P99 = 0, 51*time.Millisecond
	if o.Meets(w) {
		t.Error("p99 51ms should break 50ms")
	}
	if o.Meets(Window{}) {
		t.Error("an empty window should not pass")
	}
}

func TestFieldPeek(t *testing.T) {
	p := []byte(`{"v":1,"type":"purchase","tid":"T","txn":123,"code":"00","inst":{"k":"county","id":"x"}}` + "\nabcdef")
	if got := string(field(p, "txn")); got != "123" {
		t.Errorf("txn = %q", got)
	}
	if got := string(field(p, "code")); got != "00" {
		t.Errorf("code = %q", got)
	}
	if field(p, "auth") != nil {
		t.Error("absent field found")
	}
}

// TestQuickRunPrintsBenchLine runs the whole machinery in quick mode (a
// tiny rate) against a private Mosquitto and the real gateway binary, and
// checks the BENCH line; it asserts no speed.
func TestQuickRunPrintsBenchLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and starts Mosquitto")
	}
	for _, bin := range []string{"mosquitto", "mosquitto_passwd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	root := repoRoot(t)
	// SCENEPAY_BENCH_GATEWAY_BIN names a prebuilt binary (make bench-e2e's
	// bin/gateway); without it the test builds the gateway from the tree.
	gw := os.Getenv("SCENEPAY_BENCH_GATEWAY_BIN")
	if gw == "" {
		gw = filepath.Join(t.TempDir(), "gateway")
		if out, err := exec.Command("go", "build", "-o", gw, "scenepay/gateway/cmd/gateway").CombinedOutput(); err != nil {
			t.Fatalf("build gateway: %v\n%s", err, out)
		}
	}
	o := Quick()
	o.GatewayBin = gw
	o.ConfPath = filepath.Join(root, "deploy/mosquitto/mosquitto.conf")
	o.ACLPath = filepath.Join(root, "deploy/mosquitto/scenepay.acl")
	o.BrokerUnit = filepath.Join(root, "deploy/systemd/mosquitto.service.d/scenepay.conf")
	wantNice, err := UnitNice(o.BrokerUnit)
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 && wantNice < 0 {
		wantNice = 0 // the kernel refuses a negative nice without privilege; the run goes on
	}
	o.Terminals, o.StartRate, o.MaxRate, o.Steps = 5, 20, 40, 2
	o.Scale = 50
	var buf bytes.Buffer
	o.Out = &buf
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, buf.String())
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	last := lines[len(lines)-1]
	js, ok := strings.CutPrefix(last, "BENCH ")
	if !ok {
		t.Fatalf("last line is not a BENCH line: %q\n%s", last, buf.String())
	}
	var got Result
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("BENCH json: %v: %s", err, js)
	}
	if !got.Quick || got.Terminals != 5 || got.QoS != 1 || got.Windows < 4 || got.LoadClient != LoadRaw || got.TermsPerConn != 1 || got.LoadTickMs != 0.1 {
		t.Errorf("BENCH header fields: %+v", got)
	}
	// At a tiny rate both arms must answer every request: a gateway that
	// declined or lost purchases would show up here, not as a speed.
	for name, a := range map[string]ArmResult{"echo": got.Echo, "gateway": got.Gateway} {
		if a.MaxRate <= 0 || a.P50ms <= 0 || a.P99ms < a.P50ms || a.P999ms < a.P99ms || a.MaxMs < a.P999ms {
			t.Errorf("%s figures not well formed: %+v", name, a)
		}
	}
	if got.Half == nil || got.Half.Rate <= 0 {
		t.Errorf("half-rate comparison missing: %+v", got.Half)
	}
	if got.Gateway.LoadSyscalls <= 0 || got.Gateway.GatewaySyscalls <= 0 || got.Gateway.BrokerSyscalls <= 0 {
		t.Errorf("system calls per transaction missing: %+v", got.Gateway)
	}
	if got.Scale.Target != 50 || got.Scale.Connected != 50 || got.Scale.Alive != 50 {
		t.Errorf("scale probe: %+v", got.Scale)
	}
	if got.BrokerNice != wantNice {
		t.Errorf("broker nice %d, want %d (the deployed drop-in's)", got.BrokerNice, wantNice)
	}
	if got.Ratio != res.Ratio || got.Echo != res.Echo {
		t.Error("BENCH line differs from the returned result")
	}
}

func TestSyscallsCountsThisProcess(t *testing.T) {
	before, err := Syscalls(os.Getpid())
	if err != nil {
		t.Skipf("no /proc io: %v", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "sc")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		f.Write([]byte("x"))
	}
	f.Close()
	after, err := Syscalls(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 10 {
		t.Errorf("10 writes counted as %d system calls", after-before)
	}
	if _, err := Syscalls(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestUnitNice(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		text string
		want int
		ok   bool
	}{
		{"[Unit]\nNice=5\n[Service]\n# Nice=3\nNice = -10\nCPUWeight=400\n", -10, true},
		{"[Service]\nRestart=always\n", 0, true},
		{"[Service]\nNice=-21\n", 0, false},
		{"[Service]\nNice=high\n", 0, false},
	} {
		path := filepath.Join(dir, "unit.conf")
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := UnitNice(path)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("UnitNice(%q) = %d, %v; want %d, ok %v", c.text, got, err, c.want, c.ok)
		}
	}
	if _, err := UnitNice(filepath.Join(dir, "absent.conf")); err == nil {
		t.Error("a missing unit file was accepted")
	}
	// The deployed drop-in gives the broker priority over the gateway's threads.
	if n, err := UnitNice(filepath.Join(repoRoot(t), "deploy/systemd/mosquitto.service.d/scenepay.conf")); err != nil || n >= 0 {
		t.Errorf("deployed broker drop-in: Nice %d, %v; want a negative nice", n, err)
	}
}

// procNice reads what the kernel holds: a child started through nice(1)
// at a positive nice (allowed without privilege) shows it.
func TestProcNice(t *testing.T) {
	if _, err := exec.LookPath("nice"); err != nil {
		t.Skip("nice(1) not installed")
	}
	cmd := exec.Command("nice", "-n", "7", "sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := procNice(cmd.Process.Pid)
		if err == nil && n == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("procNice = %d, %v; want 7", n, err)
		}
		time.Sleep(10 * time.Millisecond) // nice(1) sets it before it execs sleep
	}
}
