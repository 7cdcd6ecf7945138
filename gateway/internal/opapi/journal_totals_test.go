package opapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/registry"
	"scenepay/settlement/clearing"
	"scenepay/settlement/store"
	"scenepay/settlement/store/pgtest"
	"scenepay/terminals"
)

var testMaster = []byte("0123456789abcdef0123456789abcdef")

type chanPub struct{ ch chan []byte }

func (p *chanPub) Publish(_ string, b []byte) { p.ch <- b }

// journalGW is one gateway: engine, operator API, terminals.
type journalGW struct {
	t      *testing.T
	source string
	e      *engine.Engine
	s      *Server
	base   string
	pub    *chanPub
	clock  func() time.Time
	txn    uint64
	told   map[string]int64 // merchant -> net the terminals were told
}

func startJournalGW(t *testing.T, source string, clock func() time.Time, terms map[string]string) *journalGW {
	t.Helper()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.Clock = clock
	e, err := engine.Open(cfg, testMaster)
	if err != nil {
		t.Fatal(err)
	}
	g := &journalGW{t: t, source: source, e: e, pub: &chanPub{ch: make(chan []byte, 64)}, clock: clock, told: map[string]int64{}}
	e.SetPublisher(g.pub)
	for tid, merchant := range terms {
		if err := e.RegisterTerminal(registry.Terminal{TID: tid, Kind: registry.KindBus, Merchant: merchant, KeyVersion: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "county:C1", Amount: 1_000_000, Ref: "o"}); err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open account: %v %v", r.Code, err)
	}
	g.s = New(Config{Token: "tok", Source: source, Gatherer: prometheus.NewRegistry()}, e)
	if err := g.s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	g.base = "http://" + g.s.Addr()
	t.Cleanup(func() { g.s.Close(); e.Close() })
	return g
}

// do sends one request from tid and returns its reply code.
func (g *journalGW) do(tid string, q terminals.Request) terminals.Code {
	g.t.Helper()
	g.txn++
	q.V, q.TID, q.Txn, q.TS = 1, tid, g.txn, g.clock().UnixMilli()
	q.Inst = terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}
	s := terminals.NewSigner(terminals.DeriveKey(testMaster, tid, 1))
	g.e.HandleMessage("scp/v1/t/"+tid+"/req", s.Seal(nil, q.AppendJSON(nil)))
	select {
	case raw := <-g.pub.ch:
		body, err := s.Open(raw)
		if err != nil {
			g.t.Fatal(err)
		}
		rep, err := terminals.DecodeReply(body)
		if err != nil {
			g.t.Fatal(err)
		}
		return rep.Code
	case <-time.After(5 * time.Second):
		g.t.Fatal("no reply")
		return ""
	}
}

// traffic: purchases, a declined one and a reversal on each terminal.
func (g *journalGW) traffic(terms map[string]string, amt int64) {
	g.t.Helper()
	for tid, m := range terms {
		for i := int64(1); i <= 3; i++ {
			if c := g.do(tid, terminals.Request{Type: terminals.TypePurchase, Amt: amt * i}); c != terminals.CodeApproved {
				g.t.Fatalf("purchase: %s", c)
			}
			g.told[m] += amt * i
		}
		if c := g.do(tid, terminals.Request{Type: terminals.TypePurchase, Amt: 50_000_000}); c.Class() != terminals.ClassDecline {
			g.t.Fatalf("huge purchase: %s, want a decline", c)
		}
		orig := g.txn - 1
		if c := g.do(tid, terminals.Request{Type: terminals.TypeReversal, Orig: orig, Amt: amt * 3}); c != terminals.CodeApproved {
			g.t.Fatalf("reversal: %s", c)
		}
		g.told[m] -= amt * 3
	}
}

// handOff runs g's handoff into st until the store holds its whole
// journal and an idle watermark past every record.
func (g *journalGW) handOff(st store.Store) {
	g.t.Helper()
	h, err := handoff.New(handoff.Config{Source: g.source, Store: st, Journal: g.e.Journal(), Entry: engine.EntryRecords,
		Scene: func(tid string) (string, bool) {
			te, ok := g.e.Registry().Get(tid)
			if !ok {
				return "", false
			}
			return te.Terminal().Kind, true
		},
		BatchAge: 10 * time.Millisecond, PollEvery: 2 * time.Millisecond, WatermarkLag: time.Millisecond,
		RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	after := time.Now().Add(-time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		wms, err := st.Watermarks(context.Background())
		if err != nil {
			g.t.Fatal(err)
		}
		idle := false
		for _, w := range wms {
			idle = idle || (w.Source == g.source && w.At.After(after))
		}
		if idle && h.HandedOff() == g.e.Journal().DurableLSN() {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("handoff of %s stuck at %d of %d", g.source, h.HandedOff(), g.e.Journal().DurableLSN())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settlementStore opens an empty settlement store for one test and
// returns it with bump, which adds fen to the amount of the first purchase
// of merchant handed off by source behind the store's back (in whichever
// part of the store holds the row) and returns how many rows it changed.
type settlementStore func(t *testing.T) (st store.Store, bump func(source, merchant string, fen int64) int64)

// sqliteSettlement is the embedded store the gateway writes by default.
func sqliteSettlement(t *testing.T) (store.Store, func(string, string, int64) int64) {
	dbPath := filepath.Join(t.TempDir(), "settlement.db")
	st, err := store.OpenSQLite(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, func(source, merchant string, fen int64) int64 {
		db, err := sql.Open("sqlite", dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		res, err := db.Exec(`UPDATE txns SET amount = amount + ? WHERE source = ? AND merchant = ?
			AND lsn = (SELECT min(lsn) FROM txns WHERE source = ? AND merchant = ? AND op = 'purchase')`,
			fen, source, merchant, source, merchant)
		if err != nil {
			t.Fatal(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// postgresSettlement is the machine's PostgreSQL, in a schema private to
// the test. A row is in txns_recent until the mover (at a window close)
// takes it into txns; bump changes it in either part.
func postgresSettlement(t *testing.T) (store.Store, func(string, string, int64) int64) {
	ctx := context.Background()
	url := pgtest.Schema(t, "opapi_recon")
	st, err := store.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, func(source, merchant string, fen int64) int64 {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var n int64
		for _, table := range []string{"txns", "txns_recent"} {
			tag, err := c.Exec(ctx, `UPDATE `+table+` SET amount = amount + $1 WHERE source = $2 AND merchant = $3
				AND lsn = (SELECT min(lsn) FROM txns_all WHERE source = $2 AND merchant = $3 AND op = 'purchase')`,
				fen, source, merchant)
			if err != nil {
				t.Fatal(err)
			}
			n += tag.RowsAffected()
		}
		return n
	}
}

// Two gateways hand off into one settlement store; settlement's HTTP
// journal asks both over their operator APIs, sums them, and reconciles
// each settled window with no difference. An altered row is found; a
// gateway that is down makes the reconciliation fail, not read as zero.
// The same run on the embedded SQLite store and on PostgreSQL.
func TestJournalTotalsTwoGatewaysReconcile(t *testing.T) {
	for _, c := range []struct {
		name string
		open settlementStore
	}{
		{"sqlite", sqliteSettlement},
		{"postgres", postgresSettlement},
	} {
		t.Run(c.name, func(t *testing.T) { twoGatewaysReconcile(t, c.open) })
	}
}

func twoGatewaysReconcile(t *testing.T, open settlementStore) {
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Now().Add(-48 * time.Hour).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	termsA := map[string]string{"A1": "M1"}
	termsB := map[string]string{"B1": "M1", "B2": "M2"}
	a := startJournalGW(t, "gw-a", clock, termsA)
	b := startJournalGW(t, "gw-b", clock, termsB)
	start := clock()
	a.traffic(termsA, 300)
	b.traffic(termsB, 700)
	now.Add(int64(time.Minute))
	a.traffic(termsA, 110)
	end := clock().Add(time.Second)

	st, bump := open(t)
	a.handOff(st)
	b.handOff(st)

	// The route: auth as every /v1 route, parameters checked.
	for _, c := range []struct {
		path, token string
		status      int
	}{
		{"/v1/journal/totals?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "", 401},
		{"/v1/journal/totals?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "nope", 401},
		{"/v1/journal/totals?from=yesterday&to=2026-01-02T00:00:00Z", "tok", 400},
		{"/v1/journal/totals?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "tok", 400},
		{"/v1/journal/totals?to=2026-01-01T00:00:00Z", "tok", 400},
		{"/v1/journal/totals?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "tok", 200},
	} {
		if status, m := call(t, "GET", a.base+c.path, c.token, ""); status != c.status {
			t.Errorf("GET %s (token %q): %d %v, want %d", c.path, c.token, status, m, c.status)
		}
	}

	// One gateway, directly: its totals are what its terminals were told.
	one, err := clearing.NewHTTPJournal(clearing.HTTPJournalConfig{Gateways: []string{a.base}, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	period := store.Window{ID: "p", Start: start, CutOff: end}
	ta, err := one.JournalTotals(ctx, period)
	if err != nil {
		t.Fatal(err)
	}
	if len(ta) != 1 || ta["M1"].Net != a.told["M1"] || ta["M1"].Count != 8 || ta["M1"].ReversalCount != 2 {
		t.Fatalf("gw-a totals %+v, its terminals were told net %d", ta, a.told["M1"])
	}

	// Both gateways: the sum equals the store, merchant by merchant.
	both, err := clearing.NewHTTPJournal(clearing.HTTPJournalConfig{Gateways: []string{a.base, b.base}, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := both.JournalTotals(ctx, period)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"M1", "M2"} {
		want, err := st.Totals(ctx, m, start, end)
		if err != nil {
			t.Fatal(err)
		}
		if sum[m] != want || want.Net != a.told[m]+b.told[m] {
			t.Errorf("merchant %s: journals %+v, store %+v, terminals told %d", m, sum[m], want, a.told[m]+b.told[m])
		}
	}

	// The settlement scheduler settles the windows; the reconciliation
	// pass finds no difference.
	cl, err := clearing.New(clearing.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Tick(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec, err := clearing.NewReconciler(cl, both, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	pass, err := rec.Pass(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	window := clearing.Calendar{}.Of(start).ID
	found := false
	for i, r := range pass.Reconciled {
		if len(r.Differences) != 0 {
			t.Errorf("window %s: differences %+v in a clean run", pass.Windows[i], r.Differences)
		}
		found = found || (pass.Windows[i] == window && r.Merchants == 2)
	}
	if !found || len(pass.Failed) != 0 {
		t.Fatalf("pass reconciled %v (%+v), failed %+v; want window %s with 2 merchants", pass.Windows, pass.Reconciled, pass.Failed, window)
	}

	// Plant a difference: one of gw-b's rows gains 100 fen in the store.
	if n := bump("gw-b", "M2", 100); n != 1 {
		t.Fatalf("planting the difference changed %d rows, want 1", n)
	}
	cl2, err := clearing.New(clearing.Config{Store: st, Journal: both})
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl2.Reconcile(ctx, window, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var gross, settledGross bool
	for _, d := range r.Differences {
		switch {
		case d.Merchant == "M2" && d.Field == "gross" && d.Store == d.Journal+100:
			gross = true
		case d.Merchant == "M2" && d.Field == "settled_gross" && d.Store == d.Journal+100:
			settledGross = true
		case d.Merchant != "M2":
			t.Errorf("difference for an untouched merchant: %+v", d)
		}
	}
	if !gross || !settledGross || r.DiffFen == 0 {
		t.Fatalf("planted difference not found: %+v", r)
	}

	// A gateway down: the journal side is an error naming it, and the
	// reconciliation fails instead of comparing with zero.
	b.s.Close()
	_, err = both.JournalTotals(ctx, period)
	var ge *clearing.GatewayError
	if !errors.As(err, &ge) || ge.Gateway != b.base {
		t.Fatalf("totals with gw-b down: %v, want a GatewayError for %s", err, b.base)
	}
	if _, err := cl2.Reconcile(ctx, window, time.Now()); err == nil {
		t.Fatal("reconciliation with a gateway down succeeded")
	}
	rec2, _ := clearing.NewReconciler(cl, both, nil)
	pass, err = rec2.Pass(ctx, time.Now())
	if err != nil || len(pass.Reconciled) != 0 || len(pass.Failed) == 0 || pass.Failed[0].Reason != clearing.ReconcileUnavailable || pass.Pending == 0 {
		t.Fatalf("pass with gw-b down: %+v %v; want every window failed as unavailable and still pending", pass, err)
	}
}

// notCovered is a gateway whose journal no longer covers any period.
type notCovered struct{ *engine.Engine }

func (notCovered) JournalTotals(_ context.Context, _ string, from, _ time.Time) (map[string]store.Totals, error) {
	return nil, &engine.NotCoveredError{From: from, Horizon: from.Add(time.Hour), FirstLSN: 4097}
}

// A gateway that no longer holds a window answers 410 Gone; settlement
// reads it as ErrJournalNotCovered and the pass gives the window up.
func TestJournalTotalsNotCovered(t *testing.T) {
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 1
	e, err := engine.Open(cfg, testMaster)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Token: "tok", Source: "gw-old"}, notCovered{e})
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close(); e.Close() }()
	base := "http://" + s.Addr()
	status, m := call(t, "GET", base+"/v1/journal/totals?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "tok", "")
	if status != 410 || !strings.Contains(fmt.Sprint(m["error"]), "journal no longer covers") {
		t.Fatalf("GET: %d %v, want 410 journal no longer covers", status, m)
	}
	j, err := clearing.NewHTTPJournal(clearing.HTTPJournalConfig{Gateways: []string{base}, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	w := store.Window{Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), CutOff: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}
	if _, err := j.JournalTotals(context.Background(), w); !errors.Is(err, clearing.ErrJournalNotCovered) {
		t.Fatalf("JournalTotals: %v, want ErrJournalNotCovered", err)
	}
	// Without an instance name the route is not served.
	s2 := New(Config{Token: "tok"}, e)
	if err := s2.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if status, _ := call(t, "GET", "http://"+s2.Addr()+"/v1/journal/totals?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "tok", ""); status != 404 {
		t.Fatalf("without Source: %d, want 404", status)
	}
}
