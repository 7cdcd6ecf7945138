package handoff_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/settlement/store/pgtest"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/registry"
	settle "scenepay/settlement/handoff"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

var master = []byte("0123456789abcdef0123456789abcdef")

type pub struct{ ch chan []byte }

func (p *pub) Publish(_ string, b []byte) { p.ch <- b }

// terminal is one test terminal on the engine.
type terminal struct {
	tid, merchant, kind string
	s                   *terminals.Signer
}

// do sends r, sealed by tm, through e's request path and returns the
// reply published on p.
func (tm *terminal) do(t testing.TB, e *engine.Engine, p *pub, r terminals.Request) *terminals.Reply {
	t.Helper()
	e.HandleMessage("scp/v1/t/"+tm.tid+"/req", tm.s.Seal(nil, r.AppendJSON(nil)))
	select {
	case raw := <-p.ch:
		body, err := tm.s.Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := terminals.DecodeReply(body)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
		return nil
	}
}

// ledger is what the terminals were told: per merchant, approved count and net fen.
type ledger struct {
	count map[string]int64
	net   map[string]int64
}

// drive opens an engine, registers terminals of two merchants and scenes,
// and runs purchases (some declined for funds) and reversals of some of
// them through HandleMessage. It returns the engine and what the replies said.
func drive(t *testing.T, dir string, n int) (*engine.Engine, ledger) {
	t.Helper()
	cfg := engine.DefaultConfig(dir)
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	e, err := engine.Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	p := &pub{ch: make(chan []byte, 16)}
	e.SetPublisher(p)
	terms := []terminal{{tid: "B1", merchant: "bus-co", kind: registry.KindBus}, {tid: "S1", merchant: "stall-7", kind: registry.KindStall}}
	for i := range terms {
		tm := &terms[i]
		if err := e.RegisterTerminal(registry.Terminal{TID: tm.tid, Kind: tm.kind, Merchant: tm.merchant, KeyVersion: 1}); err != nil {
			t.Fatal(err)
		}
		tm.s = terminals.NewSigner(terminals.DeriveKey(master, tm.tid, 1))
	}
	for _, a := range []string{"county:C1", "county:C2"} {
		r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: a, Amount: 200_000, Ref: "o-" + a})
		if err != nil || r.Code != terminals.CodeApproved {
			t.Fatalf("open %s: %v %v", a, r.Code, err)
		}
	}
	led := ledger{count: map[string]int64{}, net: map[string]int64{}}
	do := func(tm *terminal, r terminals.Request) *terminals.Reply { return tm.do(t, e, p, r) }
	for i := 1; i <= n; i++ {
		tm := &terms[i%2]
		inst := terminals.Instrument{Kind: terminals.InstCounty, ID: fmt.Sprintf("C%d", 1+i%3%2)}
		amt := int64(100 + i*7%900)
		if i%11 == 0 {
			amt = 900_000 // declined: insufficient funds
		}
		rep := do(tm, terminals.Request{V: 1, Type: terminals.TypePurchase, TID: tm.tid, Txn: uint64(2 * i), TS: time.Now().UnixMilli(), Amt: amt, Inst: inst})
		switch {
		case rep.Code == terminals.CodeApproved:
			led.count[tm.merchant]++
			led.net[tm.merchant] += amt
		case rep.Code.Class() != terminals.ClassDecline:
			t.Fatalf("purchase %d: %s, want an approval or a decline", i, rep.Code)
		}
		if i%5 == 0 && rep.Code == terminals.CodeApproved {
			rv := do(tm, terminals.Request{V: 1, Type: terminals.TypeReversal, TID: tm.tid, Txn: uint64(2*i + 1), Orig: uint64(2 * i),
				TS: time.Now().UnixMilli(), Amt: amt, Inst: inst})
			if rv.Code != terminals.CodeApproved {
				t.Fatalf("reversal of %d: %s", i, rv.Code)
			}
			led.count[tm.merchant]++
			led.net[tm.merchant] -= amt
		}
	}
	return e, led
}

// flaky wraps a store: it fails the first failBefore ingests before the
// database, and commits the next commitThenFail ones but reports an error
// (a timeout after the commit), which the handoff must resend harmlessly.
type flaky struct {
	store.Store
	failBefore, commitThenFail atomic.Int32
	calls                      atomic.Int32
}

func (f *flaky) Ingest(ctx context.Context, b *settle.Batch) (store.IngestResult, error) {
	f.calls.Add(1)
	if f.failBefore.Add(-1) >= 0 {
		return store.IngestResult{}, errors.New("injected: database unreachable")
	}
	res, err := f.Store.Ingest(ctx, b)
	if err == nil && f.commitThenFail.Add(-1) >= 0 {
		return store.IngestResult{}, errors.New("injected: connection lost after commit")
	}
	return res, err
}

func runHandoff(t *testing.T, e *engine.Engine, st store.Store, until func(h *handoff.Handoff) bool) *handoff.Handoff {
	t.Helper()
	h, err := handoff.New(handoff.Config{
		Source: "gw-test", Store: st, Journal: e.Journal(), Entry: engine.EntryRecords,
		Scene: func(tid string) (string, bool) {
			te, ok := e.Registry().Get(tid)
			if !ok {
				return "", false
			}
			return te.Terminal().Kind, true
		},
		BatchRowsMax: 7, BatchLSNsMax: 13, BatchAge: 20 * time.Millisecond, PollEvery: 5 * time.Millisecond,
		RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !until(h) {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatalf("handoff did not finish: handed off %d of %d", h.HandedOff(), e.Journal().DurableLSN())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	return h
}

// check proves that the store holds exactly what the terminals were told:
// per merchant, the count and the net sum, reversals negative.
func check(t *testing.T, st store.Store, led ledger) {
	t.Helper()
	for m, want := range led.net {
		tot, err := st.Totals(context.Background(), m, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if tot.Net != want || tot.Count != led.count[m] {
			t.Errorf("merchant %s: store count %d net %d; terminals were told count %d net %d", m, tot.Count, tot.Net, led.count[m], want)
		}
		if tot.Reversals >= 0 {
			t.Errorf("merchant %s: reversals sum %d, want negative", m, tot.Reversals)
		}
	}
}

func exercise(t *testing.T, open func() store.Store) {
	e, led := drive(t, t.TempDir(), 120)
	defer e.Close()
	st := open()
	defer st.Close()
	f := &flaky{Store: st}
	f.failBefore.Store(3)
	f.commitThenFail.Store(2)
	durable := e.Journal().DurableLSN()
	// First run stops part way; a second run (a restart) resumes from the
	// store's high water.
	runHandoff(t, e, f, func(h *handoff.Handoff) bool { return h.HandedOff() >= durable/2 })
	runHandoff(t, e, f, func(h *handoff.Handoff) bool { return h.HandedOff() == durable })
	hw, err := st.HighWater(context.Background(), "gw-test")
	if err != nil || hw != durable {
		t.Fatalf("store high water %d, %v; journal durable %d", hw, err, durable)
	}
	check(t, st, led)
	// A third run over a fully handed-off journal adds nothing.
	runHandoff(t, e, f, func(h *handoff.Handoff) bool { return h.HandedOff() == durable })
	check(t, st, led)
	if f.calls.Load() < 5 {
		t.Fatalf("only %d ingest calls: the batches were not cut small", f.calls.Load())
	}
}

func TestHandoffSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settlement.db")
	exercise(t, func() store.Store {
		st, err := store.OpenSQLite(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// pgSchema creates a uniquely named schema for one test and drops it after.

func TestHandoffPostgres(t *testing.T) {
	url := pgtest.Schema(t, "handoff")
	exercise(t, func() store.Store {
		st, err := store.OpenPostgres(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
