package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// stepClock is a clock the test moves; requests carry its time so that
// the skew check follows it.
type stepClock struct{ ns atomic.Int64 }

func newStepClock(t time.Time) *stepClock {
	c := &stepClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *stepClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *stepClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *stepClock) req(r terminals.Request) terminals.Request {
	r.TS = c.now().UnixMilli()
	return r
}

func openSweepEngine(t *testing.T, dir string, clk *stepClock) (*Engine, *fakePub) {
	t.Helper()
	cfg := DefaultConfig(dir)
	cfg.FS = vfs.Default
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	cfg.SweepEvery = 0 // passes run by Sweep only: the test decides when
	cfg.Clock = clk.now
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return e, newFakePubFor(e)
}

// crash stops e without a closing snapshot: the next Open replays the journal.
func crash(e *Engine) {
	e.closed.Store(true)
	close(e.stop)
	e.wg.Wait()
	e.j.Close()
}

func account(t *testing.T, e *Engine, key string) core.AccountView {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Account: key})
	if err != nil || !r.Found {
		t.Fatalf("read %s: %v", key, err)
	}
	return r.Account
}

// TestSweepChargesIncompleteJourney: a card taps in on a distance route and
// is never seen again. The sweep charges the maximum fare once the route's
// maximum journey time has passed (not before), the record names the
// boarding reader and its merchant for settlement, the metric counts it,
// and a restart from the snapshot taken before the sweep plus the journal
// after it gives the same state; the card's next tap finds nothing left.
func TestSweepChargesIncompleteJourney(t *testing.T) {
	dir := t.TempDir()
	clk := newStepClock(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)) // 08:00 in Shanghai
	e, p := openSweepEngine(t, dir, clk)
	if err := e.RegisterTerminal(registry.Terminal{TID: "T1", Kind: registry.KindBus, Merchant: "BUSCO", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	openCard(t, e, "C1", 10_000)
	tap := func(txn uint64, typ, route, stop string) *terminals.Reply {
		rep, _ := send(t, e, p, clk.req(terminals.Request{V: 1, Type: typ, TID: "T1", Txn: txn,
			Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}, Route: route, Stop: stop}))
		return rep
	}
	if rep := tap(1, terminals.TypeTapIn, "D1", "S1"); rep.Code != terminals.CodeApproved || *rep.Amt != 600 {
		t.Fatalf("tap-in: %s %v", rep.Code, rep.Amt)
	}
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	clk.add(89 * time.Minute)
	if res, err := e.Sweep(t.Context()); err != nil || res != (SweepResult{}) {
		t.Fatalf("sweep before the maximum journey time: %+v %v", res, err)
	}
	clk.add(2 * time.Minute)
	if res, err := e.Sweep(t.Context()); err != nil || res.Journeys != 1 {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	if v := account(t, e, "county:C1"); v.Balance != 9_400 || v.Held != 0 {
		t.Fatalf("after the sweep: balance %d held %d, want 9400 0", v.Balance, v.Held)
	}
	if n := testutilCount(e.m.swept.WithLabelValues(registry.KindBus)); n != 1 {
		t.Fatalf("swept{bus} = %v, want 1", n)
	}
	if res, err := e.Sweep(t.Context()); err != nil || res != (SweepResult{}) {
		t.Fatalf("second sweep: %+v %v", res, err)
	}
	crash(e)

	// The journal holds the expiry as settlement reads it: a capture of
	// the maximum fare for the boarding reader's merchant.
	j, err := journal.Open(journal.Options{FS: vfs.Default, Dir: dir + "/journal"})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	if err := j.Replay(0, func(_ uint64, payload []byte) error {
		return EntryRecords(payload, func(tid string, b []byte) error {
			var r core.Record
			if err := core.DecodeRecord(b, &r); err != nil {
				return err
			}
			if r.Op == core.OpJourneyExpire {
				found++
				if r.TID != "T1" || r.Merchant != "BUSCO" || r.Tap.Capture != 600 || r.Txn == 0 {
					t.Errorf("expiry record %+v", r)
				}
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if found != 1 {
		t.Fatalf("%d journey expiry records, want 1", found)
	}

	// Restart: the snapshot from before the sweep plus the journal after it.
	e2, p2 := openSweepEngine(t, dir, clk)
	defer e2.Close()
	if v := account(t, e2, "county:C1"); v.Balance != 9_400 || v.Held != 0 {
		t.Fatalf("after restart: balance %d held %d, want 9400 0", v.Balance, v.Held)
	}
	if res, err := e2.Sweep(t.Context()); err != nil || res != (SweepResult{}) {
		t.Fatalf("sweep after restart: %+v %v", res, err)
	}
	// The lazy path finds nothing left: the next tap-in holds a new
	// maximum fare (capped by the day's 10 CNY: 400 left) and captures
	// nothing of the old journey.
	e, p = e2, p2
	if rep := tap(2, terminals.TypeTapIn, "D1", "S1"); rep.Code != terminals.CodeApproved || *rep.Amt != 400 {
		t.Fatalf("next tap-in: %s %v", rep.Code, rep.Amt)
	}
	if v := account(t, e2, "county:C1"); v.Balance != 9_400 || v.Held != 400 {
		t.Fatalf("after the next tap-in: balance %d held %d, want 9400 400", v.Balance, v.Held)
	}
}

// TestSweepReleasesForgottenDeposit: an inpatient deposit without activity
// for DepositExpiryHours is released by the sweep (the patient's money is
// no longer held), the entry replays after a crash, and a later request
// naming the deposit finds it closed.
func TestSweepReleasesForgottenDeposit(t *testing.T) {
	dir := t.TempDir()
	clk := newStepClock(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))
	e, p := openSweepEngine(t, dir, clk)
	if err := e.RegisterTerminal(registry.Terminal{TID: "T1", Kind: registry.KindKiosk, Merchant: "HOSP", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	openCard(t, e, "C1", 1_000_000)
	rep, _ := send(t, e, p, clk.req(kiosk(terminals.TypeHold, 1, 0, 300_000)))
	want(t, rep, terminals.CodeApproved, 300_000)
	rep, _ = send(t, e, p, clk.req(kiosk(terminals.TypeHold, 2, 1, 100_000)))
	want(t, rep, terminals.CodeApproved, 400_000)
	rep, _ = send(t, e, p, clk.req(kiosk(terminals.TypeCapture, 3, 1, 50_000)))
	want(t, rep, terminals.CodeApproved, 350_000)

	clk.add(30*24*time.Hour - time.Minute)
	if res, err := e.Sweep(t.Context()); err != nil || res != (SweepResult{}) {
		t.Fatalf("sweep before expiry: %+v %v", res, err)
	}
	clk.add(time.Minute)
	if res, err := e.Sweep(t.Context()); err != nil || res.Deposits != 1 || res.Journeys != 0 {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	if v := account(t, e, "county:C1"); v.Balance != 950_000 || v.Held != 0 {
		t.Fatalf("after the sweep: balance %d held %d, want 950000 0", v.Balance, v.Held)
	}
	if n := testutilCount(e.m.swept.WithLabelValues(registry.KindKiosk)); n != 1 {
		t.Fatalf("swept{kiosk} = %v, want 1", n)
	}
	crash(e)

	e2, p2 := openSweepEngine(t, dir, clk)
	defer e2.Close()
	if v := account(t, e2, "county:C1"); v.Balance != 950_000 || v.Held != 0 {
		t.Fatalf("after restart: balance %d held %d, want 950000 0", v.Balance, v.Held)
	}
	if n := len(e2.shards[core.ShardOf("county:C1", len(e2.shards))].hosp.deps); n != 0 {
		t.Fatalf("%d deposits open after restart, want 0", n)
	}
	rep, _ = send(t, e2, p2, clk.req(kiosk(terminals.TypeCapture, 4, 1, 1_000)))
	want(t, rep, terminals.CodeOriginalNotFound, 0)
	// A snapshot after the sweep restores the same state.
	if err := e2.Snapshot(); err != nil {
		t.Fatal(err)
	}
}

// TestSweepTimer: with SweepEvery set, the engine sweeps on its own.
func TestSweepTimer(t *testing.T) {
	clk := newStepClock(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))
	cfg := DefaultConfig(t.TempDir())
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	cfg.SweepEvery = 10 * time.Millisecond
	cfg.Clock = clk.now
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := newFakePubFor(e)
	if err := e.RegisterTerminal(registry.Terminal{TID: "T1", Kind: registry.KindBus, Merchant: "BUSCO", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	openCard(t, e, "C1", 10_000)
	rep, _ := send(t, e, p, clk.req(terminals.Request{V: 1, Type: terminals.TypeTapIn, TID: "T1", Txn: 1,
		Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}, Route: "D1", Stop: "S1"}))
	if rep.Code != terminals.CodeApproved {
		t.Fatalf("tap-in: %s", rep.Code)
	}
	clk.add(2 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for testutilCount(e.m.swept.WithLabelValues(registry.KindBus)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the timer never swept the journey")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v := account(t, e, "county:C1"); v.Balance != 9_400 || v.Held != 0 {
		t.Fatalf("balance %d held %d, want 9400 0", v.Balance, v.Held)
	}
}
