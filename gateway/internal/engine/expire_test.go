package engine

import (
	"slices"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// TestTapAfterExpiredJourney: a card boards company A's bus, never taps
// out, and hours later, before any sweep, taps in on company B's bus. The
// old journey is journaled as its own entry (a journey expiry for A's
// boarding reader) ahead of the tap's entry, which carries only B's fare;
// the reply reports B's fare, and a restart replays both entries to the
// same balances.
func TestTapAfterExpiredJourney(t *testing.T) {
	dir := t.TempDir()
	clk := newStepClock(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)) // 08:00 in Shanghai
	e, p := openSweepEngine(t, dir, clk)
	for _, term := range []registry.Terminal{
		{TID: "T1", Kind: registry.KindBus, Merchant: "BUS-A", KeyVersion: 1},
		{TID: "T2", Kind: registry.KindBus, Merchant: "BUS-B", KeyVersion: 1},
	} {
		if err := e.RegisterTerminal(term); err != nil {
			t.Fatal(err)
		}
	}
	openCard(t, e, "C1", 10_000)
	// T1 is company A's reader, T2 company B's.
	signers := map[string]*terminals.Signer{"T1": signer, "T2": terminals.NewSigner(terminals.DeriveKey(master, "T2", 1))}
	tap := func(e *Engine, p *fakePub, tid string, txn uint64, route, stop string) *terminals.Reply {
		t.Helper()
		r := clk.req(terminals.Request{V: 1, Type: terminals.TypeTapIn, TID: tid, Txn: txn,
			Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}, Route: route, Stop: stop})
		s := signers[tid]
		e.HandleMessage(e.cfg.Topics.Request(tid), s.Seal(nil, r.AppendJSON(nil)))
		body, err := s.Open(p.next(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := terminals.DecodeReply(body)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := tap(e, p, "T1", 1, "D1", "S1"); rep.Code != terminals.CodeApproved || *rep.Amt != 600 {
		t.Fatalf("tap-in on A: %s %v", rep.Code, rep.Amt)
	}
	clk.add(4 * time.Hour)
	if rep := tap(e, p, "T2", 1, "B1", ""); rep.Code != terminals.CodeApproved || *rep.Amt != 200 {
		t.Fatalf("tap-in on B: %s %v", rep.Code, rep.Amt)
	}
	if v := account(t, e, "county:C1"); v.Balance != 9_200 || v.Held != 0 {
		t.Fatalf("after B's tap: balance %d held %d, want 9200 0", v.Balance, v.Held)
	}
	if res, err := e.Sweep(t.Context()); err != nil || res != (SweepResult{}) {
		t.Fatalf("sweep after the tap: %+v %v", res, err)
	}
	crash(e)

	// The journal: the expiry entry (for A) right before B's tap entry.
	j, err := journal.Open(journal.Options{FS: vfs.Default, Dir: dir + "/journal"})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		typ byte
		rec core.Record
	}
	var recs []seen
	if err := j.Replay(0, func(_ uint64, payload []byte) error {
		return EntryRecords(payload, func(_ string, b []byte) error {
			var r core.Record
			if err := core.DecodeRecord(b, &r); err != nil {
				return err
			}
			if r.Op == core.OpTapIn || r.Op == core.OpJourneyExpire {
				recs = append(recs, seen{payload[0], r})
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if len(recs) != 3 {
		t.Fatalf("%d tap and expiry records, want 3: %+v", len(recs), recs)
	}
	ex, b := recs[1], recs[2]
	if ex.typ != entryOperator || ex.rec.Op != core.OpJourneyExpire || ex.rec.TID != "T1" || ex.rec.Merchant != "BUS-A" || ex.rec.Tap.Capture != 600 {
		t.Fatalf("expiry entry type %d record %+v", ex.typ, ex.rec)
	}
	if b.typ != entryRequest || b.rec.TID != "T2" || b.rec.Merchant != "BUS-B" || b.rec.Tap.PrevCapture != 0 || b.rec.Tap.Charge != 200 ||
		b.rec.Seq != ex.rec.Seq+1 {
		t.Fatalf("B's tap entry type %d record %+v (expiry seq %d)", b.typ, b.rec, ex.rec.Seq)
	}

	// Replay gives the same state; the repeated tap gets its stored reply.
	e2, p2 := openSweepEngine(t, dir, clk)
	defer e2.Close()
	if v := account(t, e2, "county:C1"); v.Balance != 9_200 || v.Held != 0 {
		t.Fatalf("after restart: balance %d held %d, want 9200 0", v.Balance, v.Held)
	}
	if rep := tap(e2, p2, "T2", 1, "B1", ""); rep.Code != terminals.CodeApproved || *rep.Amt != 200 {
		t.Fatalf("repeated tap after restart: %s %v", rep.Code, rep.Amt)
	}
	if err := e2.Snapshot(); err != nil {
		t.Fatal(err)
	}
}

// TestTapEndsOpenJourney: the two taps that end a card's journey before
// its maximum journey time as incomplete, the maximum fare standing: a)
// C1 boards company A's bus on D1 and, without tapping out, boards
// company B's bus on D1 half an hour later; b) C2 boards A's bus on D1 and
// taps out on B's bus on another distance route, D2. Each time the old
// journey is journaled as its own entry (a journey expiry for A's boarding
// reader) ahead of the tap's entry, which moves only the tap's own money:
// B's hold (what the daily cap leaves) for a), nothing for b), whose reply
// amount is 0. A restart replays the entries to the same accounts, and the
// repeated taps get their stored replies.
func TestTapEndsOpenJourney(t *testing.T) {
	dir := t.TempDir()
	clk := newStepClock(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)) // 08:00 in Shanghai
	fares := core.DefaultTransit().Config()
	d2 := fares.Routes[slices.IndexFunc(fares.Routes, func(r transit.Route) bool { return r.ID == "D1" })]
	d2.ID = "D2"
	fares.Routes = append(slices.Clone(fares.Routes), d2)
	pol, err := transit.New(fares)
	if err != nil {
		t.Fatal(err)
	}
	open := func() (*Engine, *fakePub) {
		cfg := DefaultConfig(dir)
		cfg.FS = vfs.Default
		cfg.Shards = 2
		cfg.SnapshotEvery = 0
		cfg.SweepEvery = 0
		cfg.Clock = clk.now
		cfg.Core = core.DefaultConfig()
		cfg.Core.Transit = pol
		e, err := Open(cfg, master)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return e, newFakePubFor(e)
	}
	e, p := open()
	for _, term := range []registry.Terminal{
		{TID: "T1", Kind: registry.KindBus, Merchant: "BUS-A", KeyVersion: 1},
		{TID: "T2", Kind: registry.KindBus, Merchant: "BUS-B", KeyVersion: 1},
	} {
		if err := e.RegisterTerminal(term); err != nil {
			t.Fatal(err)
		}
	}
	openCard(t, e, "C1", 10_000)
	openCard(t, e, "C2", 10_000)
	signers := map[string]*terminals.Signer{"T1": signer, "T2": terminals.NewSigner(terminals.DeriveKey(master, "T2", 1))}
	tap := func(e *Engine, p *fakePub, typ, tid string, txn uint64, card, route, stop string, wantAmt int64) {
		t.Helper()
		r := clk.req(terminals.Request{V: 1, Type: typ, TID: tid, Txn: txn,
			Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: card}, Route: route, Stop: stop})
		s := signers[tid]
		e.HandleMessage(e.cfg.Topics.Request(tid), s.Seal(nil, r.AppendJSON(nil)))
		body, err := s.Open(p.next(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := terminals.DecodeReply(body)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code != terminals.CodeApproved || rep.Amt == nil || *rep.Amt != wantAmt {
			t.Fatalf("%s %s of %s on %s: %s amt %v, want 00 amt %d", tid, typ, card, route, rep.Code, rep.Amt, wantAmt)
		}
	}
	tap(e, p, terminals.TypeTapIn, "T1", 1, "C1", "D1", "S1", 600)
	tap(e, p, terminals.TypeTapIn, "T1", 2, "C2", "D1", "S1", 600)
	clk.add(30 * time.Minute)                                      // within the 90 minutes: nothing is due
	tap(e, p, terminals.TypeTapIn, "T2", 1, "C1", "D1", "S2", 400) // a): 10 CNY cap, 6 already spent
	tap(e, p, terminals.TypeTapOut, "T2", 2, "C2", "D2", "S3", 0)  // b)
	want := map[string][2]int64{"county:C1": {9_400, 400}, "county:C2": {9_400, 0}}
	for k, w := range want {
		if v := account(t, e, k); v.Balance != w[0] || v.Held != w[1] {
			t.Fatalf("%s: balance %d held %d, want %d %d", k, v.Balance, v.Held, w[0], w[1])
		}
	}
	crash(e)

	// The journal: per card, A's tap-in, the expiry entry (for A), then B's
	// tap entry, with consecutive sequence numbers of the card's shard.
	j, err := journal.Open(journal.Options{FS: vfs.Default, Dir: dir + "/journal"})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		typ byte
		rec core.Record
	}
	recs := map[string][]seen{}
	if err := j.Replay(0, func(_ uint64, payload []byte) error {
		return EntryRecords(payload, func(_ string, b []byte) error {
			var r core.Record
			if err := core.DecodeRecord(b, &r); err != nil {
				return err
			}
			if r.Op == core.OpTapIn || r.Op == core.OpTapOut || r.Op == core.OpJourneyExpire {
				recs[r.Account] = append(recs[r.Account], seen{payload[0], r})
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	for _, k := range []string{"county:C1", "county:C2"} {
		rs := recs[k]
		if len(rs) != 3 {
			t.Fatalf("%s: %d tap and expiry records, want 3: %+v", k, len(rs), rs)
		}
		ex, b := rs[1], rs[2]
		if ex.typ != entryOperator || ex.rec.Op != core.OpJourneyExpire || ex.rec.TID != "T1" || ex.rec.Merchant != "BUS-A" || ex.rec.Tap.Capture != 600 {
			t.Fatalf("%s: expiry entry type %d record %+v", k, ex.typ, ex.rec)
		}
		if b.typ != entryRequest || b.rec.TID != "T2" || b.rec.Merchant != "BUS-B" || b.rec.Seq != ex.rec.Seq+1 ||
			b.rec.Tap.PrevCapture != 0 || b.rec.Tap.Capture != 0 {
			t.Fatalf("%s: B's tap entry type %d record %+v (expiry seq %d)", k, b.typ, b.rec, ex.rec.Seq)
		}
	}
	if c1 := recs["county:C1"][2].rec; c1.Op != core.OpTapIn || c1.Tap.Hold != 400 {
		t.Fatalf("C1's tap-in on B: %+v", c1)
	}
	if c2 := recs["county:C2"][2].rec; c2.Op != core.OpTapOut || c2.Amount != 0 {
		t.Fatalf("C2's tap-out on B: %+v", c2)
	}

	// Replay gives the same accounts; the repeated taps get their stored replies.
	e2, p2 := open()
	defer e2.Close()
	for k, w := range want {
		if v := account(t, e2, k); v.Balance != w[0] || v.Held != w[1] {
			t.Fatalf("after restart %s: balance %d held %d, want %d %d", k, v.Balance, v.Held, w[0], w[1])
		}
	}
	tap(e2, p2, terminals.TypeTapIn, "T2", 1, "C1", "D1", "S2", 400)
	tap(e2, p2, terminals.TypeTapOut, "T2", 2, "C2", "D2", "S3", 0)
	if err := e2.Snapshot(); err != nil {
		t.Fatal(err)
	}
}
