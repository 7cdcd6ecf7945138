package engine

import (
	"errors"
	"time"

	"scenepay/gateway/internal/idem"
	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

// HandleMessage processes one MQTT message from a request topic. It never
// blocks on the journal: admitted work is queued to its shard and answered
// from the journal's Durable callback; everything else is answered here.
// Safe for concurrent use; the MQTT client calls it from many goroutines.
func (e *Engine) HandleMessage(topic string, payload []byte) {
	recv := time.Now()
	tid, ok := e.cfg.Topics.TerminalFromTopic(topic)
	if !ok {
		e.m.BadTopic.Inc()
		return
	}
	term, ok := e.reg.Get(tid)
	if !ok {
		e.m.UnknownTerminal.Inc()
		e.log.Warn("message from unregistered terminal", "tid", tid, "bytes", len(payload))
		return
	}
	if len(payload) > terminals.MaxPayload {
		e.refuse(term, tid, "", 0, terminals.CodeOversize, recv)
		return
	}
	if term.Terminal().Blocked {
		e.refuse(term, tid, "", 0, terminals.CodeTerminalBlocked, recv)
		return
	}
	at := e.cfg.Clock()
	body, used, err := term.OpenAt(at, payload)
	if err != nil {
		e.refuse(term, tid, "", 0, codeOf(err), recv)
		return
	}
	// During a key rotation overlap the request may carry the previous key:
	// everything sealed for it from here on (refusals, the stored reply) is
	// sealed under the key it used, so the terminal can read it.
	term = used
	term.Touch(at)
	w := e.pool.Get().(*work)
	w.reset()
	w.recv = recv
	w.term = term
	if err := terminals.DecodeRequestInto(body, &w.req); err != nil {
		e.refuse(term, tid, w.req.Type, w.req.Txn, codeOf(err), recv)
		e.pool.Put(w)
		return
	}
	r := &w.req
	if r.TID != tid {
		e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeIDMismatch, recv)
		e.pool.Put(w)
		return
	}
	now := e.cfg.Clock()
	d := now.Sub(msTime(r.TS))
	stale := d > e.cfg.SkewMax || d < -e.cfg.SkewMax
	if stale && r.Type != terminals.TypePurchase && r.Type != terminals.TypeReversal && !isTap(r.Type) && !isMarket(r.Type) {
		e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeClockSkew, recv)
		e.pool.Put(w)
		return
	}
	if e.closed.Load() {
		e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeBusy, recv)
		e.pool.Put(w)
		return
	}
	if e.Ready() != nil {
		e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeSystemError, recv)
		e.pool.Put(w)
		return
	}
	switch r.Type {
	case terminals.TypeHeartbeat:
		e.noteConfigReport(tid, &r.Cfg, now)
		e.noteDenyReport(tid, &r.Cfg)
		e.noteBacklog(term, tid, &r.OBK, now)
		e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeApproved, recv)
		e.pool.Put(w)
		return
	case terminals.TypeBalance:
		if hw := e.idem.HighWater(tid); hw > e.cfg.Idem.Window && r.Txn <= hw-e.cfg.Idem.Window {
			e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeReplay, recv)
			e.pool.Put(w)
			return
		}
		if !e.acquire(term) {
			e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeBusy, recv)
			e.pool.Put(w)
			return
		}
		w.kind = workBalance
		if !e.shardFor(r).offer(w) {
			e.release(term)
			e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeBusy, recv)
			e.pool.Put(w)
		}
		return
	}
	// purchase, reversal, tap_in, tap_out, qr_pay, refund, hospital: idempotency first.
	if e.handoffRefuses(r.Type) || !e.acquire(term) {
		e.m.Busy.Inc()
		e.refuseAs(term, tid, r.Type, r.Inst.Kind, r.Txn, terminals.CodeBusy, recv)
		e.pool.Put(w)
		return
	}
	w.kind = workRequest
	w.hash = r.ContentHash()
	s := e.shardFor(r)
	res := e.idem.Begin(idem.Request{
		TID: tid, Txn: r.Txn, Hash: w.hash,
		Reversal: r.Type == terminals.TypeReversal, Orig: r.Orig, Stale: stale,
	}, func(tomb bool) bool {
		w.tomb = tomb
		return s.offer(w)
	})
	if res.Verdict == idem.Admitted {
		return // w now belongs to the shard
	}
	e.release(term)
	typ, txn, inst := r.Type, r.Txn, r.Inst.Kind
	e.pool.Put(w)
	switch res.Verdict {
	case idem.Duplicate:
		e.m.DuplicateReplays.Inc()
		e.publish(tid, res.Reply)
		e.observe(term, inst, typ, codeOfReply(res.Reply), recv)
	case idem.Waiting:
		// The reply will be published again for this copy on completion.
	case idem.Conflict:
		e.refuseAs(term, tid, typ, inst, txn, terminals.CodeIDConflict, recv)
	case idem.TooOld:
		e.refuseAs(term, tid, typ, inst, txn, terminals.CodeReplay, recv)
	case idem.Reversed:
		e.refuseAs(term, tid, typ, inst, txn, terminals.CodeAlreadyReversed, recv)
	case idem.Stale:
		e.refuseAs(term, tid, typ, inst, txn, terminals.CodeClockSkew, recv)
	default: // Busy, Full
		e.m.Busy.Inc()
		e.refuseAs(term, tid, typ, inst, txn, terminals.CodeBusy, recv)
	}
}

// acquire takes an in-flight slot for a request of term's scene; false at
// the bound (-inflight-max), which the caller answers BUSY.
func (e *Engine) acquire(term *registry.Entry) bool {
	select {
	case e.inflt <- struct{}{}:
		e.m.InFlight.WithLabelValues(sceneLabel(term)).Inc()
		return true
	default:
		return false
	}
}

// release frees the slot taken by acquire(term).
func (e *Engine) release(term *registry.Entry) {
	<-e.inflt
	e.m.InFlight.WithLabelValues(sceneLabel(term)).Dec()
}

// refuse answers a request that never reaches the ledger. Refusals are not
// journaled and not stored: a repeat gets the same code again.
func (e *Engine) refuse(term *registry.Entry, tid, typ string, txn uint64, code terminals.Code, recv time.Time) {
	e.refuseAs(term, tid, typ, "", txn, code, recv)
}

// refuseAs is refuse for a decoded request: inst (its instrument kind)
// labels the request metrics.
func (e *Engine) refuseAs(term *registry.Entry, tid, typ, inst string, txn uint64, code terminals.Code, recv time.Time) {
	if typ == "" {
		typ = "error"
	}
	rep := terminals.Reply{V: terminals.Version, Type: typ, TID: tid, Txn: txn, Code: code, GTS: e.cfg.Clock().UnixMilli()}
	var buf [256]byte
	body := rep.AppendJSON(buf[:0])
	e.publish(tid, term.Seal(nil, body))
	e.observe(term, inst, typ, code, recv)
}

// observe counts an answered request by type, code, scene (the terminal's
// kind) and instrument kind; every label is from a bounded set.
func (e *Engine) observe(term *registry.Entry, inst, typ string, code terminals.Code, recv time.Time) {
	typ = typeLabel(typ)
	scene, il := sceneLabel(term), instLabel(inst)
	e.m.Requests.WithLabelValues(typ, string(code), scene, il).Inc()
	e.m.Latency.WithLabelValues(typ, scene, il).Observe(time.Since(recv).Seconds())
}

func codeOf(err error) terminals.Code {
	var te *terminals.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return terminals.CodeMalformed
}

// codeOfReply reads the code of a stored sealed reply (for metrics only).
func codeOfReply(sealed []byte) terminals.Code {
	body, _, err := terminals.Split(sealed)
	if err != nil {
		return terminals.CodeSystemError
	}
	rep, err := terminals.DecodeReply(body)
	if err != nil {
		return terminals.CodeSystemError
	}
	return rep.Code
}
