package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// denyMsg reads the retained deny message on topic as a reader would:
// MAC under the config-signing key first, then the wire contract's strict
// decode; the body is the canonical encoding of what it decodes to.
func denyMsg(t *testing.T, rp *retainedPub, topic string) DenyMessage {
	t.Helper()
	body, err := terminals.Open(confstore.SigningKey(master, confstore.SigningKeyVersion), rp.get(topic))
	if err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	m, err := terminals.DecodeDeny(body)
	if err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	if got := m.AppendJSON(nil); !bytes.Equal(got, body) {
		t.Fatalf("%s: body %s is not canonical (%s)", topic, body, got)
	}
	return m
}

// The engine's deny-list group is the wire contract's.
func TestDenyGroupIsTheWireGroup(t *testing.T) {
	if DenyGroup != terminals.DenyGroup || DenyCfgName != terminals.DenyCfgName {
		t.Fatalf("engine group %q cfg %q, wire group %q cfg %q", DenyGroup, DenyCfgName, terminals.DenyGroup, terminals.DenyCfgName)
	}
}

func TestDenyListChangesPublishReportAndSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	e, _ := openEngine(t, dir, vfs.Default)
	rp := newRetainedPub()
	e.SetPublisher(rp)
	full, delta := DenyTopicFull(e.cfg.Topics), DenyTopicDelta(e.cfg.Topics)
	// The start-up republish, at version 0 (a fresh engine has no config
	// documents): the full list, then the delta.
	if a, b := rp.wait(t), rp.wait(t); a != full || b != delta {
		t.Fatalf("start-up republish on %s, %s", a, b)
	}
	for _, tm := range []registry.Terminal{{TID: "T1", Kind: "bus", Merchant: "M", KeyVersion: 1},
		{TID: "T2", Kind: "bus", Merchant: "M", KeyVersion: 1}, {TID: "S1", Kind: "stall", Merchant: "M", KeyVersion: 1}} {
		if err := e.RegisterTerminal(tm); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := e.DenyAdd("county:C1"); err != nil || v != 1 {
		t.Fatalf("add: %d %v", v, err)
	}
	if v, err := e.DenyAdd("county:C1"); err != nil || v != 1 {
		t.Fatalf("add again: %d %v (no new version)", v, err)
	}
	e.denyFlags("county:C2", uint16(transit.FlagDeny)) // an upload left debt
	if v, err := e.DenyRemove("county:C1"); err != nil || v != 3 {
		t.Fatalf("remove: %d %v", v, err)
	}
	if _, err := e.DenyAdd("bad\ncard"); err != ErrDenyBadCard {
		t.Fatalf("bad card: %v", err)
	}
	// The retained delta is cumulative from the last full list (the start's,
	// at version 0): C2 listed, C1 removed.
	m := denyMsg(t, rp, delta)
	if m.Kind != "delta" || m.From != 0 || m.Version != 3 || !slices.Equal(m.Add, []string{"county:C2"}) || !slices.Equal(m.Remove, []string{"county:C1"}) {
		t.Fatalf("delta %+v", m)
	}
	if d := e.DenyDelta(2); !slices.Equal(d.Remove, []string{"county:C1"}) || len(d.Add) != 0 || d.To != 3 {
		t.Fatalf("delta since 2: %+v", d)
	}
	cur, list, total := e.DenyLagging()
	if cur != 3 || total != 2 || list[0].TID != "T1" || list[1].TID != "T2" {
		t.Fatalf("lagging before reports: %d %d %+v", cur, total, list)
	}
	hb := terminals.Request{V: 1, Type: terminals.TypeHeartbeat, TID: "T1", TS: time.Now().UnixMilli()}
	if err := hb.Cfg.Add(DenyCfgName, 3); err != nil {
		t.Fatal(err)
	}
	e.HandleMessage(topic, signer.Seal(nil, hb.AppendJSON(nil)))
	if rep := decode(t, rp.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("heartbeat: %s", rep.Code)
	}
	if _, list, total := e.DenyLagging(); total != 1 || list[0].TID != "T2" {
		t.Fatalf("lagging after T1 reported: %d %+v", total, list)
	}
	if err := e.Close(); err != nil { // snapshot holds the list and T1's report
		t.Fatal(err)
	}

	e2, _ := openEngine(t, dir, vfs.Default)
	rp2 := newRetainedPub()
	e2.SetPublisher(rp2)
	if v, err := e2.DenyAdd("county:C3"); err != nil || v != 4 {
		t.Fatalf("after restart: %d %v", v, err)
	}
	if !e2.DenyListed("county:C2") || e2.DenyListed("county:C1") {
		t.Fatal("restart lost the list")
	}
	if _, list, total := e2.DenyLagging(); total != 2 || list[0].Reported != 3 {
		t.Fatalf("lagging after restart: %d %+v", total, list)
	}
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	// Journal only (no snapshot): the entries replay to the same list.
	e3, _ := openEngine(t, dir, vfs.Default)
	defer e3.Close()
	if e3.DenyVersion() != 4 || !e3.DenyListed("county:C3") {
		t.Fatalf("replayed version %d", e3.DenyVersion())
	}
	_ = full
}

// TestDenyFullListEvery: after DenyFullEvery changes the full list moves
// and the delta starts from it, so a reader older than it takes the full
// list and then the delta.
func TestDenyFullListEvery(t *testing.T) {
	e, _ := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	rp := newRetainedPub()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the fake's notification channel is bounded: drain it
		for {
			select {
			case <-rp.ch:
			case <-stop:
				return
			}
		}
	}()
	e.SetPublisher(rp)
	full, delta := DenyTopicFull(e.cfg.Topics), DenyTopicDelta(e.cfg.Topics)
	for i := 0; i < DenyFullEvery+2; i++ {
		if _, err := e.DenyAdd("county:K" + string(rune('A'+i%26)) + itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	f, d := denyMsg(t, rp, full), denyMsg(t, rp, delta)
	// The start's republish may land at any version (it runs in the
	// background); the rule holds wherever it did: every version is an
	// add, so the full list at F has F cards, and the delta runs from F
	// with fewer than DenyFullEvery versions.
	if f.Kind != "full" || f.Version == 0 || len(f.Cards) != int(f.Version) {
		t.Fatalf("full: kind %s version %d cards %d", f.Kind, f.Version, len(f.Cards))
	}
	if d.From != f.Version || d.Version != DenyFullEvery+2 || d.Version-d.From >= DenyFullEvery || len(d.Add) != int(d.Version-d.From) {
		t.Fatalf("delta: from %d version %d add %d", d.From, d.Version, len(d.Add))
	}
	// A reader that applies full then delta holds exactly the list.
	have := map[string]bool{}
	for _, c := range f.Cards {
		have[c] = true
	}
	for _, c := range d.Add {
		have[c] = true
	}
	if len(have) != DenyFullEvery+2 {
		t.Fatalf("reader holds %d cards", len(have))
	}
}

func itoa(i int) string { return string(appendUint(nil, uint64(i))) }

func appendUint(b []byte, v uint64) []byte {
	if v >= 10 {
		b = appendUint(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

// TestFirstRideBudget: uploads of an unknown card book the route's fare as
// first-ride loss; once the day's budget (50 CNY by default) is spent the
// delta tells readers to stop first rides on the route; the book survives
// a restart from the journal alone.
func TestFirstRideBudget(t *testing.T) {
	dir := t.TempDir()
	e, _ := openEngine(t, dir, vfs.Default)
	rp := newRetainedPub()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-rp.ch:
			case <-stop:
				return
			}
		}
	}()
	e.SetPublisher(rp)
	at := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	var taps []transit.Tap
	for i := 0; i < 25; i++ { // B1: 200 fen each, budget 5000: spent at the 25th
		taps = append(taps, transit.Tap{Kind: transit.TapIn, Route: "B1", At: at.Add(time.Duration(i) * time.Minute), Reader: "T1", Seq: uint64(i + 1)})
	}
	e.firstRideLosses(taps[:24])
	e.deny.lmu.Lock()
	loss, stopped := e.deny.risk.Loss["B1"], e.deny.stop["B1"]
	e.deny.lmu.Unlock()
	if loss != 4800 || stopped {
		t.Fatalf("after 24 rides: loss %d stopped %t", loss, stopped)
	}
	e.firstRideLosses(taps[24:])
	m := denyMsg(t, rp, DenyTopicDelta(e.cfg.Topics))
	if !slices.Equal(m.StopFirstRides, []string{"B1"}) || m.StopDay == 0 {
		t.Fatalf("delta after the budget is spent: %+v", m)
	}
	// Restart from the journal alone: remove the snapshot Close writes.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	e2, _ := openEngine(t, dir, vfs.Default)
	defer e2.Close()
	e2.deny.lmu.Lock()
	loss, stopped = e2.deny.risk.Loss["B1"], e2.deny.stop["B1"]
	e2.deny.lmu.Unlock()
	if loss != 5000 || !stopped {
		t.Fatalf("after restart: loss %d stopped %t", loss, stopped)
	}
}

// The gateway refuses a deny-list add that would make a full list readers
// refuse (over terminals.DenyPayloadMax), so the retained full list stays
// one every reader takes; the bound holds after a snapshot restart too.
func TestDenyListStaysWithinReaderBounds(t *testing.T) {
	dir := t.TempDir()
	e, _ := openEngine(t, dir, vfs.Default)
	rp := newRetainedPub()
	e.SetPublisher(rp)
	card := func(i int) string { return fmt.Sprintf("county:%057d", i) } // 64 bytes, the longest key
	// Fill the list in memory close to the body limit (journaling 15,000
	// operator adds one by one would only make the test slow).
	e.deny.lmu.Lock()
	n := 0
	for ; denyFullOverhead+e.deny.cardBytes+2*(terminals.DenyEntryJSONLen(card(n))+1) <= terminals.DenyPayloadMax; n++ {
		if err := e.deny.apply(denyOpAdd, card(n)); err != nil {
			e.deny.lmu.Unlock()
			t.Fatal(err)
		}
	}
	e.deny.lmu.Unlock()
	// One more fits; the one after it would not.
	if _, err := e.DenyAdd(card(n)); err != nil {
		t.Fatalf("add %d: %v", n, err)
	}
	if _, err := e.DenyAdd(card(n + 1)); !errors.Is(err, transit.ErrDenyFull) {
		t.Fatalf("add past the readers' body limit: %v, want ErrDenyFull", err)
	}
	// What the gateway holds is a full list a reader accepts.
	body := AppendDenyFull(nil, e.DenyVersion(), e.DenyDelta(e.DenyVersion()+1).Add)
	m, err := terminals.DecodeDeny(body)
	if err != nil || len(m.Cards) != n+1 {
		t.Fatalf("full list of %d cards, %d bytes: %d cards, %v", n+1, len(body), len(m.Cards), err)
	}
	// A removal makes room again.
	if _, err := e.DenyRemove(card(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.DenyAdd(card(n + 1)); err != nil {
		t.Fatalf("add after a removal: %v", err)
	}
	if _, err := e.DenyAdd(card(n + 2)); !errors.Is(err, transit.ErrDenyFull) {
		t.Fatalf("add past the limit again: %v", err)
	}
	// After a snapshot and a restart the count is rebuilt, not reset.
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e2, _ := openEngine(t, dir, vfs.Default)
	defer e2.Close()
	if _, err := e2.DenyAdd(card(n + 2)); !errors.Is(err, transit.ErrDenyFull) {
		t.Fatalf("after restart: %v, want ErrDenyFull", err)
	}
}

// TestDenyVersionBaseAcrossReset: with DenyVersionBase a new data
// directory's list starts at a version from the clock, kept across
// restarts (snapshot, or the journal alone). A bus reader that holds a
// version of a list from before a reset of the gateway's data (here a list
// that counted from 0, as every list did before the base) lies below the
// new base, so it is told to take the new full list. Without the base the
// new list's versions pass the reader's, and the reader would apply a delta
// to its stale list, missing the cards listed before it.
func TestDenyVersionBaseAcrossReset(t *testing.T) {
	t1 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	open := func(dir string, at time.Time, based bool) *Engine {
		t.Helper()
		cfg := DefaultConfig(dir)
		cfg.Shards, cfg.SnapshotEvery, cfg.DenyVersionBase = 2, 0, based
		cfg.Clock = func() time.Time { return at }
		e, err := Open(cfg, master)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return e
	}
	add := func(e *Engine, cards ...string) {
		t.Helper()
		for _, c := range cards {
			if _, err := e.DenyAdd(c); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The data directory that will be lost: a list counting from 0.
	e := open(t.TempDir(), t1, false)
	add(e, "county:A1", "county:A2")
	old := e.DenyVersion() // what an offline reader holds
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// The new directory, an hour later: based on the clock.
	dir := t.TempDir()
	at := t1.Add(time.Hour)
	e = open(dir, at, true)
	base := uint64(at.Unix()) << denyBaseShift
	if v := e.DenyVersion(); v != base {
		t.Fatalf("new list at version %d, want the base %d", v, base)
	}
	add(e, "county:B1", "county:B2", "county:B3")
	d := e.DenyDelta(old)
	if !d.Full || !slices.Equal(d.Add, []string{"county:B1", "county:B2", "county:B3"}) {
		t.Fatalf("a reader of the lost list (version %d) gets %+v, want the whole new list", old, d)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// A restart keeps the base: from the snapshot, and from the journal
	// alone. Another base is never taken for a list in use.
	for _, how := range []string{"snapshot", "journal alone"} {
		if how == "journal alone" {
			if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
				t.Fatal(err)
			}
		}
		e = open(dir, at.Add(time.Hour), true)
		if v := e.DenyVersion(); v != base+3 || !e.DenyListed("county:B2") {
			t.Fatalf("restart (%s): version %d, want %d", how, v, base+3)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A base entry replays only as written, and only onto a list not in use.
func TestDenyBaseEntryReplay(t *testing.T) {
	e, _ := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	entry := func(source byte, card string) []byte {
		return appendDenyEntry(nil, denyOpBase, source, time.Now(), card)[1:]
	}
	base := string([]byte{0, 0, 1, 0, 0, 0, 0, 0})
	for name, p := range map[string][]byte{
		"short base":  entry(0, base[:7]),
		"a source":    entry(DenySourceOperator, base),
		"extra bytes": append(entry(0, base), 1),
	} {
		if err := e.applyDenyEntry(p); !errors.Is(err, errEntry) {
			t.Errorf("%s: %v, want errEntry", name, err)
		}
	}
	if err := e.applyDenyEntry(entry(0, base)); err != nil || e.DenyVersion() != 1<<40 {
		t.Fatalf("base entry: %v, version %d", err, e.DenyVersion())
	}
	if err := e.applyDenyEntry(entry(0, base)); !errors.Is(err, errEntry) {
		t.Fatalf("a second base entry: %v, want errEntry", err)
	}
}
