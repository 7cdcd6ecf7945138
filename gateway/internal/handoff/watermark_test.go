package handoff_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/handoff"
	settle "scenepay/settlement/handoff"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

// The watermark's progress, on a journal, a store and a clock of the
// test's own: the clock moves only when the test (or its step) moves it,
// so what the handoff claims depends on no scheduling.

// fakeClock is the handoff's clock; step (if set) is added on every read.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// peek reads the clock without stepping it.
func (c *fakeClock) peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time, step time.Duration) {
	c.mu.Lock()
	c.t, c.step = t, step
	c.mu.Unlock()
}

// memJournal holds payloads in memory, all durable; an empty payload is an
// entry without a core record (a registration, a config version). grow
// (if set) appends one such entry on every DurableLSN: a journal that is
// never idle. read is told the last LSN of every ReadDurable that read one.
type memJournal struct {
	mu   sync.Mutex
	recs [][]byte
	grow bool
	read chan uint64
}

func (j *memJournal) DurableLSN() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.grow {
		j.recs = append(j.recs, nil)
	}
	return uint64(len(j.recs))
}

func (j *memJournal) ReadDurable(after uint64, max int, fn func(uint64, []byte) error) (uint64, error) {
	j.mu.Lock()
	recs := j.recs
	j.mu.Unlock()
	last := after
	for lsn := after + 1; lsn <= uint64(len(recs)) && (max <= 0 || lsn <= after+uint64(max)); lsn++ {
		if err := fn(lsn, recs[lsn-1]); err != nil {
			return last, err
		}
		last = lsn
	}
	if last > after && j.read != nil {
		select {
		case j.read <- last:
		default:
		}
	}
	return last, nil
}

// memStore keeps the batches it is given, in order.
type memStore struct {
	mu      sync.Mutex
	batches []settle.Batch
	hw      uint64
}

func (s *memStore) Ingest(_ context.Context, b *settle.Batch) (store.IngestResult, error) {
	if err := b.Validate(); err != nil {
		return store.IngestResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !b.WatermarkOnly() {
		if b.FirstLSN > s.hw+1 {
			return store.IngestResult{}, errors.New("gap")
		}
		s.hw = max(s.hw, b.LastLSN)
	}
	c := *b
	c.Rows = append([]settle.Txn(nil), b.Rows...)
	s.batches = append(s.batches, c)
	return store.IngestResult{Inserted: len(b.Rows)}, nil
}

func (s *memStore) HighWater(context.Context, string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hw, nil
}

func (s *memStore) state() (hw uint64, wm time.Time, batches []settle.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		wm = maxT(wm, b.Watermark)
	}
	return s.hw, wm, append([]settle.Batch(nil), s.batches...)
}

func maxT(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// purchaseAt is an approved purchase record decided at t.
func purchaseAt(t time.Time, seq uint64) []byte {
	r := core.Record{Version: 1, Op: core.OpPurchase, Code: terminals.CodeApproved, Seq: seq, Time: t.UnixNano(),
		Account: "county:C1", TID: "S1", Merchant: "stall-7", Txn: seq, Amount: 100}
	return r.AppendBinary(nil)
}

// startMem runs a handoff on j, st and c until the returned stop is called.
func startMem(t *testing.T, j *memJournal, st *memStore, c *fakeClock, lsnsMax int) (stop func()) {
	t.Helper()
	h, err := handoff.New(handoff.Config{
		Source: "gw-wm", Store: st, Journal: j,
		Entry: func(p []byte, fn func(string, []byte) error) error {
			if len(p) == 0 {
				return nil
			}
			return fn("S1", p)
		},
		Scene:        func(string) (string, bool) { return "stall", true },
		BatchLSNsMax: lsnsMax, BatchAge: time.Second, WatermarkLag: 2 * time.Second,
		PollEvery: time.Millisecond, RetryMin: time.Millisecond, RetryMax: time.Millisecond,
		Clock: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	return func() { cancel(); <-done }
}

// waitFor polls cond; the bound only ends a test whose handoff never gets
// there (what it claims is decided by the fake clock, not by this wait).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A journal that never stays idle for a batch age (here a record before
// every look, none of which settles: registrations, declines, config
// entries) never lets an idle watermark out; the batches themselves must
// move the watermark on, or settlement windows never close while the
// gateway keeps working.
func TestWatermarkAdvancesWhileTheJournalIsNeverIdle(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	c := &fakeClock{}
	c.set(t0, 50*time.Millisecond)
	j := &memJournal{grow: true}
	st := &memStore{}
	stop := startMem(t, j, st, c, 0)
	waitFor(t, "the clock passes 60 s of handoff", func() bool { return c.peek().After(t0.Add(60 * time.Second)) })
	stop()
	end := c.peek()
	hw, wm, batches := st.state()
	for _, b := range batches {
		if b.WatermarkOnly() {
			t.Fatalf("an idle watermark on a journal that was never idle: %+v", b)
		}
	}
	if hw == 0 || len(batches) < 10 {
		t.Fatalf("handed off to %d in %d batches", hw, len(batches))
	}
	// Lag 2 s, batch age 1 s, and the clock steps of one last loop.
	if want := end.Add(-10 * time.Second); wm.Before(want) {
		t.Fatalf("store watermark %s after %d batches; the clock is at %s, want at least %s",
			wm.Format(time.RFC3339Nano), len(batches), end.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
}

// A batch short of the journal's end claims no time past what it holds: a
// backlog (the store was down, the gateway restarted) whose first batch
// has no row must not carry now - lag while older payments wait behind it.
func TestWatermarkOfABatchShortOfTheJournalClaimsNoLaterRecords(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	c := &fakeClock{}
	c.set(t0, 0)
	old := t0.Add(-10 * time.Minute)
	j := &memJournal{recs: [][]byte{nil, nil, nil, purchaseAt(old, 1), purchaseAt(old.Add(time.Second), 2), purchaseAt(old.Add(2*time.Second), 3)}}
	st := &memStore{}
	stop := startMem(t, j, st, c, 3)
	waitFor(t, "the backlog is handed off", func() bool { hw, _, _ := st.state(); return hw == 6 })
	stop()
	_, _, batches := st.state()
	for _, b := range batches {
		for lsn := b.LastLSN + 1; lsn <= 6; lsn++ {
			if lsn < 4 {
				continue
			}
			at := old.Add(time.Duration(lsn-4) * time.Second)
			if !at.After(b.Watermark) {
				t.Fatalf("batch %s claims watermark %s, but LSN %d decided at %s comes after it",
					b.ID, b.Watermark.Format(time.RFC3339Nano), lsn, at.Format(time.RFC3339Nano))
			}
		}
	}
	// The batch that reached the journal's end moves the watermark as an
	// idle one would.
	if _, wm, _ := st.state(); !wm.Equal(t0.Add(-2 * time.Second)) {
		t.Fatalf("store watermark %s, want now - lag %s", wm, t0.Add(-2*time.Second))
	}
}

// A clock stepped back while a batch is open seals it anyway rather than
// holding it (and its rows) until the clock is back where it was.
func TestBatchSealedAfterTheClockStepsBack(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	c := &fakeClock{}
	c.set(t0, 0)
	j := &memJournal{recs: [][]byte{purchaseAt(t0.Add(-time.Second), 1)}, read: make(chan uint64, 1)}
	st := &memStore{}
	stop := startMem(t, j, st, c, 0)
	defer stop()
	select {
	case <-j.read:
	case <-time.After(20 * time.Second):
		t.Fatal("the handoff never read the journal")
	}
	c.set(t0.Add(-time.Hour), 0)
	waitFor(t, "the open batch is sealed after the clock stepped back an hour", func() bool { hw, _, _ := st.state(); return hw == 1 })
}
