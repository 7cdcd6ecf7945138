package engine

import (
	"errors"
	"sync"
	"testing"
	"time"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// retainedPub is a fakePub that also records retained publications: in
// order, payload included (nextRetained), and over what a broker already holds
// (held: the retained store, topic -> last payload).
type retainedPub struct {
	*fakePub
	mu   sync.Mutex
	held map[string][]byte
	ch   chan retainedMsg
}

type retainedMsg struct {
	topic   string
	payload []byte
}

func newRetainedPub() *retainedPub { return newRetainedPubOver(map[string][]byte{}) }

// newRetainedPubOver records over held, what a broker already holds.
func newRetainedPubOver(held map[string][]byte) *retainedPub {
	return &retainedPub{fakePub: newFakePub(), held: held, ch: make(chan retainedMsg, 64)}
}

func (p *retainedPub) PublishRetained(topic string, payload []byte) error {
	payload = append([]byte(nil), payload...)
	p.mu.Lock()
	p.held[topic] = payload
	p.mu.Unlock()
	p.ch <- retainedMsg{topic, payload}
	return nil
}

// get is the payload held on topic.
func (p *retainedPub) get(topic string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[topic]
}

// nextRetained is the next retained publication (fakePub's next is the
// next plain one).
func (p *retainedPub) nextRetained(t *testing.T) retainedMsg {
	t.Helper()
	select {
	case m := <-p.ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no retained publication")
		return retainedMsg{}
	}
}

// wait is the topic of the next retained publication.
func (p *retainedPub) wait(t *testing.T) string {
	t.Helper()
	return p.nextRetained(t).topic
}

// waitConfig is wait, skipping the deny list's publications (the start-up
// republish publishes the deny list too, also at version 0).
func (p *retainedPub) waitConfig(t *testing.T) string {
	t.Helper()
	for {
		s := p.wait(t)
		if s != DenyTopicFull(terminals.DefaultTopics) && s != DenyTopicDelta(terminals.DefaultTopics) {
			return s
		}
	}
}

func TestConfigSurvivesRestartAndIsPublished(t *testing.T) {
	dir := t.TempDir()
	e, _ := openEngine(t, dir, vfs.Default)
	rp := newRetainedPub()
	e.SetPublisher(rp)
	for i, body := range []string{transitDoc(t, 200), transitDoc(t, 250)} {
		d, err := e.PutConfig("transit", []byte(body))
		if err != nil || d.Version != uint64(i+1) {
			t.Fatalf("put %d: %+v %v", i, d, err)
		}
		if got := rp.waitConfig(t); got != "scp/v1/g/bus/cfg" {
			t.Fatalf("published on %s", got)
		}
	}
	env, err := confstore.Open(confstore.SigningKey(master, 1), rp.get("scp/v1/g/bus/cfg"))
	if err != nil || env.Version != 2 || string(env.Doc) != transitDoc(t, 250) {
		t.Fatalf("retained: %+v %v", env, err)
	}
	var bad *confstore.Error
	if _, err := e.PutConfig("nope", []byte(`{}`)); !errors.As(err, &bad) || bad.Code != confstore.ErrUnknownName {
		t.Fatalf("unknown name: %v", err)
	}
	if err := e.Close(); err != nil { // snapshot holds transit v2
		t.Fatal(err)
	}

	e2, _ := openEngine(t, dir, vfs.Default)
	if _, err := e2.PutConfig("limits", core.EncodeLimits(core.DefaultConfig().ECNY)); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.PutConfig("transit", []byte(transitDoc(t, 300))); err != nil {
		t.Fatal(err)
	}
	// Crash: no closing snapshot; the journal has the two changes.
	crash(e2)

	e3, _ := openEngine(t, dir, vfs.Default)
	defer e3.Close()
	if d, ok := e3.Config("transit"); !ok || d.Version != 3 || string(d.Body) != transitDoc(t, 300) {
		t.Fatalf("transit after restart: %+v", d)
	}
	if d, ok := e3.Config("limits"); !ok || d.Version != 1 {
		t.Fatalf("limits after restart: %+v", d)
	}
	if got := testutilCount(e3.m.ConfigVersion.WithLabelValues("transit")); got != 3 {
		t.Fatalf("version gauge = %v", got)
	}
	// The start-up republish sends every current document again.
	rp3 := newRetainedPub()
	e3.SetPublisher(rp3)
	seen := map[string]bool{rp3.waitConfig(t): true, rp3.waitConfig(t): true}
	if !seen["scp/v1/g/bus/cfg"] || !seen["scp/v1/g/all/cfg"] {
		t.Fatalf("republished %v", seen)
	}
}

func TestHeartbeatReportsClearLagging(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	if err := e.RegisterTerminal(registry.Terminal{TID: "T1", Kind: "bus", Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.RegisterTerminal(registry.Terminal{TID: "S1", Kind: "stall", Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutConfig("transit", []byte(transitDoc(t, 200))); err != nil {
		t.Fatal(err)
	}
	cur, list, total := e.ConfigLagging("transit")
	if cur != 1 || total != 1 || list[0].TID != "T1" || list[0].Reported != 0 {
		t.Fatalf("before report: %d %d %+v", cur, total, list)
	}
	hb := terminals.Request{V: 1, Type: terminals.TypeHeartbeat, TID: "T1", TS: time.Now().UnixMilli()}
	hb.Cfg.Add("transit", 1)
	e.HandleMessage(topic, signer.Seal(nil, hb.AppendJSON(nil)))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("heartbeat: %s", rep.Code)
	}
	if _, _, total := e.ConfigLagging("transit"); total != 0 {
		t.Fatalf("after report: %d lagging", total)
	}
	if n := e.configLaggingCounts(); n["transit"] != 0 || n["limits"] != 0 {
		t.Fatalf("lagging counts %v", n)
	}
}
