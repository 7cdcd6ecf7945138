package clearing

// The window scheduler. Tick(now) is the whole loop body:
//
//  1. make sure windows exist from the earliest stored transaction (or
//     from now, on an empty store) up to the window holding now;
//  2. close each OPEN window, oldest first, once it has drained: now and
//     every known source's watermark have passed its cut-off plus Grace,
//     so every batch carrying a transaction before the cut-off has been
//     ingested (a source's watermark says all its transactions up to
//     that gateway time are handed off);
//  3. settle each CLOSED window: clear it and write the settlements in the
//     same store transaction as the move to SETTLED;
//  4. reconcile a newly settled window against the journal, if one is
//     configured;
//  5. delete the e-CNY wallet syncs that can no longer mark a receipt
//     (store.PruneSyncs, at most SyncsPrunedPerTickMax), and refresh the
//     window state, held-receipt and recent-rows gauges.
//
// A window whose drain is incomplete stops the walk: later windows cannot
// have drained either, and settling out of order would make a late
// failure harder to read.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"scenepay/settlement/store"
)

// WindowsPerTickMax bounds the windows one Tick creates, so that a store
// with years of history catches up over several ticks, not in one.
const WindowsPerTickMax = 62

// SyncsPrunedPerTickMax bounds the wallet syncs one Tick deletes, so that
// a store with a long backlog of them trims it over several ticks.
const SyncsPrunedPerTickMax = 10_000

// RecentRowsGaugeMax bounds the count behind the recent-rows gauge (the
// count scans the unindexed recent part): ten times the size at which a
// pass moves everything, so only a mover that keeps failing reaches it.
const RecentRowsGaugeMax = 10 * store.RecentRowsMax

// LegSource supplies the per-payment division legs of a window's rows per
// merchant (market fee and insurance legs summed per kind and payee):
// store.Store implements it. Without one, clearing sees no legs and every
// market fee is rate-based.
type LegSource interface {
	Legs(ctx context.Context, w store.Window) (map[string][]store.Division, error)
}

// Config configures a Clearer.
type Config struct {
	Store store.Store // required
	// Calendar sets the cut-off (default 23:00 Asia/Shanghai).
	Calendar Calendar
	// Grace is how far past the cut-off now and every watermark must be
	// before a window closes: it absorbs clock skew between gateways and
	// gives a gateway that was down at the cut-off time to come back.
	Grace time.Duration
	// MinSources is how many known sources a window needs to close
	// (default 1): with none, nothing proves that no gateway is still
	// holding the window's transactions.
	MinSources int
	// Retired sources are ignored for drain: a decommissioned gateway
	// whose watermark will never move again.
	Retired []string
	// DefaultRate applies where no fee rate is stored (default 0).
	DefaultRate decimal.Decimal
	Legs        LegSource                              // optional
	Journal     Journal                                // optional: reconciliation after settlement
	OnSettled   func(store.Window, []store.Settlement) // optional: e.g. write the settlement file
	Registerer  prometheus.Registerer                  // nil: metrics are not registered
}

// Clearer runs the settlement windows of one store.
type Clearer struct {
	cfg     Config
	retired map[string]bool
	m       *metrics
	started bool // the first pass has moved the store's recent rows
}

// New returns a Clearer.
func New(cfg Config) (*Clearer, error) {
	if cfg.Store == nil {
		return nil, errors.New("clearing: a store is required")
	}
	if cfg.Grace < 0 {
		return nil, errors.New("clearing: grace must not be negative")
	}
	if cfg.MinSources <= 0 {
		cfg.MinSources = 1
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("clearing: metrics: %w", err)
	}
	c := &Clearer{cfg: cfg, retired: map[string]bool{}, m: m}
	for _, s := range cfg.Retired {
		c.retired[s] = true
	}
	return c, nil
}

// Calendar returns the clearer's calendar.
func (c *Clearer) Calendar() Calendar { return c.cfg.Calendar }

// TickResult says what one Tick did.
type TickResult struct {
	Opened  []string // window ids created
	Closed  []string
	Settled []string
	Waiting string // the oldest window still draining, if any
}

// Tick runs one pass of the scheduler at now.
func (c *Clearer) Tick(ctx context.Context, now time.Time) (TickResult, error) {
	res, err := c.tick(ctx, now)
	if err == nil {
		err = c.pruneSyncs(ctx)
	}
	if err != nil {
		c.m.tickErrors.Inc()
	}
	if err2 := c.refreshStateGauge(ctx, now); err == nil {
		err = err2
	}
	if err2 := c.refreshHeldGauges(ctx, now); err == nil {
		err = err2
	}
	if err2 := c.refreshRecentGauge(ctx); err == nil {
		err = err2
	}
	return res, err
}

// refreshRecentGauge counts the rows waiting in the store's recent part
// (store.RecentRows, at most RecentRowsGaugeMax).
func (c *Clearer) refreshRecentGauge(ctx context.Context) error {
	n, err := c.cfg.Store.RecentRows(ctx, RecentRowsGaugeMax)
	if err != nil {
		return fmt.Errorf("clearing: recent rows: %w", err)
	}
	c.m.recentRows.Set(float64(n))
	return nil
}

// move moves the recent rows before before (all for a zero before) and
// counts them.
func (c *Clearer) move(ctx context.Context, before time.Time) error {
	n, err := c.cfg.Store.MoveRecent(ctx, before)
	c.m.recentMoved.Add(float64(n))
	return err
}

// pruneSyncs deletes the wallet syncs before the oldest window not
// settled (store.PruneSyncs): they can mark no receipt that may still be
// ingested, and the table would otherwise keep every sync ever made.
func (c *Clearer) pruneSyncs(ctx context.Context) error {
	n, err := c.cfg.Store.PruneSyncs(ctx, SyncsPrunedPerTickMax)
	c.m.syncsPruned.Add(float64(n))
	if err != nil {
		return fmt.Errorf("clearing: prune e-CNY wallet syncs: %w", err)
	}
	return nil
}

// refreshHeldGauges sets the held e-CNY receipt gauges: count, fen and
// the age of the oldest at now.
func (c *Clearer) refreshHeldGauges(ctx context.Context, now time.Time) error {
	h, err := c.cfg.Store.HeldUnsynced(ctx)
	if err != nil {
		return fmt.Errorf("clearing: held e-CNY receipts: %w", err)
	}
	c.m.heldReceipts.Set(float64(h.Receipts))
	c.m.heldFen.Set(float64(h.Amount))
	age := 0.0
	if !h.Oldest.IsZero() && now.After(h.Oldest) {
		age = now.Sub(h.Oldest).Seconds()
	}
	c.m.heldOldest.Set(age)
	return nil
}

func (c *Clearer) tick(ctx context.Context, now time.Time) (TickResult, error) {
	var res TickResult
	opened, err := c.ensureWindows(ctx, now)
	res.Opened = opened
	if err != nil {
		return res, err
	}
	if err := c.moveRecent(ctx); err != nil {
		return res, err
	}
	wms, err := c.cfg.Store.Watermarks(ctx)
	if err != nil {
		return res, err
	}
	ws, err := c.cfg.Store.UnsettledWindows(ctx)
	if err != nil {
		return res, err
	}
	for _, w := range ws {
		if w.State == store.WindowOpen {
			if !c.drained(w, now, wms) {
				res.Waiting = w.ID
				return res, nil
			}
			changed, err := c.cfg.Store.CloseWindow(ctx, w.ID, now)
			if err != nil {
				return res, err
			}
			if changed {
				c.m.closed.Inc()
				res.Closed = append(res.Closed, w.ID)
				// The closed window's rows go to the store's indexed part.
				if err := c.move(ctx, w.CutOff); err != nil {
					return res, err
				}
			}
		}
		ss, changed, err := c.settle(ctx, w, now)
		if err != nil {
			return res, err
		}
		if !changed {
			continue
		}
		res.Settled = append(res.Settled, w.ID)
		c.m.settled.Inc()
		c.m.statements.Add(float64(len(ss)))
		if c.cfg.OnSettled != nil {
			c.cfg.OnSettled(w, ss)
		}
		if c.cfg.Journal != nil {
			if _, err := c.Reconcile(ctx, w.ID, now); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// moveRecent moves every row waiting in the store's unindexed recent
// part (store.MoveRecent) on the first pass and whenever
// store.RecentRowsMax rows wait; closing a window moves its rows too.
func (c *Clearer) moveRecent(ctx context.Context) error {
	if c.started {
		n, err := c.cfg.Store.RecentRows(ctx, store.RecentRowsMax)
		if err != nil || n < store.RecentRowsMax {
			return err
		}
	}
	if err := c.move(ctx, time.Time{}); err != nil {
		return err
	}
	c.started = true
	return nil
}

// drained reports whether window w may close at now.
func (c *Clearer) drained(w store.Window, now time.Time, wms []store.Watermark) bool {
	due := w.CutOff.Add(c.cfg.Grace)
	if now.Before(due) {
		return false
	}
	n := 0
	for _, m := range wms {
		if c.retired[m.Source] {
			continue
		}
		if m.At.Before(due) {
			return false
		}
		n++
	}
	return n >= c.cfg.MinSources
}

// ensureWindows creates the missing windows: before the earliest one if
// older transactions exist, and after the latest up to now's.
func (c *Clearer) ensureWindows(ctx context.Context, now time.Time) ([]string, error) {
	cal := c.cfg.Calendar
	target := cal.Of(now)
	var created []string
	open := func(w store.Window) error {
		if len(created) >= WindowsPerTickMax {
			return errStop
		}
		_, isNew, err := c.cfg.Store.OpenWindow(ctx, w)
		if err != nil {
			return err
		}
		if isNew {
			created = append(created, w.ID)
		}
		return nil
	}
	first, haveTxn, err := c.cfg.Store.FirstTxnAt(ctx)
	if err != nil {
		return nil, err
	}
	oldest, err := c.cfg.Store.Windows(ctx, "", "")
	if err != nil {
		return nil, err
	}
	var from store.Window
	switch {
	case len(oldest) == 0 && haveTxn && first.Before(target.Start):
		from = cal.Of(first)
	case len(oldest) == 0:
		from = target
	case haveTxn && first.Before(oldest[0].Start):
		// Older rows than any window (a backlog handed off late): open
		// their windows, walking forward up to the oldest one.
		for w := cal.Of(first); w.ID < oldest[0].ID; w = cal.Next(w) {
			if err := open(w); err != nil {
				return created, ignoreStop(err)
			}
		}
		from = oldest[0]
	default:
		from = oldest[0]
	}
	latest, ok, err := c.cfg.Store.LatestWindow(ctx)
	if err != nil {
		return created, err
	}
	if ok && latest.ID >= from.ID {
		from = cal.Next(latest)
		if latest.ID >= target.ID {
			return created, nil
		}
	}
	for w := from; w.ID <= target.ID; w = cal.Next(w) {
		if err := open(w); err != nil {
			return created, ignoreStop(err)
		}
	}
	return created, nil
}

var errStop = errors.New("stop")

func ignoreStop(err error) error {
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// Clear computes the settlements of window w from the store, without
// writing them.
func (c *Clearer) Clear(ctx context.Context, w store.Window) ([]store.Settlement, error) {
	st := c.cfg.Store
	scenes, err := st.SceneTotals(ctx, w.Start, w.CutOff)
	if err != nil {
		return nil, err
	}
	rs, err := st.FeeRates(ctx)
	if err != nil {
		return nil, err
	}
	rates, err := NewRates(rs, c.cfg.DefaultRate)
	if err != nil {
		return nil, err
	}
	ms, err := st.Merchants(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.Merchant, len(ms))
	for _, m := range ms {
		byID[m.ID] = m
	}
	var legs map[string][]store.Division
	if c.cfg.Legs != nil {
		if legs, err = c.cfg.Legs.Legs(ctx, w); err != nil {
			return nil, fmt.Errorf("clearing: division legs: %w", err)
		}
	}
	ss, err := Compute(w, scenes, rates, byID, legs)
	if err != nil {
		return nil, err
	}
	receipts, err := st.Unsynced(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("clearing: unsynced e-CNY receipts: %w", err)
	}
	return HoldUnsynced(w, ss, receipts)
}

func (c *Clearer) settle(ctx context.Context, w store.Window, now time.Time) ([]store.Settlement, bool, error) {
	ss, err := c.Clear(ctx, w)
	if err != nil {
		return nil, false, err
	}
	changed, err := c.cfg.Store.SettleWindow(ctx, w.ID, now, ss)
	return ss, changed, err
}

// refreshStateGauge sets scenepay_settlement_window_state{state}: the
// windows in each state among the last WindowsListMax business days.
func (c *Clearer) refreshStateGauge(ctx context.Context, now time.Time) error {
	from := c.cfg.Calendar.Of(now.AddDate(0, 0, -(store.WindowsListMax - 1)))
	ws, err := c.cfg.Store.Windows(ctx, from.ID, "")
	if err != nil {
		return err
	}
	n := map[store.WindowState]int{}
	for _, w := range ws {
		n[w.State]++
	}
	for _, s := range []store.WindowState{store.WindowOpen, store.WindowClosed, store.WindowSettled} {
		c.m.state.WithLabelValues(string(s)).Set(float64(n[s]))
	}
	return nil
}
