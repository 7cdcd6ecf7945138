package engine

// Live scene rules from the versioned config documents.
//
//	PUT -> compileDoc (strict scene decoder; refusal = 400, nothing journaled)
//	    -> journal + store (config.go) -> fsync
//	    -> installRules: one workConfig per shard, run by that shard's writer
//	       between two Steps; PutConfig returns once every writer has it
//	    -> publish retained to the terminals
//
// Recovery installs the rules of the snapshot's documents before replay and
// the rules of each replayed config entry at its place in the journal, so
// replay sees the same rules at every entry as the live run did. Replay does
// not depend on them for money (every core record carries its decision and
// amounts; Apply consults no fare, limit or policy), but two pieces of
// hospital and market bookkeeping read a bound from the rules (the order
// window of a deposit; the market's table sizes), which is why the market's
// bounds cannot change at run time and the hospital rules are replayed in
// journal order.
//
// A stored document that no longer compiles (one journaled before its scene
// decoder existed, or by an older, laxer decoder) keeps the previous rules
// for that name: it is logged and counted, and startup continues. The
// choice is a pure function of the journal, so every restart makes the
// same one.

import (
	"errors"
	"fmt"

	"scenepay/gateway/internal/confstore"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/scene/hospital"
	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/scene/transit"
)

// sceneRules is one compiled document: exactly one field is set.
type sceneRules struct {
	transit  *transit.Engine
	market   *market.Rules
	hospital *hospital.Rules
	limits   *core.LimitsTable
}

// compileDoc decodes a document with its scene's strict decoder. A refusal
// is a *confstore.Error (confstore.ErrInvalid) carrying the scene's reason.
func (e *Engine) compileDoc(name string, body []byte) (sceneRules, error) {
	var r sceneRules
	var err error
	switch name {
	case "transit":
		var c transit.Config
		if c, err = transit.DecodeConfig(body); err == nil {
			r.transit, err = transit.New(c)
		}
	case "market":
		var c market.Config
		if c, err = market.DecodeConfig(body); err == nil {
			if err = e.sameMarketBounds(c); err == nil {
				r.market, err = market.NewRules(c)
			}
		}
	case "hospital":
		var c hospital.Config
		if c, err = hospital.DecodeConfig(body); err == nil {
			r.hospital, err = hospital.NewRules(c)
		}
	case "limits":
		var t core.LimitsTable
		if t, err = core.DecodeLimitsDoc(body); err == nil {
			if t.Offline == (core.OfflineCaps{}) {
				t.Offline = e.cfg.Core.Offline // no offline section: the caps the gateway started with
			}
			r.limits = &t
		}
	default:
		return r, &confstore.Error{Code: confstore.ErrUnknownName, Msg: "unknown config name " + name}
	}
	if err != nil {
		return sceneRules{}, &confstore.Error{Code: confstore.ErrInvalid, Msg: err.Error()}
	}
	return r, nil
}

// sameMarketBounds refuses a market document that changes a table bound:
// the shard's used-code, payment and refund tables are sized at start-up,
// and the refund bound is read when records replay, so a bound changed at
// run time would either not take effect or make replay differ.
func (e *Engine) sameMarketBounds(c market.Config) error {
	run := e.cfg.Core.Market
	if run == nil {
		run = core.DefaultMarket()
	}
	rc := run.Config()
	for _, b := range []struct {
		name      string
		got, want int
	}{
		{"used_codes_max", c.UsedCodesMax, rc.UsedCodesMax},
		{"payments_max", c.PaymentsMax, rc.PaymentsMax},
		{"refunds_per_payment_max", c.RefundsPerPaymentMax, rc.RefundsPerPaymentMax},
		{"stall_codes_max", c.StallCodesMax, rc.StallCodesMax},
	} {
		if b.got != b.want {
			return fmt.Errorf("market: %s is %d; table bounds are fixed while the gateway runs (running: %d)", b.name, b.got, b.want)
		}
	}
	return nil
}

// setRules is run by the shard's writer (or by recovery, before the
// writers start).
func (s *shard) setRules(r *sceneRules) {
	switch {
	case r.transit != nil:
		s.c.SetTransit(r.transit)
	case r.market != nil:
		s.c.SetMarket(r.market)
	case r.hospital != nil:
		s.hosp.rules = r.hospital
	case r.limits != nil:
		s.c.SetLimits(r.limits.ECNY)
		s.c.SetOfflineCaps(r.limits.Offline)
	}
}

// hospitalRules returns the hospital rules this shard decides with: the last
// document installed, else Config.Hospital or the defaults.
func (s *shard) hospitalRules() *hospital.Rules {
	if s.hosp.rules != nil {
		return s.hosp.rules
	}
	return s.e.hospitalRules()
}

// errEngineClosed answers a config change that meets a closing engine.
var errEngineClosed = errors.New("engine closed")

// installRules hands r to every shard's writer and waits until each has
// taken it, so that a request admitted after PutConfig returns is decided
// with the new rules. Config changes are rare and serialized by conf.mu,
// so waiting for room in a full shard queue is acceptable here.
func (e *Engine) installRules(r *sceneRules) error {
	var done = make(chan struct{}, len(e.shards))
	for _, s := range e.shards {
		w := &work{kind: workConfig, rules: r, resume: done}
		select {
		case s.ch <- w:
		case <-e.stop:
			return errEngineClosed
		}
	}
	for range e.shards {
		select {
		case <-done:
		case <-e.stop:
			return errEngineClosed
		}
	}
	return nil
}

// installDoc compiles d and installs it directly on every shard: recovery
// only, before the writers run. A document that does not compile keeps the
// previous rules (see the top of this file).
func (e *Engine) installDoc(d confstore.Doc) {
	r, err := e.compileDoc(d.Name, d.Body)
	if err != nil {
		e.m.ConfigInvalidStored.Inc()
		e.log.Error("stored config document does not compile; the previous rules stay", "name", d.Name, "version", d.Version, "err", err)
		return
	}
	for _, s := range e.shards {
		s.setRules(&r)
	}
}

// rulesFromStore installs the rules of every current document (after the
// snapshot is loaded, before replay).
func (e *Engine) rulesFromStore() {
	for _, d := range e.conf.store.Current() {
		e.installDoc(d)
	}
}
