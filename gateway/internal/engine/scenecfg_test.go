package engine

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/scene/hospital"
	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// transitDoc is the default fare table with route B1's flat fare set.
func transitDoc(t *testing.T, b1Fare int64) string {
	t.Helper()
	c := core.DefaultTransit().Config()
	c.Routes[0].Fare = b1Fare
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func openCard(t *testing.T, e *Engine, id string, bal int64) {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "county:" + id, Amount: bal, Ref: "o-" + id})
	if err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open %s: %v %v", id, r.Code, err)
	}
}

func cardBalance(t *testing.T, e *Engine, id string) int64 {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Account: "county:" + id})
	if err != nil || !r.Found {
		t.Fatalf("read %s: %v", id, err)
	}
	return r.Account.Balance
}

// tapB1 taps card id in on the flat route B1 and returns the charged fare.
func tapB1(t *testing.T, e *Engine, p *fakePub, txn uint64, id string) int64 {
	t.Helper()
	r := terminals.Request{V: 1, Type: terminals.TypeTapIn, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(),
		Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: id}, Route: "B1"}
	rep, _ := send(t, e, p, r)
	if rep.Code != terminals.CodeApproved || rep.Amt == nil {
		t.Fatalf("tap %s: %s %v", id, rep.Code, rep.Amt)
	}
	return *rep.Amt
}

// A new fare table reaches every shard before PutConfig returns: the next
// tap pays it; a restart (crash, journal replay) keeps it; taps charged
// under the old table replay to the same balances (records carry their
// decisions); an invalid table is refused and changes nothing.
func TestTransitFarePushLiveAndAfterRestart(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 10_000)
	for _, id := range []string{"C2", "C3", "C4"} {
		openCard(t, e, id, 10_000)
	}
	if got := tapB1(t, e, p, 1, "C1"); got != 200 {
		t.Fatalf("default fare %d, want 200", got)
	}
	if _, err := e.PutConfig("transit", []byte(transitDoc(t, 350))); err != nil {
		t.Fatal(err)
	}
	if got := tapB1(t, e, p, 2, "C2"); got != 350 {
		t.Fatalf("fare after push %d, want 350", got)
	}
	// Invalid: an unknown field, and a negative fare. Refused, version kept.
	for _, body := range []string{
		strings.Replace(transitDoc(t, 400), `{`, `{"fares_typo":1,`, 1),
		transitDoc(t, -5),
	} {
		var ce *confstore.Error
		if _, err := e.PutConfig("transit", []byte(body)); !errors.As(err, &ce) || ce.Code != confstore.ErrInvalid {
			t.Fatalf("invalid doc: %v", err)
		}
	}
	if d, _ := e.Config("transit"); d.Version != 1 {
		t.Fatalf("version after refusals %d, want 1", d.Version)
	}
	if got := tapB1(t, e, p, 3, "C3"); got != 350 {
		t.Fatalf("fare after refused docs %d, want 350", got)
	}
	want := map[string]int64{"C1": 9_800, "C2": 9_650, "C3": 9_650}
	// Crash: no closing snapshot, the journal holds the change and the taps.
	crash(e)

	e2, p2 := openEngine(t, dir, vfs.Default)
	for id, b := range want {
		if got := cardBalance(t, e2, id); got != b {
			t.Fatalf("replayed balance of %s %d, want %d", id, got, b)
		}
	}
	if got := tapB1(t, e2, p2, 4, "C4"); got != 350 {
		t.Fatalf("fare after replay %d, want 350", got)
	}
	// Snapshot path: Close snapshots, the next start restores the rules
	// from the snapshot's documents.
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	e3, p3 := openEngine(t, dir, vfs.Default)
	defer e3.Close()
	openCard(t, e3, "C5", 10_000)
	if got := tapB1(t, e3, p3, 5, "C5"); got != 350 {
		t.Fatalf("fare after snapshot restore %d, want 350", got)
	}
	want["C4"] = 9_650
	for id, b := range want {
		if got := cardBalance(t, e3, id); got != b {
			t.Fatalf("balance of %s after snapshot %d, want %d", id, got, b)
		}
	}
}

// The limits document changes the e-CNY class table on every shard.
func TestLimitsPush(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	setup(t, e, 0)
	if r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "ecny:W1", Amount: 50_000, Ref: "w", Class: 4}); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open wallet: %v %v", r.Code, err)
	}
	pay := func(txn uint64, amt int64) terminals.Code {
		r := terminals.Request{V: 1, Type: terminals.TypePurchase, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(), Amt: amt,
			Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: "W1"}}
		rep, _ := send(t, e, p, r)
		return rep.Code
	}
	if c := pay(1, 30_000); c != terminals.CodeApproved { // class 4 single: 500 CNY
		t.Fatalf("300 CNY under defaults: %s", c)
	}
	tab := core.DefaultConfig().ECNY
	tab[4].Single = 20_000
	if _, err := e.PutConfig("limits", core.EncodeLimits(tab)); err != nil {
		t.Fatal(err)
	}
	if c := pay(2, 15_000); c != terminals.CodeApproved {
		t.Fatalf("150 CNY under the new single limit: %s", c)
	}
	if c := pay(3, 20_001); c == terminals.CodeApproved {
		t.Fatal("a payment over the new single limit was approved")
	}
	for _, body := range []string{
		`{"classes":[]}`,
		`{"classes":[{"class":1,"balance_fen":1,"single_fen":1,"daily_fen":1}]}`,
		strings.Replace(string(core.EncodeLimits(tab)), `"class":4`, `"class":3`, 1),
		strings.Replace(string(core.EncodeLimits(tab)), `"single_fen":20000`, `"single_fen":-1`, 1),
	} {
		var ce *confstore.Error
		if _, err := e.PutConfig("limits", []byte(body)); !errors.As(err, &ce) || ce.Code != confstore.ErrInvalid {
			t.Fatalf("invalid limits %s: %v", body, err)
		}
	}
	for _, s := range e.shards { // the writers have it; read after a round trip through each queue
		if err := e.installRules(&sceneRules{}); err != nil {
			t.Fatal(err)
		}
		if got := s.c.Limits(); got != tab {
			t.Fatalf("shard %d limits %+v", s.id, got[4])
		}
	}
}

// The hospital document replaces the rules the kiosk path decides with
// (an unknown item code becomes known); the market document may change
// policy but not table bounds.
func TestHospitalAndMarketPush(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), vfs.Default)
	defer e.Close()
	setup(t, e, 100_000)
	item := func(txn uint64) terminals.Code {
		r := kiosk(terminals.TypePurchase, txn, 0, 1_000)
		r.Item = "XRAY-9"
		rep, _ := send(t, e, p, r)
		return rep.Code
	}
	if c := item(1); c == terminals.CodeApproved {
		t.Fatal("unknown item approved under the default rules")
	}
	hc := hospital.DefaultConfig()
	hc.Items = append(hc.Items, hospital.ItemType{Code: "XRAY-9", Name: "x-ray", MinFen: 1, MaxFen: 50_000})
	b, err := hc.EncodeJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutConfig("hospital", b); err != nil {
		t.Fatal(err)
	}
	if c := item(2); c != terminals.CodeApproved {
		t.Fatalf("item after push: %s", c)
	}

	mc := market.DefaultConfig()
	mc.LimitDFen = 10_000
	mb, _ := mc.EncodeJSON()
	if _, err := e.PutConfig("market", mb); err != nil {
		t.Fatal(err)
	}
	mc.UsedCodesMax++
	mb, _ = mc.EncodeJSON()
	var ce *confstore.Error
	if _, err := e.PutConfig("market", mb); !errors.As(err, &ce) || ce.Code != confstore.ErrInvalid || !strings.Contains(ce.Msg, "used_codes_max") {
		t.Fatalf("market bound change: %v", err)
	}
}

// Replay is deterministic across config changes and independent of the
// process's own scene config: a journal holding taps under two fare
// tables, hospital traffic under a pushed hospital document and payments
// under a pushed limits table replays, in a process started with other
// defaults, to a state byte-identical to the live one.
func TestReplayUnderConfigChangesIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 1_000_000)
	openCard(t, e, "C2", 10_000)
	tapB1(t, e, p, 1, "C2")
	if _, err := e.PutConfig("transit", []byte(transitDoc(t, 350))); err != nil {
		t.Fatal(err)
	}
	openCard(t, e, "C3", 10_000)
	tapB1(t, e, p, 2, "C3")
	hc := hospital.DefaultConfig()
	hc.OrdersMax = 2 // the order window is read when plans replay
	hb, _ := hc.EncodeJSON()
	if _, err := e.PutConfig("hospital", hb); err != nil {
		t.Fatal(err)
	}
	want(t, must(send(t, e, p, kiosk(terminals.TypeHold, 10, 0, 300_000))), terminals.CodeApproved, 300_000)
	for i := uint64(0); i < 4; i++ {
		want(t, must(send(t, e, p, kiosk(terminals.TypeCapture, 11+i, 10, 1_000))), terminals.CodeApproved, 300_000-int64(i+1)*1_000)
	}
	tab := core.DefaultConfig().ECNY
	tab[4].Single = 100
	if _, err := e.PutConfig("limits", core.EncodeLimits(tab)); err != nil {
		t.Fatal(err)
	}
	e.HandleMessage(topic, buy(20, 500))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("purchase: %s", rep.Code)
	}
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	_, live, err := journalSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()

	// A second data dir with the journal only, opened with other defaults.
	dir2 := t.TempDir()
	copyDir(t, dir+"/journal", dir2+"/journal")
	cfg := DefaultConfig(dir2)
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	other := core.DefaultConfig()
	other.Transit = mustTransit(t, 999)
	other.ECNY[1].Single = 1
	cfg.Core = other
	oh := hospital.DefaultConfig()
	oh.OrdersMax = 7
	cfg.Hospital, _ = hospital.NewRules(oh)
	e2, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Snapshot(); err != nil {
		t.Fatal(err)
	}
	_, replayed, err := journalSnapshot(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if string(live) != string(replayed) {
		t.Fatalf("replayed state differs from the live state (%d vs %d bytes)", len(replayed), len(live))
	}
	// And the replayed process decides with the journaled rules, not its defaults.
	openCard(t, e2, "C4", 10_000)
	if got := tapB1(t, e2, newFakePubFor(e2), 30, "C4"); got != 350 {
		t.Fatalf("replayed fare %d, want 350", got)
	}
}

func must(rep *terminals.Reply, _ []byte) *terminals.Reply { return rep }

func newFakePubFor(e *Engine) *fakePub {
	p := newFakePub()
	e.SetPublisher(p)
	return p
}

func mustTransit(t *testing.T, b1Fare int64) *transit.Engine {
	t.Helper()
	c := core.DefaultTransit().Config()
	c.Routes[0].Fare = b1Fare
	te, err := transit.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return te
}

func journalSnapshot(dir string) (uint64, []byte, error) {
	return journal.LoadSnapshot(vfs.Default, dir+"/snapshots")
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}
