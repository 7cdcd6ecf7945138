package gateway_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/ingress"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

type harness struct {
	t      *testing.T
	dir    string
	master []byte
	topics terminals.Topics
	eng    *engine.Engine
	in     *ingress.Ingress
	m      *engine.Metrics
}

func startGateway(t *testing.T, h *harness) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := engine.DefaultConfig(h.dir)
	cfg.Topics = h.topics
	cfg.Shards = 4
	cfg.Idem.Window = 16
	cfg.Metrics = engine.NewMetrics(reg)
	eng, err := engine.Open(cfg, h.master)
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	in, err := ingress.Start(ingress.Config{
		BrokerURL: testkit.MQTTURL(), ClientID: "gw-" + testkit.RandHex(4), Conns: 2, Topics: h.topics,
	}, eng.HandleMessage)
	if err != nil {
		eng.Close()
		t.Fatalf("ingress: %v", err)
	}
	eng.SetPublisher(in)
	h.eng, h.in, h.m = eng, in, cfg.Metrics
	time.Sleep(200 * time.Millisecond) // shared subscription in place
}

func (h *harness) stop() {
	h.in.Close()
	if err := h.eng.Close(); err != nil {
		h.t.Errorf("engine close: %v", err)
	}
}

func (h *harness) open(t *testing.T, key string, class uint8, bal int64) {
	t.Helper()
	r, err := h.eng.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: key, Amount: bal, Class: class, Ref: "open-" + key})
	if err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open %s: %v %v", key, r.Code, err)
	}
}

func (h *harness) balance(t *testing.T, key string) int64 {
	t.Helper()
	r, err := h.eng.Operate(context.Background(), core.Input{Account: key})
	if err != nil || !r.Found {
		t.Fatalf("read %s: %v found=%v", key, err, r.Found)
	}
	return r.Account.Balance
}

func (h *harness) terminal(t *testing.T, tid string) *testkit.Terminal {
	t.Helper()
	if err := h.eng.RegisterTerminal(registry.Terminal{TID: tid, Kind: "stall", Merchant: "M-1", KeyVersion: 1}); err != nil {
		t.Fatalf("register: %v", err)
	}
	return testkit.Connect(t, testkit.MQTTURL(), h.topics, tid, terminals.DeriveKey(h.master, tid, 1))
}

// codeCount sums the requests counter of code over every message type,
// scene and instrument.
func codeCount(m *engine.Metrics, code terminals.Code) float64 {
	n := 0.0
	for _, typ := range []string{"purchase", "reversal", "balance", "heartbeat", "tap_in", "tap_out", "hold", "capture", "release", "qr_pay", "refund", "other"} {
		for _, scene := range []string{"bus", "stall", "kiosk", "none"} {
			for _, inst := range []string{"county", "bank", "ecny", "none"} {
				n += testutil.ToFloat64(m.Requests.WithLabelValues(typ, string(code), scene, inst))
			}
		}
	}
	return n
}

func county(id string) terminals.Instrument {
	return terminals.Instrument{Kind: terminals.InstCounty, ID: id}
}

func purchase(txn uint64, amt int64, in terminals.Instrument) terminals.Request {
	return terminals.Request{Type: terminals.TypePurchase, Txn: txn, Amt: amt, Inst: in}
}

func wantCode(t *testing.T, rep *terminals.Reply, want terminals.Code) {
	t.Helper()
	if rep.Code != want {
		t.Fatalf("code = %s %s, want %s %s", rep.Code, rep.Code.Name(), want, want.Name())
	}
}

// TestEndToEndThroughMosquitto drives the hot path through the machine's
// Mosquitto: terminal -> broker -> gateway -> journal -> reply.
func TestEndToEndThroughMosquitto(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	startGateway(t, h)
	h.open(t, "county:C1", 0, 1000)
	h.open(t, "ecny:W4", 4, 100_000) // class 4: single 500 CNY
	tm := h.terminal(t, "STALL-1")
	c1 := county("C1")

	// Approve.
	first := tm.Request(purchase(1, 200, c1))
	raw1, rep := tm.Do(t, first)
	wantCode(t, rep, terminals.CodeApproved)
	if rep.Bal == nil || *rep.Bal != 800 || rep.Auth == "" {
		t.Fatalf("approval reply %+v, want bal 800 and an auth ref", rep)
	}
	if got := h.balance(t, "county:C1"); got != 800 {
		t.Fatalf("balance %d, want 800", got)
	}

	// Duplicate: exact bytes, and a retry re-stamped with a new ts: byte-identical reply.
	raw, _ := tm.Do(t, first)
	if !bytes.Equal(raw, raw1) {
		t.Fatalf("duplicate reply differs:\n%q\n%q", raw, raw1)
	}
	p := purchase(1, 200, c1)
	p.TS = time.Now().UnixMilli() + 7
	raw, _ = tm.Do(t, tm.Request(p))
	if !bytes.Equal(raw, raw1) {
		t.Fatalf("re-stamped retry reply differs")
	}
	if got := h.balance(t, "county:C1"); got != 800 {
		t.Fatalf("duplicate debited again: balance %d", got)
	}

	// Same id, changed amount: refused with its own code; the first result stands.
	_, rep = tm.Do(t, tm.Request(purchase(1, 300, c1)))
	wantCode(t, rep, terminals.CodeIDConflict)
	if got := h.balance(t, "county:C1"); got != 800 {
		t.Fatalf("conflict changed balance: %d", got)
	}

	// Insufficient funds.
	_, rep = tm.Do(t, tm.Request(purchase(2, 5000, c1)))
	wantCode(t, rep, terminals.CodeInsufficientFunds)

	// A declined id may be reused for a corrected retry.
	_, rep = tm.Do(t, tm.Request(purchase(2, 100, c1)))
	wantCode(t, rep, terminals.CodeApproved)

	// e-CNY class limit.
	w4 := terminals.Instrument{Kind: terminals.InstECNY, ID: "W4"}
	_, rep = tm.Do(t, tm.Request(purchase(3, 60_000, w4)))
	wantCode(t, rep, terminals.CodeLimitSingle)
	_, rep = tm.Do(t, tm.Request(purchase(4, 50_000, w4)))
	wantCode(t, rep, terminals.CodeApproved)

	// Tampered MAC: refused, nothing journaled, no balance change.
	lsn := h.eng.Journal().LastLSN()
	bad := tm.Request(purchase(5, 100, c1))
	bad[10] ^= 0x01
	_, rep = tm.Do(t, bad)
	wantCode(t, rep, terminals.CodeBadMAC)
	if rep.Txn != 0 {
		t.Fatalf("BAD_MAC reply echoed an unauthenticated txn %d", rep.Txn)
	}
	if h.eng.Journal().LastLSN() != lsn {
		t.Fatal("a message with a bad MAC reached the journal")
	}
	if got := h.balance(t, "county:C1"); got != 700 {
		t.Fatalf("balance %d, want 700", got)
	}
	if n := codeCount(h.m, terminals.CodeBadMAC); n != 1 {
		t.Fatalf("BAD_MAC counted %v times", n)
	}

	// Oversize and malformed: coded and counted.
	_, rep = tm.Do(t, bytes.Repeat([]byte("x"), terminals.MaxPayload+1))
	wantCode(t, rep, terminals.CodeOversize)
	_, rep = tm.Do(t, tm.Seal([]byte(`{"v":1,"type":"purchase",`)))
	wantCode(t, rep, terminals.CodeMalformed)
	_, rep = tm.Do(t, []byte("no frame at all"))
	wantCode(t, rep, terminals.CodeMalformed)
	if n := codeCount(h.m, terminals.CodeMalformed); n != 2 {
		t.Fatalf("MALFORMED counted %v times, want 2", n)
	}

	// Payload terminal id must equal the topic's.
	other := purchase(6, 100, c1)
	other.V, other.TID, other.TS = 1, "STALL-2", time.Now().UnixMilli()
	_, rep = tm.Do(t, tm.Seal(other.AppendJSON(nil)))
	wantCode(t, rep, terminals.CodeIDMismatch)

	// Clock skew: a new request is refused; a stale copy of a stored
	// request still gets its stored reply.
	sk := purchase(7, 100, c1)
	sk.TS = time.Now().Add(-time.Hour).UnixMilli()
	_, rep = tm.Do(t, tm.Request(sk))
	wantCode(t, rep, terminals.CodeClockSkew)
	old := purchase(1, 200, c1)
	old.TS = time.Now().Add(-time.Hour).UnixMilli()
	raw, _ = tm.Do(t, tm.Request(old))
	if !bytes.Equal(raw, raw1) {
		t.Fatalf("stale duplicate was not answered with the stored reply")
	}

	// Reversal voids once; reversal before original refuses the late original.
	_, rep = tm.Do(t, tm.Request(purchase(8, 50, c1)))
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, tm.Request(terminals.Request{Type: terminals.TypeReversal, Txn: 9, Orig: 8, Amt: 50, Inst: c1}))
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, tm.Request(terminals.Request{Type: terminals.TypeReversal, Txn: 10, Orig: 8, Amt: 50, Inst: c1}))
	wantCode(t, rep, terminals.CodeApproved)
	if got := h.balance(t, "county:C1"); got != 700 {
		t.Fatalf("after reversal balance %d, want 700", got)
	}
	_, rep = tm.Do(t, tm.Request(terminals.Request{Type: terminals.TypeReversal, Txn: 12, Orig: 11, Amt: 40, Inst: c1}))
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, tm.Request(purchase(11, 40, c1)))
	wantCode(t, rep, terminals.CodeAlreadyReversed)
	if got := h.balance(t, "county:C1"); got != 700 {
		t.Fatalf("late original took effect: balance %d", got)
	}

	// Balance inquiry.
	_, rep = tm.Do(t, tm.Request(terminals.Request{Type: terminals.TypeBalance, Txn: 13, Inst: c1}))
	wantCode(t, rep, terminals.CodeApproved)
	if rep.Bal == nil || *rep.Bal != 700 {
		t.Fatalf("balance inquiry %+v", rep)
	}

	// Replayed old txn id: move past the window (16), then replay txn 1.
	for txn := uint64(14); txn < 40; txn++ {
		_, rep = tm.Do(t, tm.Request(purchase(txn, 1, c1)))
		wantCode(t, rep, terminals.CodeApproved)
	}
	_, rep = tm.Do(t, first)
	wantCode(t, rep, terminals.CodeReplay)
	if got := h.balance(t, "county:C1"); got != 700-26 {
		t.Fatalf("balance %d, want %d", got, 700-26)
	}

	// Restart: state and stored replies survive.
	last := tm.Request(purchase(40, 5, c1))
	rawLast, rep := tm.Do(t, last)
	wantCode(t, rep, terminals.CodeApproved)
	_, rep = tm.Do(t, tm.Request(terminals.Request{Type: terminals.TypeReversal, Txn: 42, Orig: 41, Amt: 9, Inst: c1}))
	wantCode(t, rep, terminals.CodeApproved)
	h.stop()
	startGateway(t, h)
	defer h.stop()
	raw, _ = tm.Do(t, last)
	if !bytes.Equal(raw, rawLast) {
		t.Fatalf("after restart the duplicate reply differs:\n%q\n%q", raw, rawLast)
	}
	if got := h.balance(t, "county:C1"); got != 700-31 {
		t.Fatalf("after restart balance %d, want %d", got, 700-31)
	}
	// The tombstone survived: the late original 41 is still refused.
	_, rep = tm.Do(t, tm.Request(purchase(41, 9, c1)))
	wantCode(t, rep, terminals.CodeAlreadyReversed)
	if got := h.balance(t, "county:C1"); got != 700-31 {
		t.Fatalf("late original after restart took effect: balance %d", got)
	}
}

// After a broker restart the gateway reconnects and resubscribes by itself.
func TestBrokerRestart(t *testing.T) {
	m := testkit.StartMosquitto(t, "allow_anonymous true\nset_tcp_nodelay true\npersistence false\n")
	h := &harness{t: t, dir: t.TempDir(), master: []byte(testkit.RandHex(32)), topics: testkit.Topics()}
	reg := prometheus.NewRegistry()
	cfg := engine.DefaultConfig(h.dir)
	cfg.Topics = h.topics
	cfg.Metrics = engine.NewMetrics(reg)
	eng, err := engine.Open(cfg, h.master)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingress.Start(ingress.Config{BrokerURL: m.URL(), ClientID: "gw", Conns: 2, Topics: h.topics, Registerer: reg}, eng.HandleMessage)
	if err != nil {
		t.Fatal(err)
	}
	eng.SetPublisher(in)
	h.eng, h.in = eng, in
	defer h.stop()
	h.open(t, "county:C9", 0, 1000)
	if err := eng.RegisterTerminal(registry.Terminal{TID: "BUS-9", Kind: "bus", Merchant: "M-BUS", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	tm := testkit.Connect(t, m.URL(), h.topics, "BUS-9", terminals.DeriveKey(h.master, "BUS-9", 1))
	time.Sleep(200 * time.Millisecond)
	_, rep := tm.Do(t, tm.Request(purchase(1, 100, county("C9"))))
	wantCode(t, rep, terminals.CodeApproved)

	m.Stop()
	time.Sleep(300 * time.Millisecond)
	if in.Connected() == nil {
		t.Fatal("ingress still reports a connection with the broker down")
	}
	m.Start()
	// The terminal retries the same request until the gateway is back.
	req := tm.Request(purchase(2, 100, county("C9")))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if tm.Client.IsConnectionOpen() {
			tm.Client.Publish(h.topics.Request("BUS-9"), 1, false, req).WaitTimeout(time.Second)
		}
		select {
		case raw := <-tm.Replies:
			rep := tm.Decode(t, raw)
			if rep.Txn != 2 {
				// QoS 1 may deliver an earlier reply again around the
				// restart; a terminal drops a reply it is not waiting
				// for (protocol section 8.2).
				continue
			}
			wantCode(t, rep, terminals.CodeApproved)
			if got := h.balance(t, "county:C9"); got != 800 {
				t.Fatalf("balance %d, want 800", got)
			}
			if n := testutil.ToFloat64(mustCounter(t, reg, "scenepay_gateway_mqtt_reconnects_total")); n < 1 {
				t.Fatalf("reconnects counted %v", n)
			}
			return
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatal("no approval within 20 s after the broker restart")
		}
	}
}

func mustCounter(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "copy"})
			c.Add(mf.Metric[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}
