package engine

import (
	"testing"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

func (p *retainedPub) heldDeny(t *testing.T, topic string) DenyMessage {
	t.Helper()
	return openDeny(t, topic, p.get(topic))
}

func openDeny(t *testing.T, topic string, payload []byte) DenyMessage {
	t.Helper()
	body, err := terminals.Open(confstore.SigningKey(master, confstore.SigningKeyVersion), payload)
	if err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	m, err := terminals.DecodeDeny(body)
	if err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	return m
}

// wantFullThenEmptyDelta reads the next two retained publications: the
// full list at version 0 without cards, then the empty delta from 0 to 0.
func wantFullThenEmptyDelta(t *testing.T, e *Engine, rp *retainedPub) {
	t.Helper()
	full, delta := DenyTopicFull(e.cfg.Topics), DenyTopicDelta(e.cfg.Topics)
	m1 := rp.nextRetained(t)
	if m1.topic != full {
		t.Fatalf("first publication on %s, want the full list (%s)", m1.topic, full)
	}
	if f := openDeny(t, m1.topic, m1.payload); f.Kind != terminals.DenyKindFull || f.Version != 0 || len(f.Cards) != 0 {
		t.Fatalf("full list %+v, want version 0 without cards", f)
	}
	m2 := rp.nextRetained(t)
	if m2.topic != delta {
		t.Fatalf("second publication on %s, want the delta (%s)", m2.topic, delta)
	}
	if d := openDeny(t, m2.topic, m2.payload); d.Kind != terminals.DenyKindDelta || d.From != 0 || d.Version != 0 ||
		len(d.Add) != 0 || len(d.Remove) != 0 || len(d.StopFirstRides) != 0 {
		t.Fatalf("delta %+v, want from 0 to 0, empty", d)
	}
}

// TestDenyRepublishAtVersionZero: a gateway whose list was never changed
// (a fresh or wiped data directory) still publishes its list at start-up
// and at every reconnect, so retained messages of an earlier list (the
// broker kept them across the wipe) are replaced by the empty list at
// version 0: the full list first, then the delta from 0 to 0.
func TestDenyRepublishAtVersionZero(t *testing.T) {
	e, _ := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	if e.DenyVersion() != 0 {
		t.Fatalf("fresh engine at deny version %d", e.DenyVersion())
	}
	full, delta := DenyTopicFull(e.cfg.Topics), DenyTopicDelta(e.cfg.Topics)
	// What the broker still holds from an earlier data directory.
	stale := map[string][]byte{
		full:  terminals.Seal(e.conf.key, AppendDenyFull(nil, 500, []string{"county:OLD1", "county:OLD2"})),
		delta: terminals.Seal(e.conf.key, []byte(`{"v":1,"kind":"delta","from":500,"version":500,"add":[],"remove":[]}`)),
	}
	rp := newRetainedPubOver(stale)
	e.SetPublisher(rp) // start-up republish (a fresh engine has no config documents)
	wantFullThenEmptyDelta(t, e, rp)
	if f, d := rp.heldDeny(t, full), rp.heldDeny(t, delta); f.Version != 0 || len(f.Cards) != 0 || d.From != 0 || d.Version != 0 {
		t.Fatalf("the broker still holds full %+v delta %+v", f, d)
	}
	// A reconnect republishes the same.
	e.RepublishDeny()
	wantFullThenEmptyDelta(t, e, rp)
	select {
	case m := <-rp.ch:
		t.Fatalf("unexpected publication on %s", m.topic)
	default:
	}
}
