package engine

import (
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
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
