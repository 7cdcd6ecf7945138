package handoff_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/registry"
	"scenepay/settlement/clearing"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

// stepClock is a clock that runs with real time from a base the test moves.
type stepClock struct {
	mu    sync.Mutex
	base  time.Time
	since time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Since(c.since))
}

func (c *stepClock) set(t time.Time) {
	c.mu.Lock()
	c.base, c.since = t, time.Now()
	c.mu.Unlock()
}

// TestECNYOfflineHeldUntilSyncEndToEnd: a wallet's double-offline payment
// at a stall goes through the engine, the handoff and a SQLite store; the
// window of its day is settled before the wallet syncs, so the payment is
// held (in the takings, not in the payable). The wallet's top-up the next
// day is its sync; the next window releases the payment. Over both
// windows the stall is paid exactly what it received.
func TestECNYOfflineHeldUntilSyncEndToEnd(t *testing.T) {
	ctx := context.Background()
	shanghai := time.FixedZone("CST", 8*3600)
	day1 := time.Date(2026, 3, 2, 10, 0, 0, 0, shanghai)
	clk := &stepClock{}
	clk.set(day1)
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Shards = 1
	cfg.SnapshotEvery = 0
	cfg.Clock = clk.now
	e, err := engine.Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := &pub{ch: make(chan []byte, 4)}
	e.SetPublisher(p)
	tm := &terminal{tid: "S1", merchant: "stall-9", kind: registry.KindStall}
	if err := e.RegisterTerminal(registry.Terminal{TID: tm.tid, Kind: tm.kind, Merchant: tm.merchant, KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	tm.s = terminals.NewSigner(terminals.DeriveKey(master, tm.tid, 1))
	operate := func(in core.Input) {
		t.Helper()
		if r, err := e.Operate(ctx, in); err != nil || r.Code != terminals.CodeApproved {
			t.Fatalf("%v %s: %v %v", in.Op, in.Account, r.Code, err)
		}
	}
	operate(core.Input{Op: core.OpOpenAccount, Account: "ecny:w-1", Amount: 100_000, Class: 2, Ref: "o-w-1"})
	operate(core.Input{Op: core.OpOpenAccount, Account: "ecny:w-2", Amount: 100_000, Class: 2, Ref: "o-w-2"})
	do := func(r terminals.Request) {
		t.Helper()
		r.V, r.TID, r.TS = 1, tm.tid, clk.now().UnixMilli()
		if rep := tm.do(t, e, p, r); rep.Code != terminals.CodeApproved {
			t.Fatalf("%s: %s", r.Type, rep.Code)
		}
	}
	// Day 1: w-1 pays 15 CNY double offline (uploaded by the stall), w-2
	// pays 8 CNY online.
	do(terminals.Request{Type: terminals.TypeECNYOffline, Txn: 1, Amt: 1500, Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: "w-1"}})
	do(terminals.Request{Type: terminals.TypePurchase, Txn: 2, Amt: 800, Inst: terminals.Instrument{Kind: terminals.InstECNY, ID: "w-2"}})

	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "settlement.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// handOff runs the handoff until the store holds the whole journal and
	// a watermark at or past wm.
	handOff := func(wm time.Time) {
		t.Helper()
		h, err := handoff.New(handoff.Config{
			Source: "gw-e", Store: st, Journal: e.Journal(), Entry: engine.EntryRecords, Extras: e.HandoffExtras(),
			Scene: func(tid string) (string, bool) {
				te, ok := e.Registry().Get(tid)
				if !ok {
					return "", false
				}
				return te.Terminal().Kind, true
			},
			BatchAge: 10 * time.Millisecond, PollEvery: 5 * time.Millisecond, WatermarkLag: time.Millisecond,
			Clock: clk.now, Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		hctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); h.Run(hctx) }()
		defer func() { cancel(); wg.Wait() }()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			wms, err := st.Watermarks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if h.HandedOff() >= e.Journal().DurableLSN() && len(wms) == 1 && !wms[0].At.Before(wm) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("handoff did not finish: %d of %d, watermarks %+v", h.HandedOff(), e.Journal().DurableLSN(), wms)
			}
		}
	}
	handOff(day1)

	cl, err := clearing.New(clearing.Config{Store: st, Legs: st})
	if err != nil {
		t.Fatal(err)
	}
	tick := func(at time.Time, settle string) {
		t.Helper()
		res, err := cl.Tick(ctx, at)
		if err != nil {
			t.Fatalf("tick at %v: %v", at, err)
		}
		if len(res.Settled) != 1 || res.Settled[0] != settle {
			t.Fatalf("tick at %v settled %v, want %s (waiting %q)", at, res.Settled, settle, res.Waiting)
		}
	}
	// Day 2, 09:00: the day-1 window drains and settles before w-1 syncs.
	day2 := day1.Add(23 * time.Hour)
	clk.set(day2)
	handOff(day2)
	tick(clk.now(), "2026-03-02")
	first, err := st.Settlement(ctx, "2026-03-02", "stall-9")
	if err != nil {
		t.Fatal(err)
	}
	if first.Net != 2300 || first.Gross != 2300 || first.Held != 1500 || first.Released != 0 || first.Payable != 800 {
		t.Fatalf("day-1 settlement %+v: want net 2300, held 1500, payable 800", first)
	}
	// Day 2, 10:00: w-1 is topped up online: its sync.
	clk.set(day2.Add(time.Hour))
	operate(core.Input{Op: core.OpTopUp, Account: "ecny:w-1", Amount: 5000, Ref: "top-w-1"})
	handOff(clk.now().Add(-time.Second))
	day2w := cl.Calendar().Of(clk.now())
	rs, err := st.Unsynced(ctx, day2w)
	if err != nil || len(rs) != 1 || rs[0].SyncedAt.IsZero() || rs[0].ReleasedWindow != "" || rs[0].Amount != 1500 {
		t.Fatalf("receipts before the day-2 window settles: %+v, %v", rs, err)
	}
	// Day 3, 09:00: the day-2 window releases the held payment, once.
	clk.set(day1.Add(47 * time.Hour))
	handOff(clk.now().Add(-time.Second))
	tick(clk.now(), "2026-03-03")
	second, err := st.Settlement(ctx, "2026-03-03", "stall-9")
	if err != nil {
		t.Fatal(err)
	}
	if second.Count != 0 || second.Held != 0 || second.Released != 1500 || second.Payable != 1500 {
		t.Fatalf("day-2 settlement %+v: want released 1500, payable 1500", second)
	}
	if first.Payable+second.Payable != 1500+800 {
		t.Fatalf("stall paid %d over both windows, received %d", first.Payable+second.Payable, 1500+800)
	}
	if rs, err := st.Unsynced(ctx, day2w); err != nil || len(rs) != 1 || rs[0].ReleasedWindow != "2026-03-03" {
		t.Fatalf("receipt after release: %+v, %v", rs, err)
	}
}
