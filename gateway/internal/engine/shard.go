package engine

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

type workKind uint8

const (
	workRequest  workKind = iota + 1 // purchase / reversal from a terminal
	workBalance                      // balance inquiry: read only
	workOperator                     // operator ledger operation
	workBarrier                      // snapshot: park the writer
	workConfig                       // install new scene rules (scenecfg.go)
	workStall                        // a wallet's payment through a stall code (stall.go)
	workSweep                        // expire due journeys and deposits (sweep.go)
)

// work is one unit for a shard writer; for journaled kinds it is also the
// journal Completion. Request work is pooled.
type work struct {
	kind workKind
	recv time.Time
	term *registry.Entry
	req  terminals.Request
	hash uint64
	tomb bool
	s    *shard

	code  terminals.Code
	reply []byte // sealed reply, owned by idem once stored
	entry []byte // reusable journal entry buffer

	in   core.Input
	out  core.Output
	res  chan OperatorResult
	errc chan error
	view OperatorResult

	parked *sync.WaitGroup
	resume chan struct{}

	hosp hospStep // hospital requests (hospital.go)

	rules *sceneRules // workConfig: the rules to install; resume is signalled after

	stall *stallJob // workStall

	sweep *sweepReq // workSweep: a Sweep call waiting for the pass (nil from the timer)

	// upPaid and upDebt are what an approved offline_upload took from the
	// card's balance and added to its debt (cardMoney), for the reply.
	upPaid, upDebt int64
}

func (w *work) reset() {
	entry := w.entry[:0]
	rec := w.out.Record[:0]
	*w = work{entry: entry}
	w.out.Record = rec
}

type shard struct {
	e  *Engine
	id int
	c  *core.Shard
	ch chan *work

	hosp hospShard // open hospital deposits of this shard's accounts (hospital.go)

	// snap is the ledger's snapshot encoding, made by the writer as it
	// parks for Engine.Snapshot (all writers encode at once, while the
	// journal syncs). Snapshot takes it away before resuming the writers
	// (releaseSnapBuffers), so it is empty between snapshots.
	snap bytes.Buffer
	// snapHint is the length of the writer's previous encoding: the new
	// buffer is allocated once at about that size, rather than grown by
	// doubling (copying) while the writer is parked.
	snapHint int
}

func (e *Engine) shardFor(r *terminals.Request) *shard {
	return e.shards[core.ShardOf(routeKey(r), len(e.shards))]
}

// offer queues w without blocking; false when the shard queue is at its bound.
func (s *shard) offer(w *work) bool {
	select {
	case s.ch <- w:
		return true
	default:
		return false
	}
}

func (s *shard) run() {
	defer s.e.wg.Done()
	for {
		var w *work
		select {
		case w = <-s.ch:
		case <-s.e.stop:
			return
		}
		switch w.kind {
		case workBarrier:
			s.snap.Reset()
			s.snap.Grow(s.snapHint + s.snapHint/16) // one allocation, with room for accounts opened since
			if err := s.c.Snapshot(&s.snap); err != nil {
				panic(fmt.Sprintf("engine: shard %d snapshot into memory: %v", s.id, err)) // cannot fail on a bytes.Buffer
			}
			s.snapHint = s.snap.Len()
			w.parked.Done()
			<-w.resume
		case workBalance:
			s.balance(w)
		case workRequest:
			s.request(w)
		case workOperator:
			s.operator(w)
		case workConfig:
			s.setRules(w.rules)
			w.resume <- struct{}{}
		case workStall:
			s.stallPay(w)
		case workSweep:
			s.sweep(w)
		}
	}
}

// opOf maps a request type to its core op. There is no fallback: a type
// not listed is op 0, which the core refuses UNSUPPORTED without a ledger
// effect, so a type added to the wire can never run as another op (an
// unknown type once became a balance inquiry here).
func opOf(typ string) core.Op {
	switch typ {
	case terminals.TypePurchase:
		return core.OpPurchase
	case terminals.TypeReversal:
		return core.OpReversal
	case terminals.TypeBalance:
		return core.OpBalance
	case terminals.TypeTapIn:
		return core.OpTapIn
	case terminals.TypeTapOut:
		return core.OpTapOut
	case terminals.TypeQRPay:
		return core.OpQRPay
	case terminals.TypeRefund:
		return core.OpRefund
	case terminals.TypeOfflineUpload:
		return core.OpTapUpload
	case terminals.TypeECNYOffline:
		return core.OpECNYOffline
	}
	return 0
}

func (s *shard) input(w *work) {
	r := &w.req
	t := w.term.Terminal()
	w.in = core.Input{
		Op: opOf(r.Type), Account: accountOf(r), Amount: r.Amt,
		TID: r.TID, Txn: r.Txn, Orig: r.Orig, Hash: w.hash, Merchant: t.Merchant,
		Route: r.Route, Stop: r.Stop, Code: r.PayCode,
	}
	if n := r.Taps.Len(); n > 0 {
		w.in.Taps = uploadTaps(r, make([]transit.Tap, 0, n))
	}
}

func (s *shard) sealReply(w *work, now time.Time, code terminals.Code, withBal bool) []byte {
	rep := terminals.Reply{V: terminals.Version, Type: w.req.Type, TID: w.req.TID, Txn: w.req.Txn, Code: code, GTS: now.UnixMilli()}
	if code == terminals.CodeApproved && w.out.Seq != 0 {
		rep.Auth = authRef(s.id, w.out.Seq)
	}
	if withBal {
		bal := w.out.Available
		rep.Bal = &bal
	}
	switch {
	case code != terminals.CodeApproved:
	case w.req.Type == terminals.TypeOfflineUpload:
		// What the card paid (docs/protocol.md section 16): taken from
		// the balance, and the part that became debt. A hold the upload
		// placed and closed again is in neither.
		amt := w.upPaid
		rep.Amt = &amt
		if w.upDebt > 0 {
			debt := w.upDebt
			rep.Debt = &debt
		}
	case isTap(w.req.Type) || isMarket(w.req.Type) || w.req.Type == terminals.TypeECNYOffline:
		amt := w.out.Amount // charged, held or captured by this tap; debited or refunded
		rep.Amt = &amt
	}
	rep.Out = w.out.Outcomes // offline_upload: one letter per tap
	var buf [320]byte
	return w.term.Seal(nil, rep.AppendJSON(buf[:0]))
}

func (s *shard) balance(w *work) {
	now := s.e.cfg.Clock()
	s.input(w)
	w.in.Amount = 0
	s.c.Step(now, &w.in, &w.out)
	sealed := s.sealReply(w, now, w.out.Code, w.out.Code == terminals.CodeApproved)
	s.e.publish(w.req.TID, sealed)
	s.e.observe(w.term, w.req.Inst.Kind, w.req.Type, w.out.Code, w.recv)
	s.e.release(w.term)
	s.e.pool.Put(w)
}

func (s *shard) request(w *work) {
	if isHospital(&w.req) {
		s.hospitalRequest(w)
		return
	}
	now := s.e.cfg.Clock()
	s.input(w)
	if !s.expireBeforeTap(w, now) { // expire.go
		return
	}
	var before cardMoney
	if w.req.Type == terminals.TypeOfflineUpload {
		before = s.cardMoney(w.in.Account)
	}
	s.c.Step(now, &w.in, &w.out)
	code := w.out.Code
	if w.req.Type == terminals.TypeOfflineUpload && code == terminals.CodeApproved {
		after := s.cardMoney(w.in.Account)
		w.upPaid, w.upDebt = before.balance-after.balance, after.debt-before.debt
	}
	if w.req.Type == terminals.TypeReversal && code == terminals.CodeOriginalNotFound && w.tomb {
		// The original was never seen: the reversal is acknowledged and the
		// tombstone (journaled with this entry) refuses the late original.
		code = terminals.CodeApproved
	}
	w.code = code
	w.reply = s.sealReply(w, now, code, code == terminals.CodeApproved && (w.req.Type == terminals.TypePurchase || w.req.Type == terminals.TypeECNYOffline || isTap(w.req.Type) || isMarket(w.req.Type)))
	w.s = s
	w.entry = appendTxnEntry(w.entry[:0], &txnEntry{
		tid: w.req.TID, txn: w.req.Txn, hash: w.hash, code: code, tomb: w.tomb, orig: w.req.Orig,
		record: w.out.Record, reply: w.reply,
	})
	s.e.journaling.Add(1) // Done in Durable
	if _, err := s.e.j.Append(w.entry, w); err != nil {
		s.e.fail(err)
		// Durable will not be called for a refused append: answer here. The
		// in-memory effect of Step is now ahead of the journal; the gateway
		// stops authorizing (Ready fails) and restarts from the journal.
		w.Durable(0, err)
	}
}

// Durable is the journal completion: called in LSN order after the fsync
// that covers the entry (or with err when the journal failed).
func (w *work) Durable(lsn uint64, err error) {
	e := w.s.e
	defer e.journaling.Done()
	if w.kind == workOperator {
		if err != nil {
			e.fail(err)
			w.errc <- fmt.Errorf("engine: journal: %w", err)
			return
		}
		w.res <- w.view
		return
	}
	if err != nil {
		e.fail(err)
		// No effect is durable: tell the terminal to retry later with the
		// same id. The pending idem entry stays, so nothing else is admitted
		// for this id until restart.
		rep := terminals.Reply{V: terminals.Version, Type: w.req.Type, TID: w.req.TID, Txn: w.req.Txn, Code: terminals.CodeSystemError, GTS: e.cfg.Clock().UnixMilli()}
		e.publish(w.req.TID, w.term.Seal(nil, rep.AppendJSON(nil)))
		e.observe(w.term, w.req.Inst.Kind, w.req.Type, terminals.CodeSystemError, w.recv)
		e.release(w.term)
		return
	}
	waiters := e.idem.Complete(w.req.TID, w.req.Txn, w.hash, w.code.Class(), w.reply)
	if f := w.out.Flags; f != 0 && w.req.Type == terminals.TypeOfflineUpload {
		// The upload put debt on the card: list it. Not here in the journal's
		// completion (a deny change waits for the journal itself).
		acct := w.in.Account
		go e.denyFlags(acct, f)
	}
	if w.code == terminals.CodeUnknownInstrument && w.req.Type == terminals.TypeOfflineUpload {
		// Rides of a card the bank does not know: first-ride losses.
		go e.firstRideLosses(w.in.Taps)
	}
	// The request is answered from here on: free its in-flight slot before
	// publishing, so that a terminal reacting to the reply at once is not
	// told BUSY by its own finished request.
	e.release(w.term)
	for i := 0; i <= waiters; i++ {
		e.publish(w.req.TID, w.reply)
	}
	if w.hosp.notice {
		e.publishNotice(w)
	}
	e.observe(w.term, w.req.Inst.Kind, w.req.Type, w.code, w.recv)
	if e.cfg.SnapshotEvery > 0 && e.since.Add(1) >= int64(e.cfg.SnapshotEvery) {
		e.since.Store(0)
		select {
		case e.snapCh <- struct{}{}:
		default:
		}
	}
	w.reply = nil
	e.pool.Put(w)
}

func (s *shard) operator(w *work) {
	now := s.e.cfg.Clock()
	w.s = s
	if w.in.Op == 0 { // read
		v, ok := s.c.Account(w.in.Account)
		s.answerAfterDurable(w, OperatorResult{Code: codeFound(ok), Account: v, Found: ok})
		return
	}
	s.c.Step(now, &w.in, &w.out)
	v, ok := s.c.Account(w.in.Account)
	w.view = OperatorResult{Code: w.out.Code, Account: v, Found: ok, DebtPaid: w.out.DebtPaid, flags: w.out.Flags}
	if len(w.out.Record) == 0 {
		// No record (a repeated top-up ref, a no-op): the state it reports
		// may rest on records not yet durable, e.g. the first call with the
		// same ref. Answer only once everything appended so far is durable.
		s.answerAfterDurable(w, w.view)
		return
	}
	entry := append([]byte{entryOperator}, w.out.Record...)
	s.e.journaling.Add(1) // Done in Durable
	if _, err := s.e.j.Append(entry, w); err != nil {
		s.e.journaling.Done() // a refused append gets no completion
		s.e.fail(err)
		w.errc <- fmt.Errorf("engine: journal: %w", err)
	}
}

func codeFound(ok bool) terminals.Code {
	if ok {
		return terminals.CodeApproved
	}
	return terminals.CodeUnknownInstrument
}

// answerAfterDurable answers an operator call once every record appended
// before it is durable, without holding up the shard writer.
func (s *shard) answerAfterDurable(w *work, r OperatorResult) {
	lsn := s.e.j.LastLSN()
	if s.e.j.DurableLSN() >= lsn {
		w.res <- r
		return
	}
	go func() {
		if err := s.e.j.Sync(lsn); err != nil {
			w.errc <- fmt.Errorf("engine: journal: %w", err)
			return
		}
		w.res <- r
	}()
}

// cardMoney is the part of an account's state an offline upload's reply
// reports the change of: the ledger balance (holds are not taken from it)
// and the card's debt outside its open journey (a journey's provisional
// debt is settled, or released, when the journey closes, as a hold is).
type cardMoney struct{ balance, debt int64 }

func (s *shard) cardMoney(key string) cardMoney {
	var m cardMoney
	if a, ok := s.c.Account(key); ok {
		m.balance = a.Balance
	}
	if c, ok := s.c.Card(key); ok {
		m.debt = c.Debt
		if c.Open {
			m.debt -= c.Journey.Debt
		}
	}
	return m
}

func isTap(typ string) bool {
	return typ == terminals.TypeTapIn || typ == terminals.TypeTapOut || typ == terminals.TypeOfflineUpload
}
