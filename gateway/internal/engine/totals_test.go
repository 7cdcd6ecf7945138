package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/market"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

// totalsRig is an engine with terminals T1 (merchant M) and T2 (merchant
// M2), one county card, and a settable clock.
type totalsRig struct {
	t   *testing.T
	e   *Engine
	p   *fakePub
	now atomic.Int64 // engine clock, Unix ns
	s2  *terminals.Signer
}

func newTotalsRig(t *testing.T, dir string, tune func(*Config)) *totalsRig {
	t.Helper()
	r := &totalsRig{t: t}
	r.now.Store(time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC).UnixNano())
	cfg := DefaultConfig(dir)
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	cfg.Clock = func() time.Time { return time.Unix(0, r.now.Load()) }
	if tune != nil {
		tune(&cfg)
	}
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	r.e, r.p = e, newFakePub()
	e.SetPublisher(r.p)
	setup(t, e, 5_000_000)
	if err := e.RegisterTerminal(registry.Terminal{TID: "T2", Kind: "stall", Merchant: "M2", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	r.s2 = terminals.NewSigner(terminals.DeriveKey(master, "T2", 1))
	return r
}

func (r *totalsRig) clock() time.Time { return time.Unix(0, r.now.Load()) }

func (r *totalsRig) advance(d time.Duration) { r.now.Add(int64(d)) }

// send runs one request from terminal tid (T1 or T2) and returns the reply.
func (r *totalsRig) send(tid string, q terminals.Request) *terminals.Reply {
	r.t.Helper()
	q.V, q.TID, q.TS = 1, tid, r.clock().UnixMilli()
	if q.Inst.Kind == "" && q.PayCode == "" {
		q.Inst = terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}
	}
	s := signer
	if tid == "T2" {
		s = r.s2
	}
	r.e.HandleMessage("scp/v1/t/"+tid+"/req", s.Seal(nil, q.AppendJSON(nil)))
	for {
		body, err := s.Open(r.p.next(r.t, 5*time.Second))
		if err != nil {
			r.t.Fatal(err)
		}
		rep, err := terminals.DecodeReply(body)
		if err != nil {
			r.t.Fatal(err)
		}
		if rep.Type != terminals.ReplyDepositLow { // a notice, not the reply
			return rep
		}
	}
}

func (r *totalsRig) approved(tid string, q terminals.Request) {
	r.t.Helper()
	if rep := r.send(tid, q); rep.Code != terminals.CodeApproved {
		r.t.Fatalf("%s %s txn %d: %s, want approved", tid, q.Type, q.Txn, rep.Code)
	}
}

func (r *totalsRig) declined(tid string, q terminals.Request) {
	r.t.Helper()
	if rep := r.send(tid, q); rep.Code.Class() != terminals.ClassDecline {
		r.t.Fatalf("%s %s txn %d: %s, want a decline", tid, q.Type, q.Txn, rep.Code)
	}
}

// mixed runs purchases, a declined purchase, a reversal, a QR payment and
// its refund, a deposit hold and two captures (one declined) with txn ids
// from base.
func (r *totalsRig) mixed(base uint64) {
	r.t.Helper()
	P := func(txn uint64, amt int64) terminals.Request {
		return terminals.Request{Type: terminals.TypePurchase, Txn: base + txn, Amt: amt}
	}
	r.approved("T1", P(1, 230))
	r.approved("T2", P(2, 1_700))
	r.declined("T1", P(3, 90_000_000)) // insufficient funds
	r.approved("T1", P(4, 410))
	r.approved("T1", terminals.Request{Type: terminals.TypeReversal, Txn: base + 5, Orig: base + 4, Amt: 410})
	code, err := market.Issue(market.IssuerKey(master, 1), 1, "county:C1", market.ClassC, r.clock(), base)
	if err != nil {
		r.t.Fatal(err)
	}
	r.approved("T2", terminals.Request{Type: terminals.TypeQRPay, Txn: base + 6, Amt: 800, PayCode: code})
	r.approved("T2", terminals.Request{Type: terminals.TypeRefund, Txn: base + 7, Orig: base + 6, Amt: 300})
	r.approved("T1", terminals.Request{Type: terminals.TypeHold, Txn: base + 8, Amt: 20_000})
	r.approved("T1", terminals.Request{Type: terminals.TypeCapture, Txn: base + 9, Orig: base + 8, Amt: 12_000})
	r.declined("T1", terminals.Request{Type: terminals.TypeCapture, Txn: base + 10, Orig: base + 8, Amt: 90_000_000})
	r.approved("T1", terminals.Request{Type: terminals.TypeRelease, Txn: base + 11, Orig: base + 8})
}

// handOff runs the handoff into st until it holds the whole journal.
func handOff(t *testing.T, e *Engine, st store.Store) {
	t.Helper()
	h, err := handoff.New(handoff.Config{Source: "gw-test", Store: st, Journal: e.Journal(), Entry: EntryRecords,
		Scene: e.terminalScene, BatchRowsMax: 3, BatchAge: 10 * time.Millisecond, PollEvery: 2 * time.Millisecond,
		RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for h.HandedOff() != e.Journal().DurableLSN() {
		if time.Now().After(deadline) {
			t.Fatalf("handoff stuck at %d of %d", h.HandedOff(), e.Journal().DurableLSN())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The journal's totals of a period equal the totals of the rows the
// handoff put in the settlement store for it, field by field, for whole
// and split periods, with every kind of row present.
func TestJournalTotalsEqualHandedOffRows(t *testing.T) {
	r := newTotalsRig(t, t.TempDir(), nil)
	defer r.e.Close()
	start := r.clock()
	r.mixed(100)
	r.advance(time.Hour)
	mid := r.clock()
	r.mixed(200)
	r.advance(time.Hour)
	r.mixed(300)
	end := r.clock().Add(time.Second)

	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "settlement.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	handOff(t, r.e, st)

	for _, p := range []struct{ from, to time.Time }{{start, end}, {start, mid}, {mid, end}, {mid.Add(time.Hour), end}} {
		got, err := r.e.JournalTotals(context.Background(), "gw-test", p.from, p.to)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"M", "M2"} {
			want, err := st.Totals(context.Background(), m, p.from, p.to)
			if err != nil {
				t.Fatal(err)
			}
			if got[m] != want {
				t.Errorf("[%s, %s) merchant %s: journal %+v, store %+v", p.from, p.to, m, got[m], want)
			}
		}
		if len(got) != 2 {
			t.Errorf("[%s, %s): merchants %v, want M and M2", p.from, p.to, got)
		}
	}
	all, _ := r.e.JournalTotals(context.Background(), "gw-test", start, end)
	m, m2 := all["M"], all["M2"]
	// Three rounds of: T1 230 + 410 - 410 + capture 12,000; T2 1,700 + 800 - 300.
	if m.Payments != 9 || m.Gross != 3*(230+410+12_000) || m.ReversalCount != 3 || m.Reversals != -3*410 || m.Net != 3*(230+12_000) {
		t.Errorf("M totals %+v", m)
	}
	if m2.Payments != 6 || m2.RefundCount != 3 || m2.Refunds != -900 || m2.Net != 3*(1_700+800-300) || m2.Count != 9 {
		t.Errorf("M2 totals %+v", m2)
	}
	if _, err := r.e.JournalTotals(context.Background(), "gw-test", end, start); err == nil {
		t.Error("JournalTotals accepted from after to")
	}
}

// Retention by age: with JournalRetain, segments whose records are all
// older than it go after a snapshot, younger ones stay; the journal's
// horizon then refuses totals of a period it no longer holds, and serves
// one after it.
func TestJournalRetentionAndNotCovered(t *testing.T) {
	dir := t.TempDir()
	var e atomic.Pointer[Engine]
	r := newTotalsRig(t, dir, func(c *Config) {
		c.Journal = journal.Options{SegmentBytesMax: 4096, GroupBytesMax: 2048, BufferBytesMax: 2048, RecordBytesMax: 1024}
		c.JournalRetain = 72 * time.Hour
		c.HandedOff = func() uint64 { return e.Load().Journal().DurableLSN() } // settlement holds everything
	})
	e.Store(r.e)
	defer r.e.Close()
	j := r.e.Journal()
	t0 := r.clock()
	for i := uint64(0); i < 3; i++ {
		r.mixed(100 + 20*i)
	}
	if err := r.e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	old := j.DurableLSN()
	r.advance(time.Hour)
	t1 := r.clock()
	for i := uint64(0); i < 3; i++ {
		r.mixed(200 + 20*i)
	}
	if err := r.e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first := j.FirstLSN(); first != 1 {
		t.Fatalf("after an hour the journal starts at lsn %d: records younger than the retention were removed", first)
	}
	r.advance(72 * time.Hour)
	for i := uint64(0); i < 3; i++ {
		r.mixed(300 + 20*i)
	}
	if err := r.e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	first := j.FirstLSN()
	if first == 1 {
		t.Fatal("records older than the retention were all kept")
	}
	if first > old+1 {
		t.Fatalf("the journal starts at lsn %d, past %d: records of the last 72 h were removed", first, old+1)
	}
	h, ok, err := j.Horizon()
	if err != nil || !ok || !h.At.Equal(t0) || h.Before != first {
		t.Fatalf("horizon %+v %v %v, want records before lsn %d decided by %v", h, ok, err, first, t0)
	}

	_, err = r.e.JournalTotals(context.Background(), "gw-test", t0.Add(-time.Hour), t1)
	var nc *NotCoveredError
	if !errors.As(err, &nc) || !errors.Is(err, ErrNotCovered) || !strings.Contains(err.Error(), "journal no longer covers") {
		t.Fatalf("totals of a truncated period: %v, want NotCoveredError", err)
	}
	if _, err := r.e.JournalTotals(context.Background(), "gw-test", t0, t1.Add(time.Minute)); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("totals from exactly the horizon: %v, want NotCoveredError", err)
	}
	// A period after the horizon is whole: three rounds per merchant.
	got, err := r.e.JournalTotals(context.Background(), "gw-test", t1, t1.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got["M"].Net != 3*(230+12_000) || got["M2"].Net != 3*(1_700+800-300) {
		t.Fatalf("totals after the horizon: %+v", got)
	}
}

// The retention marks keep the journal longer, never shorter, when they
// are thinned.
func TestRetainMarks(t *testing.T) {
	var m retainMarks
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= retainMarksMax+10; i++ {
		m.add(uint64(i*10), t0.Add(time.Duration(i)*time.Minute))
	}
	if len(m.m) > retainMarksMax {
		t.Fatalf("%d marks kept, bound %d", len(m.m), retainMarksMax)
	}
	for _, lsn := range []uint64{1, 10, 15, 5000, uint64(retainMarksMax * 10)} {
		at, ok := m.bound(lsn)
		exact := t0.Add(time.Duration((lsn+9)/10) * time.Minute)
		if !ok || at.Before(exact) {
			t.Errorf("bound(%d) = %v %v, earlier than the record time %v", lsn, at, ok, exact)
		}
	}
	cut := t0.Add(500 * time.Minute)
	if got := m.agedThrough(cut); got == 0 || got >= 5000 {
		t.Errorf("agedThrough(%v) = %d, want below 5000 and above 0", cut, got)
	}
	m.add(5, t0) // an older lsn is ignored
	m.dropBelow(5000)
	if at, ok := m.bound(5000); !ok || at.Before(t0.Add(500*time.Minute)) {
		t.Errorf("after dropBelow: bound(5000) = %v %v", at, ok)
	}
}

// JournalRetain 0 keeps the rule of before: a segment goes once the
// handoff holds it and the previous snapshot covers it, whatever its age;
// the horizon still bounds what went, so totals refuse the old period.
func TestJournalRetainZeroKeepsOnlyWhatRecoveryNeeds(t *testing.T) {
	var e atomic.Pointer[Engine]
	r := newTotalsRig(t, t.TempDir(), func(c *Config) {
		c.Journal = journal.Options{SegmentBytesMax: 4096, GroupBytesMax: 2048, BufferBytesMax: 2048, RecordBytesMax: 1024}
		c.HandedOff = func() uint64 { return e.Load().Journal().DurableLSN() }
	})
	e.Store(r.e)
	defer r.e.Close()
	t0 := r.clock()
	for i := uint64(0); i < 3; i++ {
		r.mixed(100 + 20*i)
	}
	if err := r.e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	prev := r.e.Journal().DurableLSN()
	r.advance(time.Minute)
	r.mixed(200)
	if err := r.e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	first := r.e.Journal().FirstLSN()
	if first == 1 || first > prev+1 {
		t.Fatalf("journal starts at lsn %d; want segments below the previous snapshot (%d) removed", first, prev)
	}
	if _, err := r.e.JournalTotals(context.Background(), "gw-test", t0, r.clock().Add(time.Second)); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("totals over removed records: %v, want NotCoveredError", err)
	}
}
