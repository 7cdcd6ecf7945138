package engine

// The hospital kiosk path (docs/protocol.md, "Hospital kiosks"): inpatient
// deposits as long core holds and insurance-split purchases.
//
// Design. A deposit is named by (kiosk TID, txn id of its opening "hold");
// top-ups, captures and the discharge ("release") carry that txn as orig.
// Its state (a hospital.Deposit: which core holds form it, what each has
// captured, the low-balance crossing) lives in a small map beside the core
// shard of the patient's account, owned by that shard's single writer, so
// the hospital decision and its core effects are one step with no locks.
// Deriving it from the core's holds alone was rejected: the core does not
// know which holds form one deposit nor how far each was captured per order.
//
// One request can need several core effects (a capture spanning two holds;
// a discharge releasing each hold; a lazy expiry before the request). They
// are run in one writer step and journaled in ONE entry (type 5) holding
// every core record and the hospital plans, so they become durable together:
// replay applies the records and commits the plans in the same order, and a
// torn tail loses the whole step, never a part. Only the first effect of a
// plan can be declined by the core: the plan already guarantees the hold
// amounts, and the only other core decline of a capture, the e-CNY daily
// and annual limits, is checked for the plan's total before any effect
// runs (fitsLimits). A later decline is therefore a programmer error: the
// engine fails (stops authorizing) rather than reply on a half-applied plan.
//
// Expiry: the periodic sweep (sweep.go) releases a deposit past
// DepositExpiryHours without activity, journaled as a type 5 entry without
// a request part (txn length 0); the next request that names a deposit
// still due also releases it (the request then gets DEPOSIT_CLOSED), a
// safety net that finds nothing left after a sweep.
//
// Low balance: when a capture takes the deposit below LowBalanceFen (the
// crossing), a signed "deposit_low" message follows the capture's reply on
// the kiosk's reply topic, after the entry is durable.

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"scenepay/gateway/internal/bincur"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/scene/hospital"
	"scenepay/terminals"
)

// entryHospital is a hospital request: every core record of the step, the
// hospital plans and insurance legs, then the request's txn entry.
//
//	u8 5 | uvarint n | n x (uvarint len | core record) |
//	uvarint m | m x (uvarint len | plan) |
//	u8 has-split | if 1: 3 x uvarint (pooled, personal, self fen) |
//	uvarint len | type-1 txn entry with an empty core record
const entryHospital = 5

// DepositsMax bounds the open deposits of one shard (a named bound; past it
// a new deposit is refused with BUSY).
const DepositsMax = 65536

// hospShard is the hospital state of one shard, owned by its writer.
type hospShard struct {
	deps map[string]*hospital.Deposit // key depKey(tid, opening txn)
	plan [2]hospital.Plan             // reused: [0] lazy expiry, [1] the request
	// rules is the last "hospital" document installed (scenecfg.go); nil
	// until one is, then hospitalRules falls back to Config.Hospital.
	rules *hospital.Rules
}

func depKey(tid string, txn uint64) string { return tid + "/" + strconv.FormatUint(txn, 10) }

// hospitalRules returns the rules (Config.Hospital or the defaults).
func (e *Engine) hospitalRules() *hospital.Rules {
	if e.cfg.Hospital != nil {
		return e.cfg.Hospital
	}
	return defaultHospital
}

var defaultHospital = func() *hospital.Rules {
	r, err := hospital.NewRules(hospital.DefaultConfig())
	if err != nil {
		panic(err) // the default config is valid; pinned by a test
	}
	return r
}()

// isHospital reports whether r takes the hospital path.
func isHospital(r *terminals.Request) bool {
	switch r.Type {
	case terminals.TypeHold, terminals.TypeCapture, terminals.TypeRelease:
		return true
	case terminals.TypePurchase:
		return r.Item != "" || r.Ins.Set
	}
	return false
}

// hospStep is what one hospital request did, kept on the work item.
type hospStep struct {
	recs   []byte // uvarint-prefixed core records
	nrecs  int
	plans  []byte // uvarint-prefixed plans
	nplans int
	split  *hospital.BillSplit
	amt    *int64 // reply "amt": the remaining deposit, or the self-pay charged
	notice bool
	remain int64
}

func (h *hospStep) reset() { *h = hospStep{recs: h.recs[:0], plans: h.plans[:0]} }

func (h *hospStep) addRecord(rec []byte) {
	h.recs = binary.AppendUvarint(h.recs, uint64(len(rec)))
	h.recs = append(h.recs, rec...)
	h.nrecs++
}

func (s *shard) hospitalRequest(w *work) {
	now := s.e.cfg.Clock()
	rules := s.hospitalRules()
	r := &w.req
	hs := &w.hosp
	hs.reset()
	if s.hosp.deps == nil {
		s.hosp.deps = make(map[string]*hospital.Deposit)
	}
	code := s.hospitalDecide(w, rules, now)
	w.out.Seq, w.out.Available = 0, 0
	if v, ok := s.c.Account(r.Inst.Key()); ok {
		w.out.Available = v.Available
	}
	if code == terminals.CodeApproved {
		w.out.Seq = s.c.Seq()
	}
	w.code = code
	w.reply = s.sealHospital(w, now, code)
	w.s = s
	w.entry = append(w.entry[:0], entryHospital)
	w.entry = binary.AppendUvarint(w.entry, uint64(hs.nrecs))
	w.entry = append(w.entry, hs.recs...)
	w.entry = binary.AppendUvarint(w.entry, uint64(hs.nplans))
	w.entry = append(w.entry, hs.plans...)
	if hs.split != nil {
		w.entry = append(w.entry, 1)
		for _, l := range hs.split.Legs {
			w.entry = binary.AppendUvarint(w.entry, uint64(l.Amount))
		}
	} else {
		w.entry = append(w.entry, 0)
	}
	te := appendTxnEntry(nil, &txnEntry{tid: r.TID, txn: r.Txn, hash: w.hash, code: code, orig: r.Orig, reply: w.reply})
	w.entry = binary.AppendUvarint(w.entry, uint64(len(te)))
	w.entry = append(w.entry, te...)
	s.e.journaling.Add(1) // Done in Durable
	if _, err := s.e.j.Append(w.entry, w); err != nil {
		s.e.fail(err)
		w.Durable(0, err)
	}
}

// hospitalDecide plans, runs the core effects and commits; it returns the
// reply code. Nothing is changed when it returns a decline before effects.
func (s *shard) hospitalDecide(w *work, rules *hospital.Rules, now time.Time) terminals.Code {
	r := &w.req
	hs := &w.hosp
	acct := r.Inst.Key()
	if r.Type == terminals.TypePurchase {
		charge := r.Amt
		if r.Ins.Set {
			sp, err := rules.SplitBill(hospital.Bill{ID: strconv.FormatUint(r.Txn, 10), Item: r.Item, Total: r.Amt,
				Pooled: r.Ins.Pool, Personal: r.Ins.Personal, SelfPay: r.Ins.Self})
			if err != nil {
				return hospital.CodeOf(err)
			}
			if sp.Charge == 0 {
				return terminals.CodeInvalidAmount // nothing to charge at a kiosk: not a payment
			}
			hs.split, charge = &sp, sp.Charge
		} else if err := rules.CheckItem(r.Item, r.Amt); err != nil {
			return hospital.CodeOf(err)
		}
		s.input(w)
		w.in.Amount = charge
		s.c.Step(now, &w.in, &w.out)
		if len(w.out.Record) > 0 {
			hs.addRecord(w.out.Record)
		}
		amt := charge
		hs.amt = &amt
		return w.out.Code
	}
	open := r.Type == terminals.TypeHold && r.Orig == 0
	id := r.Txn
	if !open {
		id = r.Orig
	}
	key := depKey(r.TID, id)
	d := s.hosp.deps[key]
	if d != nil && d.Account != acct {
		d = nil // another patient's deposit looks like none
	}
	if d != nil {
		ep := &s.hosp.plan[0]
		if rules.Expire(d, now, ep) {
			if c := s.runPlan(w, rules, d, ep, now); c != terminals.CodeApproved {
				return c
			}
			delete(s.hosp.deps, key)
			return hospital.CodeDepositClosed
		}
	}
	p := &s.hosp.plan[1]
	var err error
	switch {
	case open:
		if len(s.hosp.deps) >= DepositsMax {
			return terminals.CodeBusy
		}
		d = &hospital.Deposit{}
		err = rules.Open(d, key, acct, r.Txn, r.Amt, now, p)
	case d == nil:
		err = hospital.ErrDepositNotOpen
	case r.Type == terminals.TypeHold:
		err = rules.TopUp(d, r.Txn, r.Amt, now, p)
	case r.Type == terminals.TypeCapture:
		err = rules.Capture(d, strconv.FormatUint(r.Txn, 10), r.Amt, false, now, p)
	default: // release: discharge
		order := ""
		if r.Amt > 0 {
			order = strconv.FormatUint(r.Txn, 10)
		}
		err = rules.Discharge(d, order, r.Amt, now, p)
	}
	if err != nil {
		return hospital.CodeOf(err)
	}
	if c := s.runPlan(w, rules, d, p, now); c != terminals.CodeApproved {
		return c
	}
	switch p.Kind {
	case hospital.KindOpen:
		s.hosp.deps[key] = d
	case hospital.KindDischarge:
		delete(s.hosp.deps, key)
	}
	rem := p.Remaining
	hs.amt = &rem
	hs.notice, hs.remain = p.Notice, rem
	return terminals.CodeApproved
}

// runPlan runs the plan's core effects in order, then commits it to d.
func (s *shard) runPlan(w *work, rules *hospital.Rules, d *hospital.Deposit, p *hospital.Plan, now time.Time) terminals.Code {
	hs := &w.hosp
	acct := d.Account
	if p.Kind == hospital.KindOpen {
		acct = p.Account // d is still empty
	}
	if !s.fitsLimits(acct, p, now) {
		return terminals.CodeLimitDaily
	}
	for i, ef := range p.Effects {
		w.in = core.Input{Account: acct, Amount: ef.Amount, TID: w.req.TID, Txn: w.req.Txn, Orig: ef.Txn,
			Hash: w.hash, Merchant: w.term.Terminal().Merchant}
		switch ef.Op {
		case hospital.EffectHold:
			w.in.Op, w.in.Txn, w.in.Orig = core.OpHold, ef.Txn, 0
		case hospital.EffectCapture:
			w.in.Op = core.OpCapture
		case hospital.EffectRelease:
			w.in.Op, w.in.Amount = core.OpRelease, 0
		}
		s.c.Step(now, &w.in, &w.out)
		if len(w.out.Record) > 0 {
			hs.addRecord(w.out.Record)
		}
		if w.out.Code != terminals.CodeApproved {
			if i == 0 {
				return w.out.Code
			}
			s.e.fail(fmt.Errorf("engine: hospital plan for deposit %s: effect %d (%s) declined %s after earlier effects applied", d.ID, i, ef.Op, w.out.Code))
			return terminals.CodeSystemError
		}
	}
	if err := rules.Commit(d, p); err != nil {
		s.e.fail(fmt.Errorf("engine: hospital commit for deposit %s: %w", d.ID, err))
		return terminals.CodeSystemError
	}
	hs.plans = binary.AppendUvarint(hs.plans, uint64(planLen(p)))
	hs.plans = appendPlan(hs.plans, p)
	hs.nplans++
	return terminals.CodeApproved
}

// fitsLimits checks the e-CNY daily and annual limits for the plan's total
// capture before any effect runs, so that a capture spanning several holds
// is approved for all of them or declined before the first (the core checks
// each capture again, with the same counters).
func (s *shard) fitsLimits(acct string, p *hospital.Plan, now time.Time) bool {
	var total int64
	for _, ef := range p.Effects {
		if ef.Op == hospital.EffectCapture {
			total += ef.Amount // each <= a hold's remainder: no overflow
		}
	}
	if total == 0 {
		return true
	}
	v, ok := s.c.Account(acct)
	if !ok || v.Kind != terminals.InstECNY || int(v.Class) >= len(s.e.cfg.Core.ECNY) {
		return true
	}
	l := s.e.cfg.Core.ECNY[v.Class]
	loc := s.e.cfg.Core.Loc
	if loc == nil {
		loc = time.UTC
	}
	y, m, dd := now.In(loc).Date()
	day := int32(time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	du, yu := total, total
	if v.Day == day {
		du += v.DayTotal
	}
	if v.Year == int32(y) {
		yu += v.YearTotal
	}
	return (l.Daily <= 0 || du <= l.Daily) && (l.Annual <= 0 || yu <= l.Annual)
}

func (s *shard) sealHospital(w *work, now time.Time, code terminals.Code) []byte {
	rep := terminals.Reply{V: terminals.Version, Type: w.req.Type, TID: w.req.TID, Txn: w.req.Txn, Code: code, GTS: now.UnixMilli()}
	if code == terminals.CodeApproved {
		if w.out.Seq != 0 {
			rep.Auth = authRef(s.id, w.out.Seq)
		}
		rep.Amt = w.hosp.amt
		bal := w.out.Available
		rep.Bal = &bal
	}
	var buf [320]byte
	return w.term.Seal(nil, rep.AppendJSON(buf[:0]))
}

// publishNotice sends the deposit_low notice after the capture's reply.
func (e *Engine) publishNotice(w *work) {
	rem := w.hosp.remain
	rep := terminals.Reply{V: terminals.Version, Type: terminals.ReplyDepositLow, TID: w.req.TID, Txn: w.req.Txn,
		Code: terminals.CodeApproved, Amt: &rem, GTS: e.cfg.Clock().UnixMilli()}
	e.publish(w.req.TID, w.term.Seal(nil, rep.AppendJSON(nil)))
}

// Plan encoding in a type 5 entry: kind u8 | seq u32 | at i64 | amount i64 |
// dup u8 | key, account, order (uvarint len | bytes) | uvarint n |
// n x (op u8 | txn u64 | amount i64).
func planLen(p *hospital.Plan) int {
	return 1 + 4 + 8 + 8 + 1 + 3*binary.MaxVarintLen64 + len(p.Deposit) + len(p.Account) + len(p.Order) +
		binary.MaxVarintLen64 + 17*len(p.Effects)
}

func appendPlan(dst []byte, p *hospital.Plan) []byte {
	start := len(dst)
	dst = append(dst, byte(p.Kind))
	dst = binary.LittleEndian.AppendUint32(dst, p.Seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(p.At))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Amount))
	dup := byte(0)
	if p.Duplicate {
		dup = 1
	}
	dst = append(dst, dup)
	for _, s := range []string{p.Deposit, p.Account, p.Order} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(p.Effects)))
	for _, e := range p.Effects {
		dst = append(dst, byte(e.Op))
		dst = binary.LittleEndian.AppendUint64(dst, e.Txn)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(e.Amount))
	}
	// pad to planLen so the length prefix written before is exact
	for len(dst)-start < planLen(p) {
		dst = append(dst, 0)
	}
	return dst
}

func decodePlan(b []byte, p *hospital.Plan) error {
	c := bincur.New(b, errEntry)
	h := c.Take(22)
	if c.Err != nil {
		return c.Err
	}
	*p = hospital.Plan{Kind: hospital.Kind(h[0]), Seq: binary.LittleEndian.Uint32(h[1:]),
		At: int64(binary.LittleEndian.Uint64(h[5:])), Amount: int64(binary.LittleEndian.Uint64(h[13:])), Duplicate: h[21] == 1}
	p.Deposit, p.Account, p.Order = string(c.Bytes()), string(c.Bytes()), string(c.Bytes())
	n := c.Uvarint()
	if c.Err == nil && n > 64 {
		return fmt.Errorf("%w: plan with %d effects", errEntry, n)
	}
	for i := uint64(0); i < n && c.Err == nil; i++ {
		e := c.Take(17)
		if c.Err != nil {
			break
		}
		p.Effects = append(p.Effects, hospital.Effect{Op: hospital.EffectOp(e[0]), Txn: binary.LittleEndian.Uint64(e[1:]),
			Amount: int64(binary.LittleEndian.Uint64(e[9:]))})
	}
	return c.Err // trailing padding is allowed
}

// hospitalEntry is a decoded type 5 entry.
type hospitalEntry struct {
	records [][]byte
	plans   [][]byte
	legs    []uint64
	txn     []byte
}

func decodeHospitalEntry(b []byte) (hospitalEntry, error) {
	var he hospitalEntry
	if len(b) == 0 || b[0] != entryHospital {
		return he, fmt.Errorf("%w: not a hospital entry", errEntry)
	}
	c := bincur.New(b[1:], errEntry)
	n := c.Uvarint()
	for i := uint64(0); i < n && c.Err == nil && i < 128; i++ {
		he.records = append(he.records, c.Bytes())
	}
	m := c.Uvarint()
	for i := uint64(0); i < m && c.Err == nil && i < 8; i++ {
		he.plans = append(he.plans, c.Bytes())
	}
	if f := c.Take(1); c.Err == nil && f[0] == 1 {
		he.legs = []uint64{c.Uvarint(), c.Uvarint(), c.Uvarint()}
	}
	he.txn = c.Bytes()
	if c.Err != nil {
		return he, c.Err
	}
	if uint64(len(he.records)) != n || uint64(len(he.plans)) != m || len(c.B) != 0 {
		return he, fmt.Errorf("%w: hospital entry shape", errEntry)
	}
	return he, nil
}

// applyHospitalEntry replays a type 5 entry: core records, then the plans
// committed to the shard's deposits, then the stored reply.
func (e *Engine) applyHospitalEntry(p []byte) error {
	he, err := decodeHospitalEntry(p)
	if err != nil {
		return err
	}
	var sh *shard
	for _, rec := range he.records {
		var r core.Record
		if err := core.DecodeRecord(rec, &r); err != nil {
			return err
		}
		if int(r.Shard) >= len(e.shards) {
			return fmt.Errorf("%w: record of shard %d", errEntry, r.Shard)
		}
		sh = e.shards[r.Shard]
		if err := sh.c.Apply(&r); err != nil {
			return err
		}
	}
	if len(he.plans) > 0 && sh == nil {
		// A plan without core records (the expiry of a deposit captured
		// in full releases nothing): the shard is the deposit's.
		sh = e.shardOfDeposit(he.plans[0])
		if sh == nil {
			return fmt.Errorf("%w: hospital plans without records for an unknown deposit", errEntry)
		}
	}
	for _, pb := range he.plans {
		rules := sh.hospitalRules() // sh is set: plans come with records
		var pl hospital.Plan
		if err := decodePlan(pb, &pl); err != nil {
			return err
		}
		if sh.hosp.deps == nil {
			sh.hosp.deps = make(map[string]*hospital.Deposit)
		}
		d := sh.hosp.deps[pl.Deposit]
		if d == nil {
			if pl.Kind != hospital.KindOpen {
				return fmt.Errorf("%w: hospital plan for unknown deposit %q", errEntry, pl.Deposit)
			}
			d = &hospital.Deposit{}
		}
		if err := rules.Commit(d, &pl); err != nil {
			return fmt.Errorf("%w: deposit %q: %v", errEntry, pl.Deposit, err)
		}
		switch d.State {
		case hospital.StateOpen:
			sh.hosp.deps[pl.Deposit] = d
		default:
			delete(sh.hosp.deps, pl.Deposit)
		}
	}
	if len(he.txn) == 0 {
		return nil // a sweep entry: no request, no stored reply
	}
	return e.applyEntry(he.txn)
}

// shardOfDeposit finds the shard holding the deposit a plan names.
func (e *Engine) shardOfDeposit(plan []byte) *shard {
	var pl hospital.Plan
	if decodePlan(plan, &pl) != nil {
		return nil
	}
	for _, s := range e.shards {
		if _, ok := s.hosp.deps[pl.Deposit]; ok {
			return s
		}
	}
	return nil
}

// hospitalRecords returns the core records of a type 5 entry.
func hospitalRecords(p []byte) (string, [][]byte, error) {
	he, err := decodeHospitalEntry(p)
	if err != nil {
		return "", nil, err
	}
	if len(he.txn) == 0 {
		return "", he.records, nil // a sweep entry: no request
	}
	var te txnEntry
	if err := decodeTxnEntry(he.txn, &te); err != nil {
		return "", nil, err
	}
	return te.tid, he.records, nil
}
