package engine

// The sweep: money that waits on a card or a patient who never comes back.
//
// DOMAIN.md: "no tap-out within the route's maximum journey time is charged
// the maximum fare" and "a hold expires by configuration if forgotten".
// Both were done lazily, by the card's next tap and by the next kiosk
// request naming the deposit, so a journey whose card is never seen again
// kept its maximum fare held (and the bus company unpaid), and a forgotten
// deposit kept the patient's money held, forever.
//
// Design. A timer (Config.SweepEvery, default 1 min) offers one sweep work
// item to each shard writer's queue; the writer, between two requests,
// expires what is due as of the clock's now, a bounded amount per pass
// (SweepBatchMax journeys and SweepBatchMax deposits, looking at no more
// than SweepScanMax open journeys), so a writer is never held up for long
// and a large backlog drains over several passes. Each expiry is one
// journal entry made of core records, so replay and snapshots stay
// deterministic and the records reach settlement like any other:
//
//   - a journey: core.OpJourneyExpire (a core record in an operator entry,
//     type 3): the whole hold captured for the boarding reader's merchant,
//     exactly what the card's next tap would have captured;
//   - a deposit: hospital.Rules.Expire's plan (release every leg's
//     remainder), run as core OpRelease records and journaled with the
//     plan in a hospital entry (type 5) without a request part, exactly
//     what the lazy path journals minus the request's reply.
//
// The lazy paths stay as a safety net (a sweep that could not run, a
// shard queue that was full) and find nothing left after a sweep. A sweep
// work item is offered without blocking: a full shard queue skips that
// shard until the next tick. Nothing is answered, so nothing waits for
// the fsync; the counter scenepay_gateway_swept_total counts expiries
// once durable.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

// Sweep bounds.
const (
	DefaultSweepEvery    = time.Minute // between passes
	DefaultSweepBatchMax = 256         // journeys, and deposits, expired per shard per pass
	SweepScanMax         = 4096        // open journeys looked at per shard per pass
)

// sweepCounts is what one pass of one shard expired.
type sweepCounts struct{ journeys, deposits int }

// sweepReq is a Sweep call waiting for its passes: each shard sends its
// counts on done, and durable counts every entry the passes journaled
// until its completion has run (the metric is counted there).
type sweepReq struct {
	done    chan sweepCounts
	durable sync.WaitGroup
}

// SweepResult is what Sweep expired, all durable.
type SweepResult struct {
	Journeys int // incomplete journeys charged the maximum fare
	Deposits int // forgotten deposits released
}

func newSweptCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scenepay_gateway_swept_total",
		Help: "Expiries made by the periodic sweep, once durable, by scene: bus (incomplete journeys charged the maximum fare) and kiosk (forgotten deposits released).",
	}, []string{"scene"})
	c.WithLabelValues(registry.KindBus)
	c.WithLabelValues(registry.KindKiosk)
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

func (e *Engine) sweepBatch() int {
	if e.cfg.SweepBatchMax > 0 {
		return e.cfg.SweepBatchMax
	}
	return DefaultSweepBatchMax
}

// sweepLoop offers a sweep to every shard each SweepEvery until Close.
func (e *Engine) sweepLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if e.Ready() != nil {
				continue
			}
			for _, s := range e.shards {
				s.offer(&work{kind: workSweep}) // a full queue: this shard waits for the next tick
			}
		}
	}
}

// Sweep runs one pass on every shard now and returns once every shard has
// done it and its records are durable. The timer does the same without
// waiting; Sweep is for operators and tests.
func (e *Engine) Sweep(ctx context.Context) (SweepResult, error) {
	if err := e.Ready(); err != nil {
		return SweepResult{}, err
	}
	req := &sweepReq{done: make(chan sweepCounts, len(e.shards))}
	for _, s := range e.shards {
		select {
		case s.ch <- &work{kind: workSweep, sweep: req}:
		case <-e.stop:
			return SweepResult{}, errors.New("engine closed")
		case <-ctx.Done():
			return SweepResult{}, ctx.Err()
		}
	}
	var res SweepResult
	for range e.shards {
		select {
		case n := <-req.done:
			res.Journeys += n.journeys
			res.Deposits += n.deposits
		case <-e.stop:
			return res, errors.New("engine closed")
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	req.durable.Wait() // every entry's completion has run (or the journal failed)
	if err := e.Ready(); err != nil {
		return res, err
	}
	return res, nil
}

// sweepDone is the journal completion of one sweep entry.
type sweepDone struct {
	e     *Engine
	scene string
	req   *sweepReq // nil from the timer
}

func (d sweepDone) Durable(_ uint64, err error) {
	defer d.e.journaling.Done()
	if d.req != nil {
		defer d.req.durable.Done()
	}
	if err != nil {
		d.e.fail(err)
		return
	}
	d.e.m.swept.WithLabelValues(d.scene).Inc()
}

// journalSweep appends one sweep entry; false when the journal refused it
// (the engine has failed and stops authorizing).
func (s *shard) journalSweep(w *work, entry []byte, scene string) bool {
	s.e.journaling.Add(1) // Done in Durable
	if w.sweep != nil {
		w.sweep.durable.Add(1)
	}
	if _, err := s.e.j.Append(entry, sweepDone{e: s.e, scene: scene, req: w.sweep}); err != nil {
		s.e.journaling.Done() // a refused append gets no completion
		if w.sweep != nil {
			w.sweep.durable.Done()
		}
		s.e.fail(err)
		return false
	}
	return true
}

// sweep is one pass on this shard, run by its writer.
func (s *shard) sweep(w *work) {
	var n sweepCounts
	if s.e.Ready() == nil {
		now := s.e.cfg.Clock()
		n.journeys = s.sweepJourneys(w, now)
		if s.e.Ready() == nil {
			n.deposits = s.sweepDeposits(w, now)
		}
	}
	if w.sweep != nil {
		w.sweep.done <- n
	}
}

func (s *shard) sweepJourneys(w *work, now time.Time) int {
	keys := s.c.DueJourneys(now, SweepScanMax, s.e.sweepBatch(), nil)
	n := 0
	for _, k := range keys {
		w.in = core.Input{Op: core.OpJourneyExpire, Account: k}
		s.c.Step(now, &w.in, &w.out)
		if len(w.out.Record) == 0 {
			continue // nothing due after all
		}
		w.entry = append(append(w.entry[:0], entryOperator), w.out.Record...)
		if !s.journalSweep(w, w.entry, registry.KindBus) {
			return n
		}
		n++
	}
	return n
}

// sweepDeposits releases the deposits past DepositExpiryHours without
// activity, at most SweepBatchMax per pass (the map scan itself is bounded
// by DepositsMax).
func (s *shard) sweepDeposits(w *work, now time.Time) int {
	if len(s.hosp.deps) == 0 {
		return 0
	}
	rules := s.hospitalRules()
	batch := s.e.sweepBatch()
	n := 0
	for key, d := range s.hosp.deps {
		if n >= batch {
			break
		}
		p := &s.hosp.plan[0]
		if !rules.Expire(d, now, p) {
			continue
		}
		hs := &w.hosp
		hs.reset()
		tid := key[:max(0, strings.LastIndexByte(key, '/'))]
		released := true
		for i, ef := range p.Effects {
			w.in = core.Input{Op: core.OpRelease, Account: d.Account, TID: tid, Txn: ef.Txn, Orig: ef.Txn}
			s.c.Step(now, &w.in, &w.out)
			if len(w.out.Record) > 0 {
				hs.addRecord(w.out.Record)
			}
			if w.out.Code != terminals.CodeApproved {
				if i == 0 {
					// Nothing applied: leave the deposit to the lazy path
					// and to the operator (logged, not retried in a loop
					// that holds up the writer: the next pass tries again).
					s.e.log.Error("sweep: deposit release declined", "deposit", key, "code", string(w.out.Code))
					released = false
					break
				}
				s.e.fail(fmt.Errorf("engine: sweep of deposit %s: release %d declined %s after earlier releases applied", key, i, w.out.Code))
				return n
			}
		}
		if !released {
			continue
		}
		if err := rules.Commit(d, p); err != nil {
			s.e.fail(fmt.Errorf("engine: sweep commit of deposit %s: %w", key, err))
			return n
		}
		delete(s.hosp.deps, key)
		hs.plans = binary.AppendUvarint(hs.plans, uint64(planLen(p)))
		hs.plans = appendPlan(hs.plans, p)
		hs.nplans++
		entry := append(w.entry[:0], entryHospital)
		entry = binary.AppendUvarint(entry, uint64(hs.nrecs))
		entry = append(entry, hs.recs...)
		entry = binary.AppendUvarint(entry, uint64(hs.nplans))
		entry = append(entry, hs.plans...)
		entry = append(entry, 0)               // no insurance split
		entry = binary.AppendUvarint(entry, 0) // no request: a sweep entry
		w.entry = entry
		if !s.journalSweep(w, entry, registry.KindKiosk) { // Append copies
			return n
		}
		n++
	}
	return n
}
