// Package engine owns the gateway's request path, from an MQTT payload to a
// durable, published reply:
//
//	verify (size, frame, terminal, MAC, body, topic id == payload id, skew)
//	  -> idempotency (idem: duplicate, conflict, replay window, tombstones)
//	  -> shard writer (core.Shard.Step: one goroutine per account shard)
//	  -> journal entry (group commit)  -> after fsync: store reply, publish.
//
// It also owns recovery (snapshot + journal replay), periodic snapshots and
// the operator's ledger operations, which take the same path minus MQTT.
//
// Invariant: a reply that reports an effect is published only from the
// journal's Durable callback, i.e. after the fsync that covers its entry.
// Lock order: idem stripe -> shard queue send (non-blocking); the snapshot
// lock (snapMu) is taken before parking shards and never while holding an
// idem stripe.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/idem"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/hospital"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// Publisher sends a reply payload to a topic, without blocking on the network.
type Publisher interface {
	Publish(topic string, payload []byte)
}

// Config of the engine. Every bound is named with its unit.
type Config struct {
	Dir             string // data directory: journal/ and snapshots/
	FS              vfs.FS // nil = vfs.Default
	Topics          terminals.Topics
	Shards          int           // account shards, one writer each (fixed for the life of the data)
	ShardQueueMax   int           // per-shard queue bound, requests
	InFlightMax     int           // admitted-but-unanswered requests bound
	SkewMax         time.Duration // allowed |terminal ts - gateway now|
	Idem            idem.Config
	Core            *core.Config
	TerminalsMax    int
	SnapshotEvery   int           // records between snapshots (0 = only on Close)
	OperatorTimeout time.Duration // how long an operator call waits
	Journal         journal.Options
	Clock           func() time.Time
	Logger          *slog.Logger
	Metrics         *Metrics
	// HandedOff, if set, returns the last LSN the settlement store holds;
	// after each snapshot the journal keeps everything after
	// min(previous snapshot, HandedOff()). Nil keeps the journal whole.
	HandedOff func() uint64
	// JournalRetain also keeps journal segments until their records are
	// this old, so that settlement can reconcile a window against the
	// journal (JournalTotals); 0 keeps only what recovery and the handoff
	// need. Applies only with HandedOff set.
	JournalRetain time.Duration
	// Hospital is the hospital scene's rules (deposits, items, insurance
	// split); nil = hospital.DefaultConfig.
	Hospital *hospital.Rules
	// SweepEvery is the interval of the sweep that charges incomplete
	// journeys and releases forgotten deposits without waiting for the card
	// or patient (sweep.go); 0 turns the timer off (Sweep still runs a pass).
	// SweepBatchMax bounds the journeys, and the deposits, one pass expires
	// per shard (0: DefaultSweepBatchMax).
	SweepEvery    time.Duration
	SweepBatchMax int
	// PayCodeKeyIDs are the consumer payment code issuer key versions the
	// market scene accepts, each derived from the master key with
	// market.IssuerKey (market.go); empty = DefaultPayCodeKeyIDs. Ignored
	// when Core already carries PayCodeKeys.
	PayCodeKeyIDs []uint8
	// DenyVersionBase starts a new data directory's bus deny list at a
	// version taken from the clock instead of 0 (denylist.go,
	// baseDenyList), so that its versions never overlap those of a list
	// that an earlier (reset) data directory published. The gateway sets
	// it; off, versions count from 0.
	DenyVersionBase bool
}

// DefaultConfig returns production defaults for dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:             dir,
		Topics:          terminals.DefaultTopics,
		Shards:          8,
		ShardQueueMax:   4096,
		InFlightMax:     20000,
		SkewMax:         5 * time.Minute,
		Idem:            idem.DefaultConfig(),
		Core:            core.DefaultConfig(),
		TerminalsMax:    100_000,
		SnapshotEvery:   200_000,
		OperatorTimeout: 10 * time.Second,
		Clock:           time.Now,
		SweepEvery:      DefaultSweepEvery,
	}
}

// Engine is the request path. Create with Open, then set a Publisher with
// SetPublisher before messages arrive.
type Engine struct {
	cfg      Config
	fs       vfs.FS
	log      *slog.Logger
	m        *Metrics
	reg      *registry.Registry
	idem     *idem.Store
	j        *journal.Journal
	shards   []*shard
	pub      atomic.Pointer[pubHolder]
	inflt    chan struct{}
	snapMu   sync.Mutex // serializes snapshots and terminal registrations
	snapRun  sync.Mutex // one Snapshot at a time, from parking to written
	since    atomic.Int64
	snapCh   chan struct{}
	failed   atomic.Pointer[error]
	failedCh chan struct{}
	closed   atomic.Bool
	wg       sync.WaitGroup
	stop     chan struct{}
	pool     sync.Pool
	lastSnp  atomic.Uint64
	marks    retainMarks // (lsn, time) marks for journal retention (retain.go)
	// totalsBusy: a journal totals scan runs (totals.go).
	totalsBusy atomic.Bool
	// journaling counts records appended by the shard writers whose journal
	// completion has not finished yet. Snapshot waits for it with every
	// writer parked (so no Add can race its Wait): journal.Sync returns as
	// soon as the records are durable, but their completions, which store
	// the replies in the idempotency store, run after that.
	journaling sync.WaitGroup
	conf       configState  // versioned scene configuration (config.go)
	deny       denyState    // the bus readers' deny list (denylist.go)
	backlog    backlogTable // last offline upload backlog per terminal (backlog.go)
	stall      stallState   // stall codes and the wallets' payment ids (stall.go)
	// handoffBusy refuses new payments while the settlement handoff is
	// past its backlog bound (handoff.go).
	handoffBusy atomic.Bool
}

type pubHolder struct{ p Publisher }

// ErrFailed is returned by operations once the journal has failed.
var ErrFailed = errors.New("engine: journal failed; gateway is stopping")

// Open recovers state from dir (latest snapshot, then the journal after it)
// and starts the shard writers. A corrupt journal stops it with an error.
func Open(cfg Config, master []byte) (*Engine, error) {
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Core == nil {
		cfg.Core = core.DefaultConfig()
	}
	if cfg.Shards <= 0 || cfg.ShardQueueMax <= 0 || cfg.InFlightMax <= 0 {
		return nil, errors.New("engine: Shards, ShardQueueMax and InFlightMax must be positive")
	}
	if len(master) < 16 {
		return nil, errors.New("engine: master key shorter than 16 bytes")
	}
	pc, err := withPayCodeKeys(cfg.Core, master, cfg.PayCodeKeyIDs)
	if err != nil {
		return nil, err
	}
	cfg.Core = pc
	e := &Engine{
		cfg:      cfg,
		fs:       cfg.FS,
		log:      cfg.Logger,
		m:        cfg.Metrics,
		reg:      registry.New(master, cfg.TerminalsMax),
		idem:     idem.New(cfg.Idem),
		inflt:    make(chan struct{}, cfg.InFlightMax),
		snapCh:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
		failedCh: make(chan struct{}),
	}
	e.pool.New = func() any { return new(work) }
	e.conf.init(master, cfg.TerminalsMax)
	e.deny.init()
	e.backlog.init(cfg.TerminalsMax)
	mr := cfg.Core.Market
	if mr == nil {
		mr = core.DefaultMarket()
	}
	e.stall.init(mr)
	e.shards = make([]*shard, cfg.Shards)
	for i := range e.shards {
		e.shards[i] = &shard{e: e, id: i, c: core.NewShard(uint32(i), cfg.Core), ch: make(chan *work, cfg.ShardQueueMax)}
	}
	if err := e.fs.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("engine: data dir: %w", err)
	}
	snapLSN, err := e.loadSnapshot()
	if err != nil {
		return nil, err
	}
	e.rulesFromStore() // the snapshot's scene rules, before replay (scenecfg.go)
	jo := cfg.Journal
	jo.FS = e.fs
	jo.Dir = e.journalDir()
	j, err := journal.Open(jo)
	if err != nil {
		return nil, fmt.Errorf("engine: open journal: %w", err)
	}
	e.j = j
	if last := j.LastLSN(); snapLSN > last {
		j.Close()
		return nil, fmt.Errorf("engine: snapshot at LSN %d is ahead of the journal (last LSN %d): journal segments are missing", snapLSN, last)
	}
	start := time.Now()
	n := 0
	err = j.Replay(snapLSN, func(lsn uint64, payload []byte) error {
		n++
		if err := e.applyEntry(payload); err != nil {
			return fmt.Errorf("journal LSN %d: %w", lsn, err)
		}
		return nil
	})
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("engine: replay: %w", err)
	}
	e.m.ReplayedEntries.Add(float64(n))
	if cfg.DenyVersionBase {
		if err := e.baseDenyList(); err != nil {
			j.Close()
			return nil, fmt.Errorf("engine: deny list base: %w", err)
		}
	}
	e.configRecovered()
	e.m.setConfigLagging(e.configLaggingCounts)
	e.m.setTerminalCounts(e.terminalCounts)
	e.m.deny.set(e)
	e.m.backlog.eng.Store(e)
	e.lastSnp.Store(snapLSN)
	e.log.Info("engine recovered", "snapshot_lsn", snapLSN, "replayed_entries", n, "last_lsn", j.LastLSN(),
		"terminals", e.reg.Len(), "took", time.Since(start).String())
	for _, s := range e.shards {
		e.wg.Add(1)
		go s.run()
	}
	e.wg.Add(1)
	go e.snapshotLoop()
	if cfg.SweepEvery > 0 {
		e.wg.Add(1)
		go e.sweepLoop()
	}
	return e, nil
}

func (e *Engine) journalDir() string  { return e.cfg.Dir + "/journal" }
func (e *Engine) snapshotDir() string { return e.cfg.Dir + "/snapshots" }

// SetPublisher sets where replies go. A publisher that can publish retained
// messages (RetainedPublisher) also gets every current config document and
// the deny list again, now and, if it tells of reconnects
// (ReconnectNotifier), after each one (config.go).
func (e *Engine) SetPublisher(p Publisher) {
	e.pub.Store(&pubHolder{p})
	if _, ok := p.(RetainedPublisher); ok {
		if n, ok := p.(ReconnectNotifier); ok {
			n.OnConnected(e.RepublishRetained)
		}
		go e.RepublishRetained()
	}
}

func (e *Engine) publish(tid string, payload []byte) {
	if h := e.pub.Load(); h != nil {
		h.p.Publish(e.cfg.Topics.Reply(tid), payload)
	}
}

// Ready reports whether the engine can authorize.
func (e *Engine) Ready() error {
	if p := e.failed.Load(); p != nil {
		return *p
	}
	if e.closed.Load() {
		return errors.New("engine closed")
	}
	return nil
}

// Failed is closed when the journal fails; main stops the process then.
func (e *Engine) Failed() <-chan struct{} { return e.failedCh }

func (e *Engine) fail(err error) {
	if e.failed.CompareAndSwap(nil, &err) {
		close(e.failedCh)
		e.m.JournalFailed.Set(1)
		e.log.Error("journal failed: the gateway stops authorizing", "err", err)
	}
}

// Registry exposes the terminal table (read-only use).
func (e *Engine) Registry() *registry.Registry { return e.reg }

// Journal exposes the journal (for metrics and tests).
func (e *Engine) Journal() *journal.Journal { return e.j }

// Close stops the writers, waits for durable replies, writes a snapshot and
// closes the journal.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	var serr error
	if e.failed.Load() == nil {
		serr = e.Snapshot()
	}
	// Work queued after the snapshot barrier may still be processed (it is
	// journaled after the snapshot LSN and replayed on restart) or dropped
	// unanswered (the terminal retries with the same id).
	close(e.stop)
	e.wg.Wait()
	jerr := e.j.Close()
	return errors.Join(serr, jerr)
}

// msTime converts a Unix-millisecond timestamp.
func msTime(ms int64) time.Time { return time.UnixMilli(ms) }

func authRef(shard int, seq uint64) string {
	b := make([]byte, 0, 20)
	if shard < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendInt(b, int64(shard), 10)
	b = append(b, '-')
	s := strconv.FormatUint(seq, 10)
	for i := len(s); i < 10; i++ {
		b = append(b, '0')
	}
	b = append(b, s...)
	return string(b)
}

// OperatorResult is the outcome of an operator ledger operation.
type OperatorResult struct {
	Code    terminals.Code
	Account core.AccountView
	Found   bool
	// DebtPaid is the part of a top-up that paid the card's transit debt
	// (core.Output.DebtPaid; a repeated ref reports what the call that
	// applied it paid); 0 for every other operation.
	DebtPaid int64
	flags    uint16 // core.Output.Flags: deny-list facts (denylist.go)
}

// Operate runs an operator ledger operation (open account, top-up, block,
// a card's concession profile, or a read with op 0) on the owning shard
// and waits until its record is durable.
func (e *Engine) Operate(ctx context.Context, in core.Input) (OperatorResult, error) {
	if err := e.Ready(); err != nil {
		return OperatorResult{}, err
	}
	w := &work{kind: workOperator, in: in, res: make(chan OperatorResult, 1), errc: make(chan error, 1)}
	s := e.shards[core.ShardOf(in.Account, len(e.shards))]
	ctx, cancel := context.WithTimeout(ctx, e.cfg.OperatorTimeout)
	defer cancel()
	select {
	case s.ch <- w:
	case <-e.stop:
		return OperatorResult{}, errors.New("engine closed")
	case <-ctx.Done():
		return OperatorResult{}, fmt.Errorf("engine: shard queue full: %w", ctx.Err())
	}
	select {
	case r := <-w.res:
		e.denyFlags(in.Account, r.flags)
		return r, nil
	case err := <-w.errc:
		return OperatorResult{}, err
	case <-e.stop:
		return OperatorResult{}, errors.New("engine closed")
	case <-ctx.Done():
		return OperatorResult{}, fmt.Errorf("engine: waiting for the journal: %w", ctx.Err())
	}
}

// RegisterTerminal inserts or replaces a terminal record and waits until it is durable.
func (e *Engine) RegisterTerminal(t registry.Terminal) error {
	if err := e.Ready(); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	e.snapMu.Lock()
	if err := e.reg.Put(t); err != nil {
		e.snapMu.Unlock()
		return err
	}
	payload := append([]byte{entryTerminal}, registry.Encode(t)...)
	lsn, err := e.j.Append(payload, nil)
	e.snapMu.Unlock()
	if err != nil {
		e.fail(err)
		return err
	}
	if err := e.j.Sync(lsn); err != nil {
		e.fail(err)
		return err
	}
	return nil
}

// applyEntry replays one journal entry into the in-memory state (startup).
func (e *Engine) applyEntry(p []byte) error {
	if len(p) == 0 {
		return fmt.Errorf("%w: empty", errEntry)
	}
	switch p[0] {
	case entryRequest:
		var te txnEntry
		if err := decodeTxnEntry(p, &te); err != nil {
			return err
		}
		if len(te.record) > 0 {
			if err := e.applyRecord(te.record); err != nil {
				return err
			}
		}
		var tomb uint64
		if te.tomb {
			tomb = te.orig
		}
		return e.idem.Restore(te.tid, te.txn, te.hash, te.code.Class(), append([]byte(nil), te.reply...), tomb)
	case entryTerminal:
		t, err := registry.Decode(p[1:])
		if err != nil {
			return err
		}
		return e.reg.Put(t)
	case entryOperator:
		return e.applyRecord(p[1:])
	case entryConfig:
		return e.applyConfigEntry(p[1:])
	case entryDeny:
		return e.applyDenyEntry(p[1:])
	case entryHospital:
		return e.applyHospitalEntry(p)
	case entryStall:
		return e.applyStallEntry(p)
	default:
		return fmt.Errorf("%w: unknown type %d", errEntry, p[0])
	}
}

func (e *Engine) applyRecord(b []byte) error {
	var r core.Record
	if err := core.DecodeRecord(b, &r); err != nil {
		return err
	}
	if int(r.Shard) >= len(e.shards) {
		return fmt.Errorf("%w: record of shard %d, gateway has %d shards (the shard count is fixed for the life of the data)", errEntry, r.Shard, len(e.shards))
	}
	return e.shards[r.Shard].c.Apply(&r)
}
