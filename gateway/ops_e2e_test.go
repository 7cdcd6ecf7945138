package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/ingress"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/opapi"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// logSink collects every log line of a test gateway.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// opsGateway is engine + ingress + operator API in one process, wired as
// main wires them, with a steppable clock and every log line captured.
type opsGateway struct {
	dir    string
	master []byte
	token  string
	topics terminals.Topics
	offset atomic.Int64 // added to the wall clock, ns
	logs   *logSink
	reg    *prometheus.Registry
	eng    *engine.Engine
	in     *ingress.Ingress
	api    *opapi.Server
	base   string
}

func (g *opsGateway) now() time.Time { return time.Now().Add(time.Duration(g.offset.Load())) }

func startOps(t *testing.T) *opsGateway {
	t.Helper()
	g := &opsGateway{dir: t.TempDir(), master: []byte(testkit.RandHex(32)), token: testkit.RandHex(24),
		topics: testkit.Topics(), logs: &logSink{}}
	log := slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Anything that logs through the default logger is captured too.
	prev := slog.Default()
	slog.SetDefault(log)
	t.Cleanup(func() { slog.SetDefault(prev) })

	g.reg = prometheus.NewRegistry()
	g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := engine.DefaultConfig(g.dir)
	cfg.Topics = g.topics
	cfg.Shards = 4
	cfg.Clock = g.now
	cfg.Logger = log
	cfg.Metrics = engine.NewMetrics(g.reg)
	cfg.Journal = journal.Options{OnSync: cfg.Metrics.OnJournalSync}
	eng, err := engine.Open(cfg, g.master)
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	in, err := ingress.Start(ingress.Config{
		BrokerURL: testkit.MQTTURL(), ClientID: "gw-" + testkit.RandHex(4), Conns: 2, Topics: g.topics,
		Logger: log, Registerer: g.reg, StatusHandler: eng.HandleStatus,
	}, eng.HandleMessage)
	if err != nil {
		eng.Close()
		t.Fatalf("ingress: %v", err)
	}
	eng.SetPublisher(in)
	api := opapi.New(opapi.Config{Token: g.token, Gatherer: g.reg, Logger: log, Clock: g.now, Ready: in.Connected}, eng)
	if err := api.Listen("127.0.0.1:0"); err != nil {
		in.Close()
		eng.Close()
		t.Fatal(err)
	}
	g.eng, g.in, g.api, g.base = eng, in, api, "http://"+api.Addr()
	t.Cleanup(g.stop)
	time.Sleep(200 * time.Millisecond) // shared subscription in place
	return g
}

func (g *opsGateway) stop() {
	if g.eng == nil {
		return
	}
	g.in.Close()
	_ = g.api.Close()
	_ = g.eng.Close()
	g.eng = nil
}

// call makes an operator API call and decodes the JSON answer.
func (g *opsGateway) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, g.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+g.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func (g *opsGateway) mustCall(t *testing.T, method, path, body string, status int) map[string]any {
	t.Helper()
	got, m := g.call(t, method, path, body)
	if got != status {
		t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, status, m)
	}
	return m
}

func (g *opsGateway) balance(t *testing.T, key string) int64 {
	t.Helper()
	r, err := g.eng.Operate(context.Background(), core.Input{Account: key})
	if err != nil || !r.Found {
		t.Fatalf("read %s: %v found=%v", key, err, r.Found)
	}
	return r.Account.Balance
}

// request builds a request stamped with the gateway's (stepped) clock.
func (g *opsGateway) request(tm *testkit.Terminal, r terminals.Request) []byte {
	r.TS = g.now().UnixMilli()
	return tm.Request(r)
}

// exchange sends payload from sender and returns the reply as the reader
// terminal sees it; every other listener's copy of the reply is drained.
func exchange(t *testing.T, sender, reader *testkit.Terminal, payload []byte, others ...*testkit.Terminal) ([]byte, *terminals.Reply) {
	t.Helper()
	sender.Send(t, payload)
	raw := reader.Next(t, 10*time.Second)
	for _, o := range others {
		o.Next(t, 10*time.Second)
	}
	return raw, reader.Decode(t, raw)
}

// TestKeyRotationAndBlockThroughMosquitto: a rotation with overlap accepts
// the old key until the overlap ends and the new key throughout; replies go
// out under the key the request used; a blocked terminal is refused A7 and
// served again once unblocked; status and last seen reach the operator.
func TestKeyRotationAndBlockThroughMosquitto(t *testing.T) {
	g := startOps(t)
	const tid = "ROT-1"
	g.mustCall(t, "POST", "/v1/accounts", `{"inst":{"k":"county","id":"R1"},"balance":10000}`, 201)
	g.mustCall(t, "POST", "/v1/terminals", `{"tid":"ROT-1","kind":"stall","merchant":"M-1"}`, 201)
	k1, k2 := terminals.DeriveKey(g.master, tid, 1), terminals.DeriveKey(g.master, tid, 2)
	oldTm := testkit.Connect(t, testkit.MQTTURL(), g.topics, tid, k1)
	r1 := county("R1")

	_, rep := oldTm.Do(t, g.request(oldTm, purchase(1, 100, r1)))
	wantCode(t, rep, terminals.CodeApproved)

	// Status: the terminal announces itself (retained); last seen follows traffic.
	if tok := oldTm.Client.Publish(g.topics.Status(tid), 1, true, "online"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("status publish: %v", tok.Error())
	}
	t.Cleanup(func() { oldTm.Client.Publish(g.topics.Status(tid), 1, true, "").WaitTimeout(time.Second) })
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := g.mustCall(t, "GET", "/v1/terminals/"+tid, "", 200)
		if m["status"] == "online" {
			if m["last_seen"] == nil || m["key_version"] != 1.0 {
				t.Fatalf("terminal view %v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never became online: %v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}

	m := g.mustCall(t, "POST", "/v1/terminals/"+tid+"/rotate", `{"overlap":"10m"}`, 200)
	if m["key_version"] != 2.0 || m["prev_key_version"] != 1.0 {
		t.Fatalf("rotate: %v", m)
	}
	newTm := testkit.Connect(t, testkit.MQTTURL(), g.topics, tid, k2)

	// In the overlap: the old key is accepted and answered under the old key,
	// the new key under the new key.
	raw, rep := exchange(t, oldTm, oldTm, g.request(oldTm, purchase(2, 100, r1)), newTm)
	wantCode(t, rep, terminals.CodeApproved)
	if _, err := terminals.Open(k2, raw); err == nil {
		t.Fatal("reply to an old-key request was sealed under the new key")
	}
	_, rep = exchange(t, newTm, newTm, g.request(newTm, purchase(3, 100, r1)), oldTm)
	wantCode(t, rep, terminals.CodeApproved)
	if got := g.balance(t, "county:R1"); got != 9700 {
		t.Fatalf("balance %d, want 9700", got)
	}

	// After the overlap: the old key is refused (BAD_MAC, under the new key), no effect.
	g.offset.Store(int64(11 * time.Minute))
	raw, rep = exchange(t, oldTm, newTm, g.request(oldTm, purchase(4, 100, r1)), oldTm)
	wantCode(t, rep, terminals.CodeBadMAC)
	if _, err := terminals.Open(k1, raw); err == nil {
		t.Fatal("refusal after the overlap was sealed under the retired key")
	}
	_, rep = exchange(t, newTm, newTm, g.request(newTm, purchase(5, 100, r1)), oldTm)
	wantCode(t, rep, terminals.CodeApproved)
	if got := g.balance(t, "county:R1"); got != 9600 {
		t.Fatalf("balance %d after the overlap, want 9600", got)
	}

	// Blocked: refused A7 with no effect; unblocked: the same txn id goes through.
	m = g.mustCall(t, "POST", "/v1/terminals/"+tid+"/block", `{"blocked":true}`, 200)
	if m["blocked"] != true {
		t.Fatalf("block: %v", m)
	}
	blocked := g.request(newTm, purchase(6, 100, r1))
	_, rep = exchange(t, newTm, newTm, blocked, oldTm)
	wantCode(t, rep, terminals.CodeTerminalBlocked)
	if got := g.balance(t, "county:R1"); got != 9600 {
		t.Fatalf("blocked terminal moved money: balance %d", got)
	}
	g.mustCall(t, "POST", "/v1/terminals/"+tid+"/block", `{"blocked":false}`, 200)
	_, rep = exchange(t, newTm, newTm, blocked, oldTm)
	wantCode(t, rep, terminals.CodeApproved)
	if got := g.balance(t, "county:R1"); got != 9500 {
		t.Fatalf("balance %d after unblock, want 9500", got)
	}

	// The rotation is journaled: after a restart the terminal keeps version 2.
	g.stop()
	cfg := engine.DefaultConfig(g.dir)
	cfg.Shards = 4
	eng, err := engine.Open(cfg, g.master)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	e, ok := eng.Registry().Get(tid)
	if tr := e.Terminal(); !ok || tr.KeyVersion != 2 || tr.PrevKeyVersion != 1 || tr.Blocked {
		t.Fatalf("after restart: %+v", tr)
	}
}
