package handoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/core"
	settle "scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

// Journal is what the handoff reads: *journal.Journal.
type Journal interface {
	DurableLSN() uint64
	ReadDurable(afterLSN uint64, max int, fn func(lsn uint64, payload []byte) error) (uint64, error)
}

// Store is the part of the settlement store the handoff uses
// (store.Store satisfies it).
type Store interface {
	Ingest(ctx context.Context, b *settle.Batch) (store.IngestResult, error)
	HighWater(ctx context.Context, source string) (uint64, error)
}

// fillYieldEvery is how many journal records the handoff turns into rows
// between yields of the processor (about a millisecond of work): the
// handoff is background work sharing the gateway's few processors with the
// goroutines that answer terminals, and a goroutine that does not block is
// otherwise preempted only after 10 ms.
const fillYieldEvery = 256

// Steps named for Config.Hook (crash tests).
const (
	StepBeforeIngest = "before-ingest" // a batch is sealed; Ingest not called yet
	StepDuringIngest = "during-ingest" // called on its own goroutine while Ingest runs
	StepAfterIngest  = "after-ingest"  // Ingest returned nil; nothing recorded yet
)

// Config of the handoff. Zero bounds take the defaults below.
type Config struct {
	Source  string // gateway instance id: the batches' source
	Store   Store  // settlement store
	Journal Journal
	// Entry calls fn for every core record in a journal entry payload
	// (engine.EntryRecords): most entries hold one or none, a hospital
	// order spanning several holds holds several.
	Entry func(payload []byte, fn func(tid string, rec []byte) error) error
	// Scene returns the scene (terminal kind) of a terminal.
	Scene func(tid string) (string, bool)
	// Extras supplies the insurance split of hospital entries and the
	// payees of insurance legs and recovered transit debt
	// (engine.HandoffExtras). Without them a hospital row carries no
	// insurance legs and a top-up that paid debt stops the handoff.
	Extras Extras
	// Busy is told when the backlog passes BacklogMax (true) and when it
	// is back under 90% of it (false): engine.SetHandoffBusy.
	Busy func(on bool)

	BatchRowsMax int           // seal at this many rows (default 5000)
	BatchLSNsMax int           // seal at this many journal records (default 20000)
	BatchAge     time.Duration // seal a batch this old, and send an idle watermark this often (default 1 s)
	BacklogMax   uint64        // records durable but not handed off, past which new payments are refused (default 2,000,000)
	PollEvery    time.Duration // how often to look for new durable records (default 20 ms)
	RetryMin     time.Duration // first backoff after a failed ingest (default 100 ms)
	RetryMax     time.Duration // backoff cap (default 10 s)
	StoreTimeout time.Duration // bound on one store call (default 60 s)
	WatermarkLag time.Duration // idle (or caught-up batch) watermark = now - WatermarkLag, covering decisions not yet durable (default 2 s)
	Clock        func() time.Time
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	Hook         func(step string) // test-only; nil in production
}

// Defaults.
const (
	DefaultBatchRowsMax = 5000
	DefaultBatchLSNsMax = 20000
	DefaultBatchAge     = time.Second
	DefaultBacklogMax   = 2_000_000
	DefaultPollEvery    = 20 * time.Millisecond
	DefaultRetryMin     = 100 * time.Millisecond
	DefaultRetryMax     = 10 * time.Second
	DefaultStoreTimeout = 60 * time.Second
	DefaultWatermarkLag = 2 * time.Second
)

// ErrBacklog is reported by Ready while the backlog is past BacklogMax.
var ErrBacklog = errors.New("handoff: settlement backlog past its bound; new payments are refused")

// Handoff moves the journal into the settlement store. Create with New,
// run with Run.
type Handoff struct {
	cfg Config
	log *slog.Logger
	m   metrics

	handed  atomic.Uint64 // last LSN the store holds (its high water)
	started atomic.Bool   // handed is known (the store answered once)
	busy    atomic.Bool

	mu       sync.Mutex
	oldestAt time.Time // time of the oldest record read but not handed off
}

// New checks cfg and creates the handoff and its metrics.
func New(cfg Config) (*Handoff, error) {
	probe := settle.Batch{ID: settle.BatchID(cfg.Source, 0, 0), Source: cfg.Source,
		Watermark: time.Now().UTC().Truncate(time.Microsecond)}
	if err := probe.Validate(); err != nil {
		return nil, fmt.Errorf("handoff: source %q: %w", cfg.Source, err)
	}
	if cfg.Store == nil || cfg.Journal == nil || cfg.Entry == nil || cfg.Scene == nil {
		return nil, errors.New("handoff: Store, Journal, Entry and Scene are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.BatchRowsMax <= 0 {
		cfg.BatchRowsMax = DefaultBatchRowsMax
	}
	if cfg.BatchRowsMax > settle.BatchRowsMax {
		return nil, fmt.Errorf("handoff: BatchRowsMax %d over the contract's %d", cfg.BatchRowsMax, settle.BatchRowsMax)
	}
	if cfg.BatchLSNsMax <= 0 {
		cfg.BatchLSNsMax = DefaultBatchLSNsMax
	}
	if cfg.BacklogMax == 0 {
		cfg.BacklogMax = DefaultBacklogMax
	}
	def(&cfg.BatchAge, DefaultBatchAge)
	def(&cfg.PollEvery, DefaultPollEvery)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.StoreTimeout, DefaultStoreTimeout)
	def(&cfg.WatermarkLag, DefaultWatermarkLag)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handoff{cfg: cfg, log: cfg.Logger}
	h.m = newMetrics(cfg.Registerer, h)
	return h, nil
}

// HandedOff is the last LSN the settlement store is known to hold (0 until
// the store has answered once): the journal must keep everything after it.
func (h *Handoff) HandedOff() uint64 { return h.handed.Load() }

// Backlog is the number of durable journal records not yet handed off.
func (h *Handoff) Backlog() uint64 {
	d, hw := h.cfg.Journal.DurableLSN(), h.handed.Load()
	if d <= hw {
		return 0
	}
	return d - hw
}

// Ready is nil unless the backlog is past BacklogMax.
func (h *Handoff) Ready() error {
	if h.busy.Load() {
		return ErrBacklog
	}
	return nil
}

// lagSeconds is the age of the oldest record not handed off (0 if none).
func (h *Handoff) lagSeconds() float64 {
	if h.Backlog() == 0 {
		return 0
	}
	h.mu.Lock()
	at := h.oldestAt
	h.mu.Unlock()
	if at.IsZero() {
		return 0
	}
	return max(h.cfg.Clock().Sub(at).Seconds(), 0)
}

// pending is the batch being filled.
type pending struct {
	first, last uint64 // LSN range read (first == 0: nothing read)
	rows        []settle.Txn
	syncs       []settle.Sync // e-CNY wallet syncs no row shows
	opened      time.Time     // clock time the first record was read
	maxAt       time.Time     // latest row or sync time
	// caught is the latest clock time at which the batch held every
	// durable record (the clock read before the journal's durable end):
	// everything decided before caught - WatermarkLag is then in it or
	// in an earlier batch, as for an idle watermark. Zero: not yet.
	caught time.Time
}

// wmFloor is the watermark of a batch that can claim nothing more than the
// store already has (no row or sync time, nothing sent before, the journal
// not caught up): the earliest a batch may carry. The store keeps the
// greatest watermark, so it changes nothing.
var wmFloor = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// due reports whether d, the time since an event by the handoff's clock,
// is at least the batch age. A negative d is a clock stepped back: due
// too, rather than waiting for the clock to catch up with a batch (and the
// rows in it) held back meanwhile.
func (h *Handoff) due(d time.Duration) bool { return d >= h.cfg.BatchAge || d < 0 }

// Run hands off until ctx ends. It returns only ctx's error: store and
// journal failures are logged, counted and retried with backoff.
func (h *Handoff) Run(ctx context.Context) error {
	backoff := h.cfg.RetryMin
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	grow := func() { backoff = min(backoff*2, h.cfg.RetryMax) }
	for {
		hw, err := h.highWater(ctx)
		if err == nil {
			h.handed.Store(hw)
			h.started.Store(true)
			break
		}
		h.log.Warn("handoff: settlement store high water unavailable; retrying", "source", h.cfg.Source, "err", err, "retry_in", backoff.String())
		if !wait(backoff) {
			return ctx.Err()
		}
		grow()
	}
	h.log.Info("handoff started", "source", h.cfg.Source, "high_water", h.handed.Load(), "durable_lsn", h.cfg.Journal.DurableLSN())
	var p pending
	var lastWM time.Time
	lastSend := h.cfg.Clock()
	for ctx.Err() == nil {
		h.checkBacklog()
		now := h.cfg.Clock()
		if err := h.fill(&p, now); err != nil {
			h.m.batches.WithLabelValues("read_error").Inc()
			h.log.Error("handoff: reading the journal failed; retrying", "err", err, "retry_in", backoff.String())
			if !wait(backoff) {
				break
			}
			grow()
			continue
		}
		var b *settle.Batch
		switch {
		case p.first != 0 && (len(p.rows) >= h.cfg.BatchRowsMax || int(p.last-p.first+1) >= h.cfg.BatchLSNsMax ||
			h.due(now.Sub(p.opened))):
			// The watermark never goes back, covers every row and sync,
			// and, once the batch has caught up with the journal, moves
			// on as an idle one would: a gateway whose journal never
			// stays idle for a batch age (declines, registrations,
			// entries without a row) would otherwise hold it still.
			// Short of the journal's end, with no row time and nothing
			// sent before, it claims nothing: older records may follow.
			wm := maxTime(p.maxAt, lastWM)
			if !p.caught.IsZero() {
				wm = maxTime(wm, p.caught.Add(-h.cfg.WatermarkLag).UTC().Truncate(time.Microsecond))
			}
			if wm.IsZero() {
				wm = wmFloor
			}
			b = &settle.Batch{ID: settle.BatchID(h.cfg.Source, p.first, p.last), Source: h.cfg.Source,
				FirstLSN: p.first, LastLSN: p.last, Watermark: wm, Rows: p.rows, Syncs: p.syncs}
		case p.first == 0 && h.Backlog() == 0 && h.due(now.Sub(lastSend)):
			// Idle: nothing durable is unhanded, so everything decided
			// before now - WatermarkLag is in the store.
			wm := maxTime(now.Add(-h.cfg.WatermarkLag).UTC().Truncate(time.Microsecond), lastWM)
			b = &settle.Batch{ID: settle.BatchID(h.cfg.Source, 0, 0), Source: h.cfg.Source, Watermark: wm}
		}
		if b == nil {
			if !wait(h.cfg.PollEvery) {
				break
			}
			continue
		}
		if err := h.send(ctx, b); err != nil {
			if ctx.Err() != nil {
				break
			}
			h.log.Warn("handoff: ingest failed; retrying the same batch", "batch", b.ID, "rows", len(b.Rows), "err", err, "retry_in", backoff.String())
			if !wait(backoff) {
				break
			}
			grow()
			continue
		}
		backoff = h.cfg.RetryMin
		lastWM, lastSend = b.Watermark, h.cfg.Clock()
		if !b.WatermarkOnly() {
			h.handed.Store(b.LastLSN)
			p = pending{rows: p.rows[:0], syncs: p.syncs[:0]}
			h.mu.Lock()
			h.oldestAt = time.Time{}
			h.mu.Unlock()
		}
		h.checkBacklog()
	}
	return ctx.Err()
}

func (h *Handoff) highWater(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	return h.cfg.Store.HighWater(ctx, h.cfg.Source)
}

// fill reads durable records after the pending batch (or the high water)
// into it, up to the batch bounds.
func (h *Handoff) fill(p *pending, now time.Time) error {
	after := h.handed.Load()
	if p.first != 0 {
		after = p.last
	}
	room := h.cfg.BatchLSNsMax
	if p.first != 0 {
		room -= int(p.last - p.first + 1)
	}
	// The durable end is read after now (the caller's clock): a batch
	// that reaches it holds everything durable at now.
	durable := h.cfg.Journal.DurableLSN()
	if durable <= after {
		if p.first != 0 {
			p.caught = now
		}
		return nil
	}
	if room <= 0 || len(p.rows) >= h.cfg.BatchRowsMax {
		return nil
	}
	if uint64(room) > durable-after {
		room = int(durable - after)
	}
	var rec core.Record
	n := 0
	_, err := h.cfg.Journal.ReadDurable(after, room, func(lsn uint64, payload []byte) error {
		if len(p.rows) >= h.cfg.BatchRowsMax {
			return errBatchFull
		}
		if n++; n%fillYieldEvery == 0 {
			runtime.Gosched() // see fillYieldEvery
		}
		if len(p.syncs) >= settle.SyncsMax/2 {
			return errBatchFull
		}
		had := len(p.syncs)
		row, rows, at, err := entryRowSyncs(h.cfg.Source, lsn, payload, h.cfg.Entry, h.cfg.Scene, &rec, &h.cfg.Extras, &p.syncs)
		if err != nil {
			return err
		}
		for _, sy := range p.syncs[had:] {
			p.maxAt = maxTime(p.maxAt, sy.At) // the watermark covers the syncs too
		}
		if rows > 0 {
			p.rows = append(p.rows, row)
			p.maxAt = maxTime(p.maxAt, row.At)
		}
		if p.first == 0 {
			p.first, p.opened = lsn, now
			if at.IsZero() {
				at = now
			}
			h.mu.Lock()
			h.oldestAt = at
			h.mu.Unlock()
		}
		p.last = lsn
		return nil
	})
	if errors.Is(err, errBatchFull) {
		return nil
	}
	if err == nil && p.first != 0 && p.last == durable {
		p.caught = now
	}
	return err
}

var errBatchFull = errors.New("handoff: batch full")

// entryRow turns one journal entry into at most one settlement row. Rows
// are keyed by (source, LSN), so the money-moving records of one entry (a
// hospital capture spread over two holds) are summed into one row. at is
// the time of the entry's first record (zero when it has none).
//
// x (nil: none) supplies what the records do not carry: the insurance
// split of a hospital entry, added as legs of its row, and the payees.
func entryRow(source string, lsn uint64, payload []byte, entry func([]byte, func(string, []byte) error) error,
	scene func(string) (string, bool), rec *core.Record, x *Extras) (row settle.Txn, rows int, at time.Time, err error) {
	return entryRowSyncs(source, lsn, payload, entry, scene, rec, x, nil)
}

// entryRowSyncs is entryRow that also appends to *syncs (nil: not
// collected) the e-CNY wallet syncs of the entry that its row does not
// show (see walletSyncs).
func entryRowSyncs(source string, lsn uint64, payload []byte, entry func([]byte, func(string, []byte) error) error,
	scene func(string) (string, bool), rec *core.Record, x *Extras, syncs *[]settle.Sync) (row settle.Txn, rows int, at time.Time, err error) {
	var online []settle.Sync // the entry's wallet syncs, row or not
	var payees func() Payees
	if x != nil {
		payees = x.Payees
	}
	err = entry(payload, func(_ string, raw []byte) error {
		if err := core.DecodeRecord(raw, rec); err != nil {
			return &rowError{LSN: lsn, Reason: err.Error()}
		}
		if at.IsZero() {
			at = time.Unix(0, rec.Time).UTC()
		}
		if sy, ok := walletSync(lsn, rec); ok {
			online = append(online, sy)
		}
		r, ok, err := rowOf(source, lsn, rec, scene, payees)
		if err != nil || !ok {
			return err
		}
		if rows == 0 {
			row = r
		} else {
			if len(row.Legs) > 0 || len(r.Legs) > 0 {
				return &rowError{LSN: lsn, Reason: "division legs on an entry of several records"}
			}
			sum := row.Amount + r.Amount
			if (r.Amount > 0 && sum < row.Amount) || (r.Amount < 0 && sum > row.Amount) {
				return &rowError{LSN: lsn, Reason: "amount overflow merging the records of one entry"}
			}
			row.Amount = sum
		}
		rows++
		return nil
	})
	if err == nil && rows > 0 {
		err = insuranceLegs(lsn, payload, &row, x)
	}
	if err == nil {
		err = walletSyncs(lsn, &row, rows > 0, online, syncs)
	}
	if err != nil {
		var re *rowError
		if !errors.As(err, &re) {
			err = &rowError{LSN: lsn, Reason: err.Error()}
		}
	}
	return row, rows, at, err
}

// send ingests one batch, with the test hooks around it.
func (h *Handoff) send(ctx context.Context, b *settle.Batch) error {
	h.hook(StepBeforeIngest)
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StoreTimeout)
	defer cancel()
	if h.cfg.Hook != nil {
		go h.cfg.Hook(StepDuringIngest)
	}
	start := time.Now()
	res, err := h.cfg.Store.Ingest(store.WithChunkPause(ctx, func(took time.Duration) { h.rest(ctx, took) }), b)
	h.m.ingestSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		result := "error"
		var se *store.Error
		var he *settle.Error
		if errors.As(err, &se) || errors.As(err, &he) {
			result = "refused" // a bug or a reset store: retried, and paged on
		}
		h.m.batches.WithLabelValues(result).Inc()
		return err
	}
	h.hook(StepAfterIngest)
	switch {
	case b.WatermarkOnly():
		h.m.batches.WithLabelValues("watermark").Inc()
	case res.Duplicate:
		h.m.batches.WithLabelValues("duplicate").Inc()
	default:
		h.m.batches.WithLabelValues("ok").Inc()
	}
	h.m.rows.Add(float64(res.Inserted))
	return nil
}

func (h *Handoff) hook(step string) {
	if h.cfg.Hook != nil {
		h.cfg.Hook(step)
	}
}

// rest is called between the embedded store's chunks with the time the
// chunk took. While the handoff keeps up (a backlog of at most two
// batches) it sleeps as long: the settlement feed then takes at most half
// of a core in short steps instead of a whole one for tens of
// milliseconds, which on a small machine is time taken from the broker and
// from the goroutines answering terminals. Behind, it only yields, and
// catches up at full speed. A stop (ctx done) ends the rest at once.
func (h *Handoff) rest(ctx context.Context, took time.Duration) {
	if h.Backlog() > 2*uint64(h.cfg.BatchRowsMax) {
		runtime.Gosched()
		return
	}
	t := time.NewTimer(took)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkBacklog switches Busy with hysteresis: on past BacklogMax, off under
// 90% of it, so that the flag does not flap at the bound.
func (h *Handoff) checkBacklog() {
	bl := h.Backlog()
	switch {
	case !h.busy.Load() && bl > h.cfg.BacklogMax:
		h.busy.Store(true)
		h.log.Error("handoff backlog past its bound: new payments are refused with BUSY", "backlog", bl, "bound", h.cfg.BacklogMax)
		if h.cfg.Busy != nil {
			h.cfg.Busy(true)
		}
	case h.busy.Load() && bl < h.cfg.BacklogMax/10*9:
		h.busy.Store(false)
		h.log.Info("handoff backlog back under its bound: payments accepted again", "backlog", bl)
		if h.cfg.Busy != nil {
			h.cfg.Busy(false)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
