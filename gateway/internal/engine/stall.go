package engine

// Merchant-presented stall codes (PBoC notice 259): the registry of codes
// the operator registers and revokes, and payments through them reported
// by the customer's wallet backend (docs/protocol.md section 18,
// docs/operations.md "Stall codes").
//
// State. The registry (market.Registry) and the wallets' idempotency table
// are gateway-level, like the terminal registry: one stallState guarded by
// its mutex mu. Registry changes are journal entries (type 8) applied in
// journal order on replay; both are in snapshots (SPSNAP5).
//
// A payment runs on the payer's shard writer, in one writer step holding
// mu: Authorize the code (unknown, revoked, a dynamic code used or expired,
// amount, class; market.Registry.Authorize) with the writer's clock, then
// core Step (OpQRPay: QRStatic for class D, QRClass for a fresh dynamic
// code; the PBoC class limit, the e-CNY limits and funds are decided with
// the debit), then on approval MarkPaid, and the journal append. Holding
// mu from the check to the append makes a dynamic code single-use across
// shards (no second payment can pass Authorize before the first is marked)
// and makes the journal order of payments and registry changes the order
// in which they changed the registry, so replay rebuilds it exactly. The
// price is that stall payments of different shards serialize on mu for
// the length of one step; they are wallet-reported and few. Lock order:
// Engine.snapMu, then stallState.mu (registry changes take both; a shard
// writer takes only mu, so a snapshot that parks the writers while holding
// snapMu cannot wait on a writer that waits on it).
//
// Idempotency is on the wallet's payment id: the same id with the same
// content gets the stored answer (after its entry is durable), with other
// content ID_CONFLICT; answers found before the ledger (unknown or revoked
// code, a used or expired dynamic code, a refused remote collection, a
// wrong amount) are not stored, so they do not burn the id. The core's
// ledger id is (stall terminal, StallTxn(id)): a gateway-assigned txn with
// bit 62 set (2^62 .. 2^63-1), which a terminal's own counter never
// reaches and settlement's signed 64-bit txn column still holds.
//
// After the entry is durable the caller is answered and, for an approval,
// the stall terminal is sent a signed "paid" notice on its reply topic.
//
// Refunds (RefundStallPayment) take the same path with core.OpRefund on
// the paying account's shard, named (stall terminal, StallTxn(payment id))
// as the ledger knows the payment; a refund's id sits in the same table
// under refundKey ("r/" + id) and its entry is an op 3 entry without the
// used flag. A stall terminal cannot refund such a payment itself: the
// wire requires orig below the refund's txn.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/bincur"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// entryStall is a stall code change or payment:
//
//	u8 type (8) | u8 op
//	op 1 register: varint at (Unix ms) | stall id, merchant (uvarint len | bytes) |
//	               u8 stall business | uvarint len | market.StallCode.AppendBinary
//	op 2 revoke:   varint at (Unix ms) | uvarint len | code id
//	op 3 payment or refund (id "r/" + refund id):
//	               uvarint len | wallet id | u64 content hash (LE) | 2 bytes result code |
//	               uvarint len | code id | u8 flags (bit 0: the dynamic code is used up) |
//	               uvarint len | stall terminal id | uvarint len | core record |
//	               uvarint len | stored answer (JSON)
const entryStall = 8

const (
	stallOpRegister = 1
	stallOpRevoke   = 2
	stallOpPay      = 3

	stallFlagUsed = 1
)

// Bounds of the stall code path.
const (
	// StallPaymentIDsMax bounds the wallets' payment ids remembered for
	// idempotency (oldest forgotten first); a wallet must not retry an id
	// after this many later payments.
	StallPaymentIDsMax = 1 << 16
	// StallPendingMax bounds stall payments admitted but not answered;
	// past it a payment is answered BUSY.
	StallPendingMax = 1024
	// StallIDLenMax bounds a wallet's payment id.
	StallIDLenMax = 64
	// StallListMax bounds one listing of a merchant's codes.
	StallListMax = 1000
)

// StallCodePrefix starts every code id the gateway issues: "SC" and 20
// characters of base32 (100 random bits).
const StallCodePrefix = "SC"

// Errors of stall code registration.
var (
	ErrStallTerminal = errors.New("engine: stall codes are registered for a registered stall terminal (kind stall)")
	ErrStallMerchant = errors.New("engine: merchant differs from the stall terminal's merchant")
)

// stallState is the registry and the wallets' idempotency table.
type stallState struct {
	mu  sync.Mutex
	reg *market.Registry
	// pays maps a wallet payment id to its answer; order is the FIFO of
	// ids with a journaled answer (journal order), for eviction.
	pays    map[string]*stallRec
	order   []string // ring of StallPaymentIDsMax
	head, n int
	// pending counts payments admitted and not yet answered. Atomic: the
	// journal completion must not take mu (a writer holding mu may be
	// waiting in Append for room only the completing goroutine frees).
	pending atomic.Int32
}

// stallRec is one wallet payment id: pending until its answer is durable.
type stallRec struct {
	hash  uint64
	code  terminals.Code
	body  []byte        // stored answer; nil until journaled
	ready chan struct{} // closed when the answer is durable (or the id is freed, or the journal failed)
	freed bool          // answered before the ledger: not stored, the id is free again
	// durable is set before ready closes when body is durable; a journal
	// failure closes ready without it.
	durable atomic.Bool
}

func (st *stallState) init(r *market.Rules) {
	st.reg = market.NewRegistry(r)
	st.pays = map[string]*stallRec{}
	st.order = make([]string, StallPaymentIDsMax)
}

// remember files a journaled answer in the FIFO (mu held), forgetting the
// oldest id when full.
func (st *stallState) remember(id string, rec *stallRec) {
	if st.n == len(st.order) {
		old := st.order[st.head]
		if r := st.pays[old]; r != nil && r.body != nil {
			delete(st.pays, old)
		}
		st.head = (st.head + 1) % len(st.order)
		st.n--
	}
	st.order[(st.head+st.n)%len(st.order)] = id
	st.n++
	st.pays[id] = rec
}

// StallCodeSpec is an operator's registration of a stall code.
type StallCodeSpec struct {
	TID      string // the stall terminal
	Merchant string // optional: must be the terminal's merchant
	Dynamic  bool
	Business bool
	// StallBusiness marks the stall as having clear business activity
	// (sticky): from then on it registers business codes only.
	StallBusiness bool
	Amount        int64         // dynamic: fen to collect
	TTL           time.Duration // dynamic: life of the code, <= market.StallCodeTTLMax
}

// StallCodeView is a registered code with its stall's merchant.
type StallCodeView struct {
	market.StallCode
	Merchant      string
	StallBusiness bool
}

func newStallCodeID() string {
	var b [13]byte
	_, _ = rand.Read(b[:])
	return StallCodePrefix + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:20]
}

func (e *Engine) stallTerminal(tid string) (registry.Terminal, error) {
	te, ok := e.reg.Get(tid)
	if !ok {
		return registry.Terminal{}, ErrStallTerminal
	}
	t := te.Terminal()
	if t.Kind != registry.KindStall {
		return registry.Terminal{}, ErrStallTerminal
	}
	return t, nil
}

// RegisterStallCode registers a new code for a stall terminal and returns
// it once its journal entry is durable. Refusals are *market.Decline
// values (shape, notice 259, full) or ErrStallTerminal/ErrStallMerchant.
func (e *Engine) RegisterStallCode(spec StallCodeSpec) (StallCodeView, error) {
	if err := e.Ready(); err != nil {
		return StallCodeView{}, err
	}
	t, err := e.stallTerminal(spec.TID)
	if err != nil {
		return StallCodeView{}, err
	}
	if spec.Merchant != "" && spec.Merchant != t.Merchant {
		return StallCodeView{}, ErrStallMerchant
	}
	now := e.cfg.Clock()
	c := market.StallCode{ID: newStallCodeID(), Stall: t.TID, Dynamic: spec.Dynamic, Business: spec.Business, Amount: spec.Amount}
	if spec.Dynamic {
		c.Expires = now.Add(spec.TTL).UnixMilli()
	}
	st := &e.stall
	e.snapMu.Lock()
	st.mu.Lock()
	old, had := st.reg.Stall(t.TID)
	stall := market.Stall{ID: t.TID, Merchant: t.Merchant, Business: spec.StallBusiness || old.Business}
	if err := st.registerLocked(stall, c, now); err != nil {
		st.reg.RestoreStall(t.TID, old, had)
		st.mu.Unlock()
		e.snapMu.Unlock()
		return StallCodeView{}, err
	}
	c, _ = st.reg.Code(c.ID)
	payload := appendStallRegister(nil, now, stall, &c)
	lsn, err := e.j.Append(payload, nil)
	st.mu.Unlock()
	e.snapMu.Unlock()
	if err == nil {
		err = e.j.Sync(lsn)
	}
	if err != nil {
		e.fail(err)
		return StallCodeView{}, err
	}
	return StallCodeView{StallCode: c, Merchant: stall.Merchant, StallBusiness: stall.Business}, nil
}

// registerLocked adds the stall (replacing its record) and the code; on
// an error the caller puts the stall's previous record back, so that a
// refused registration leaves nothing that replay would not rebuild.
func (st *stallState) registerLocked(stall market.Stall, c market.StallCode, now time.Time) error {
	if err := st.reg.AddStall(stall); err != nil {
		return err
	}
	return st.reg.Register(c, now)
}

// RevokeStallCode revokes a code (idempotent: a revoked code is returned
// as it is). An unknown code is market.ErrUnknownStallCode.
func (e *Engine) RevokeStallCode(id string) (StallCodeView, error) {
	if err := e.Ready(); err != nil {
		return StallCodeView{}, err
	}
	st := &e.stall
	now := e.cfg.Clock()
	e.snapMu.Lock()
	st.mu.Lock()
	c, changed, err := st.reg.Revoke(id, now)
	var lsn uint64
	if err == nil && changed {
		lsn, err = e.j.Append(appendStallRevoke(nil, now, id), nil)
		if err != nil {
			e.fail(err)
		}
	}
	v := st.viewLocked(c)
	st.mu.Unlock()
	e.snapMu.Unlock()
	if err != nil {
		return StallCodeView{}, err
	}
	if changed {
		if err := e.j.Sync(lsn); err != nil {
			e.fail(err)
			return StallCodeView{}, err
		}
	}
	return v, nil
}

func (st *stallState) viewLocked(c market.StallCode) StallCodeView {
	s, _ := st.reg.Stall(c.Stall)
	return StallCodeView{StallCode: c, Merchant: s.Merchant, StallBusiness: s.Business}
}

// StallCode returns a registered code.
func (e *Engine) StallCode(id string) (StallCodeView, bool) {
	st := &e.stall
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.reg.Code(id)
	if !ok {
		return StallCodeView{}, false
	}
	return st.viewLocked(c), true
}

// StallCodes lists merchant's codes by id after the id after, at most
// limit (<= StallListMax); more reports whether more follow.
func (e *Engine) StallCodes(merchant, after string, limit int) ([]StallCodeView, bool) {
	limit = max(0, min(limit, StallListMax))
	st := &e.stall
	st.mu.Lock()
	defer st.mu.Unlock()
	cs, more := st.reg.Codes(merchant, after, limit)
	out := make([]StallCodeView, len(cs))
	for i, c := range cs {
		out[i] = st.viewLocked(c)
	}
	return out, more
}

// StallPay is a wallet backend's report of a payment through a stall code.
type StallPay struct {
	Code     string       // the stall code id
	Account  string       // the payer's ledger key
	Amount   int64        // fen; 0 on a dynamic code takes its amount
	ID       string       // the wallet's idempotency id
	Verified market.Class // the payer's verification class (A..C)
	Remote   bool         // not face to face
}

// StallPayResult is the answer to a StallPay: Body is the stored answer
// (JSON, an opwire.StallDecision) for everything the ledger decided,
// Reason a text for the rest.
type StallPayResult struct {
	Code      terminals.Code
	Body      []byte
	Reason    string
	Duplicate bool
}

// StallTxn is the ledger txn id of wallet payment id: bit 62 set and 62
// bits of SHA-256 of the id below it (two ids that collide are refused
// ID_CONFLICT by the ledger, never merged).
func StallTxn(id string) uint64 {
	sum := sha256.Sum256([]byte("scenepay/stallpay/v1|" + id))
	return binary.LittleEndian.Uint64(sum[:])&(1<<62-1) | 1<<62
}

// hash is the idempotency fingerprint of a report.
func (p *StallPay) hash() uint64 {
	h := sha256.New()
	var b []byte
	for _, s := range []string{p.Code, p.Account, p.ID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, p.Amount)
	b = append(b, byte(p.Verified))
	if p.Remote {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	h.Write(b)
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

// stallJob is a payment on its way through a shard writer; it is the
// journal completion of its entry.
type stallJob struct {
	e      *Engine
	p      StallPay
	key    string // the id in the idempotency table (a refund's is refundKey)
	refund *stallRefund
	hash   uint64
	rec    *stallRec
	res    chan StallPayResult
	// set by the writer for the completion
	code   terminals.Code
	notice *terminals.Paid
}

func newStallPaysCounter(reg prometheus.Registerer, name, help string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"code"})
	c.WithLabelValues(string(terminals.CodeApproved)) // from the start: an idle market reads 0
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// PayStallCode decides a wallet's payment through a stall code and returns
// once the answer is durable (or refused before the ledger). Every answer
// is counted by its code (an error as SYSTEM_ERROR).
func (e *Engine) PayStallCode(ctx context.Context, p StallPay) (StallPayResult, error) {
	r, err := e.payStallCode(ctx, p)
	code := r.Code
	if err != nil {
		code = terminals.CodeSystemError
	}
	e.m.stallPays.WithLabelValues(string(code)).Inc()
	return r, err
}

func (e *Engine) payStallCode(ctx context.Context, p StallPay) (StallPayResult, error) {
	if err := e.Ready(); err != nil {
		return StallPayResult{}, err
	}
	if p.ID == "" || len(p.ID) > StallIDLenMax || p.Code == "" || len(p.Code) > market.MaxIDLen || p.Account == "" || len(p.Account) > market.MaxIDLen {
		return StallPayResult{Code: terminals.CodeMalformed, Reason: "id, code and account are 1..64 bytes"}, nil
	}
	j := &stallJob{e: e, p: p, key: p.ID, hash: p.hash(), res: make(chan StallPayResult, 1)}
	return e.runStall(ctx, j, p.Account)
}

// runStall admits j under its idempotency key (a repeat waits for the
// first answer), queues it to the shard of account and waits for the
// answer.
func (e *Engine) runStall(ctx context.Context, j *stallJob, account string) (StallPayResult, error) {
	h := j.hash
	st := &e.stall
	ctx, cancel := context.WithTimeout(ctx, e.cfg.OperatorTimeout)
	defer cancel()
	for {
		st.mu.Lock()
		rec := st.pays[j.key]
		if rec == nil {
			break // mu held
		}
		st.mu.Unlock()
		if rec.hash != h {
			return StallPayResult{Code: terminals.CodeIDConflict, Reason: "id already used with other content; the first result stands"}, nil
		}
		select {
		case <-rec.ready:
		case <-ctx.Done():
			return StallPayResult{}, fmt.Errorf("engine: waiting for the first payment with this id: %w", ctx.Err())
		}
		if rec.freed {
			continue // answered before the ledger: decide again
		}
		if !rec.durable.Load() {
			return StallPayResult{}, errors.New("engine: the first payment with this id failed; retry later")
		}
		return StallPayResult{Code: rec.code, Body: rec.body, Duplicate: true}, nil
	}
	if st.pending.Load() >= StallPendingMax || e.handoffBusy.Load() {
		st.mu.Unlock()
		return StallPayResult{Code: terminals.CodeBusy, Reason: "too many stall payments in flight"}, nil
	}
	rec := &stallRec{hash: h, ready: make(chan struct{})}
	st.pays[j.key] = rec
	st.pending.Add(1)
	st.mu.Unlock()
	j.rec = rec
	w := &work{kind: workStall, stall: j}
	s := e.shards[core.ShardOf(account, len(e.shards))]
	if !s.offer(w) {
		j.free()
		return StallPayResult{Code: terminals.CodeBusy, Reason: "shard queue full"}, nil
	}
	select {
	case r := <-j.res:
		return r, nil
	case <-e.stop:
		return StallPayResult{}, errors.New("engine closed")
	case <-ctx.Done():
		return StallPayResult{}, fmt.Errorf("engine: waiting for the journal: %w", ctx.Err())
	}
}

// free releases a payment id answered before the ledger (mu not held).
func (j *stallJob) free() {
	st := &j.e.stall
	st.mu.Lock()
	j.freeLocked()
	st.mu.Unlock()
}

func (j *stallJob) freeLocked() {
	st := &j.e.stall
	if st.pays[j.key] == j.rec {
		delete(st.pays, j.key)
	}
	j.rec.freed = true
	close(j.rec.ready)
	st.pending.Add(-1)
}

// stallPay is the writer step of a stall payment (see the top of the file).
func (s *shard) stallPay(w *work) {
	j := w.stall
	if j.refund != nil {
		s.stallRefund(w)
		return
	}
	e := s.e
	st := &e.stall
	p := &j.p
	now := e.cfg.Clock()
	st.mu.Lock()
	c, class, amount, err := st.reg.Authorize(s.c.Market(), p.Code, p.Amount, market.Scan{Verified: p.Verified, Remote: p.Remote}, now)
	if err != nil {
		j.freeLocked()
		st.mu.Unlock()
		var d *market.Decline
		reason := err.Error()
		if errors.As(err, &d) {
			reason = d.Reason
		}
		j.res <- StallPayResult{Code: market.CodeOf(err), Reason: reason}
		return
	}
	if te, ok := e.reg.Get(c.Stall); !ok || te.Terminal().Blocked {
		// The operator blocked the stall's terminal: its codes collect
		// nothing either (a refusal, like the terminal's own requests).
		j.freeLocked()
		st.mu.Unlock()
		j.res <- StallPayResult{Code: terminals.CodeTerminalBlocked, Reason: "the stall terminal is blocked"}
		return
	}
	stall, _ := st.reg.Stall(c.Stall)
	txn := StallTxn(p.ID)
	w.in = core.Input{Op: core.OpQRPay, Account: p.Account, Amount: amount, TID: c.Stall, Txn: txn,
		Hash: j.hash, Merchant: stall.Merchant}
	if class == market.ClassD {
		w.in.QRStatic = true
	} else {
		w.in.QRClass, w.in.Code, w.in.QRExpiry = uint8(class), c.ID, s.c.Market().UsedUntil(&c)
	}
	s.c.Step(now, &w.in, &w.out)
	code := w.out.Code
	if len(w.out.Record) == 0 {
		// Refused by the core without a decision (a refusal or BUSY):
		// nothing is journaled and the id stays free.
		j.freeLocked()
		st.mu.Unlock()
		j.res <- StallPayResult{Code: code, Reason: code.Name()}
		return
	}
	var flags byte
	if code == terminals.CodeApproved && c.Dynamic {
		st.reg.MarkPaid(c.ID, p.ID)
		flags = stallFlagUsed
	}
	ans := opwire.StallDecision{ID: p.ID, StallCode: c.ID, Code: code, Name: code.Name(), Account: p.Account,
		Amount: amount, Merchant: stall.Merchant, TID: c.Stall, Txn: txn, At: now.UTC().Format(time.RFC3339Nano)}
	if code == terminals.CodeApproved {
		ans.Class, ans.Auth = class.String(), authRef(s.id, w.out.Seq)
		j.notice = &terminals.Paid{V: terminals.Version, Type: terminals.NoticePaid, TID: c.Stall, Txn: txn,
			Code: terminals.CodeApproved, Auth: ans.Auth, Amt: amount, SC: c.ID, GTS: now.UnixMilli()}
	}
	body, _ := json.Marshal(&ans) // a struct of strings and integers: cannot fail
	j.rec.code, j.rec.body, j.code = code, body, code
	st.remember(p.ID, j.rec)
	entry := appendStallPay(nil, p.ID, j.hash, code, c.ID, flags, c.Stall, w.out.Record, body)
	e.journaling.Add(1) // Done in Durable
	_, err = e.j.Append(entry, j)
	st.mu.Unlock()
	if err != nil {
		j.Durable(0, err) // a refused append gets no completion: answer here
	}
}

// Durable is the journal completion of a stall payment. It takes no lock
// of the stall state (see stallState.pending).
func (j *stallJob) Durable(_ uint64, err error) {
	e := j.e
	defer e.journaling.Done()
	e.stall.pending.Add(-1)
	if err != nil {
		e.fail(err)
		close(j.rec.ready) // not durable: duplicates are told to retry
		j.res <- StallPayResult{Code: terminals.CodeSystemError, Reason: "journal failed: " + err.Error()}
		return
	}
	j.rec.durable.Store(true)
	close(j.rec.ready)
	j.res <- StallPayResult{Code: j.code, Body: j.rec.body}
	if n := j.notice; n != nil {
		if te, ok := e.reg.Get(n.TID); ok {
			e.publish(n.TID, te.Seal(nil, n.AppendJSON(nil)))
		}
	}
}

func appendStallRegister(dst []byte, at time.Time, s market.Stall, c *market.StallCode) []byte {
	dst = append(dst, entryStall, stallOpRegister)
	dst = binary.AppendVarint(dst, at.UnixMilli())
	for _, v := range []string{s.ID, s.Merchant} {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	b := byte(0)
	if s.Business {
		b = 1
	}
	dst = append(dst, b)
	cb := c.AppendBinary(nil)
	dst = binary.AppendUvarint(dst, uint64(len(cb)))
	return append(dst, cb...)
}

func appendStallRevoke(dst []byte, at time.Time, id string) []byte {
	dst = append(dst, entryStall, stallOpRevoke)
	dst = binary.AppendVarint(dst, at.UnixMilli())
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	return append(dst, id...)
}

func appendStallPay(dst []byte, id string, hash uint64, code terminals.Code, sc string, flags byte, tid string, rec, body []byte) []byte {
	dst = append(dst, entryStall, stallOpPay)
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	dst = append(dst, id...)
	dst = binary.LittleEndian.AppendUint64(dst, hash)
	dst = append(dst, code[0], code[1])
	dst = binary.AppendUvarint(dst, uint64(len(sc)))
	dst = append(dst, sc...)
	dst = append(dst, flags)
	for _, b := range [][]byte{[]byte(tid), rec, body} {
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst
}

// stallPayEntry is a decoded payment entry.
type stallPayEntry struct {
	id, sc, tid string
	hash        uint64
	code        terminals.Code
	flags       byte
	record      []byte
	body        []byte
}

func decodeStallPay(b []byte) (stallPayEntry, error) {
	var pe stallPayEntry
	if len(b) < 2 || b[0] != entryStall || b[1] != stallOpPay {
		return pe, fmt.Errorf("%w: not a stall payment entry", errEntry)
	}
	c := bincur.New(b[2:], errEntry)
	pe.id = string(c.Bytes())
	h := c.Take(8)
	code := c.Take(2)
	pe.sc = string(c.Bytes())
	fl := c.Take(1)
	pe.tid = string(c.Bytes())
	pe.record = c.Bytes()
	pe.body = c.Bytes()
	if c.Err != nil {
		return pe, c.Err
	}
	if len(c.B) != 0 {
		return pe, fmt.Errorf("%w: stall payment: %d trailing bytes", errEntry, len(c.B))
	}
	pe.hash, pe.code, pe.flags = binary.LittleEndian.Uint64(h), terminals.Code(code), fl[0]
	if _, ok := pe.code.Info(); !ok || pe.id == "" || len(pe.id) > StallIDLenMax || pe.sc == "" ||
		!terminals.ValidID(pe.tid, terminals.MaxTerminalIDLen) || len(pe.record) == 0 || pe.flags&^stallFlagUsed != 0 {
		return pe, fmt.Errorf("%w: stall payment entry fields", errEntry)
	}
	return pe, nil
}

// applyStallEntry replays a type 8 entry.
func (e *Engine) applyStallEntry(p []byte) error {
	if len(p) < 2 {
		return fmt.Errorf("%w: short stall entry", errEntry)
	}
	st := &e.stall
	switch p[1] {
	case stallOpRegister, stallOpRevoke:
		c := bincur.New(p[2:], errEntry)
		atRaw, n := binary.Varint(c.B)
		if n <= 0 {
			return fmt.Errorf("%w: stall entry time", errEntry)
		}
		c.B = c.B[n:]
		at := time.UnixMilli(atRaw)
		if p[1] == stallOpRevoke {
			id := string(c.Bytes())
			if c.Err != nil || len(c.B) != 0 {
				return fmt.Errorf("%w: stall revoke entry", errEntry)
			}
			st.mu.Lock()
			_, _, err := st.reg.Revoke(id, at)
			st.mu.Unlock()
			if err != nil {
				return fmt.Errorf("%w: revoke of %q: %v", errEntry, id, err)
			}
			return nil
		}
		s := market.Stall{ID: string(c.Bytes()), Merchant: string(c.Bytes())}
		bz := c.Take(1)
		cb := c.Bytes()
		if c.Err != nil || len(c.B) != 0 || bz[0] > 1 {
			return fmt.Errorf("%w: stall register entry", errEntry)
		}
		s.Business = bz[0] == 1
		code, err := market.DecodeStallCode(cb)
		if err != nil {
			return fmt.Errorf("%w: %v", errEntry, err)
		}
		if code.ShownAt != at.UnixMilli() {
			return fmt.Errorf("%w: stall code %q shown at %d, entry at %d", errEntry, code.ID, code.ShownAt, at.UnixMilli())
		}
		code.ShownAt = 0
		st.mu.Lock()
		err = st.registerLocked(s, code, at)
		st.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w: register of %q: %v", errEntry, code.ID, err)
		}
		return nil
	case stallOpPay:
		pe, err := decodeStallPay(p)
		if err != nil {
			return err
		}
		if err := e.applyRecord(pe.record); err != nil {
			return err
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		if pe.flags&stallFlagUsed != 0 {
			st.reg.MarkPaid(pe.sc, pe.id)
		}
		rec := &stallRec{hash: pe.hash, code: pe.code, body: append([]byte(nil), pe.body...), ready: make(chan struct{})}
		rec.durable.Store(true)
		close(rec.ready)
		st.remember(pe.id, rec)
		return nil
	}
	return fmt.Errorf("%w: stall entry op %d", errEntry, p[1])
}

// stallEntryRecord is EntryRecord for a type 8 entry: a payment's core
// record and its stall terminal; registry changes carry none.
func stallEntryRecord(p []byte) (string, []byte, error) {
	if len(p) >= 2 && (p[1] == stallOpRegister || p[1] == stallOpRevoke) {
		return "", nil, nil
	}
	pe, err := decodeStallPay(p)
	if err != nil {
		return "", nil, err
	}
	return pe.tid, pe.record, nil
}

// appendStallSnapshot appends the registry and the remembered payment ids
// (FIFO order): uvarint len | market.Registry.AppendBinary | uvarint n |
// n x (uvarint len | id | u64 hash | 2 bytes code | uvarint len | answer).
func (e *Engine) appendStallSnapshot(dst []byte) []byte {
	st := &e.stall
	st.mu.Lock()
	defer st.mu.Unlock()
	b := st.reg.AppendBinary(nil)
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	dst = append(dst, b...)
	// Every remembered id has a durable answer here: the snapshot waits for
	// the completions of everything appended.
	var ids []string
	for i := 0; i < st.n; i++ {
		id := st.order[(st.head+i)%len(st.order)]
		if r := st.pays[id]; r != nil && r.body != nil {
			ids = append(ids, id)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for _, id := range ids {
		r := st.pays[id]
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.LittleEndian.AppendUint64(dst, r.hash)
		dst = append(dst, r.code[0], r.code[1])
		dst = binary.AppendUvarint(dst, uint64(len(r.body)))
		dst = append(dst, r.body...)
	}
	return dst
}

func (e *Engine) restoreStallSnapshot(c *bincur.Cursor) error {
	st := &e.stall
	b := c.Bytes()
	if c.Err != nil {
		return fmt.Errorf("engine: snapshot: stall codes: %w", c.Err)
	}
	if err := st.reg.DecodeBinary(b); err != nil {
		return fmt.Errorf("engine: snapshot: stall codes: %w", err)
	}
	n := c.Uvarint()
	if c.Err != nil || n > StallPaymentIDsMax {
		return fmt.Errorf("engine: snapshot: %d stall payment ids", n)
	}
	for i := uint64(0); i < n; i++ {
		id := string(c.Bytes())
		h := c.Take(8)
		code := c.Take(2)
		body := c.Bytes()
		if c.Err != nil {
			return fmt.Errorf("engine: snapshot: stall payment ids: %w", c.Err)
		}
		rec := &stallRec{hash: binary.LittleEndian.Uint64(h), code: terminals.Code(code), body: append([]byte(nil), body...), ready: make(chan struct{})}
		rec.durable.Store(true)
		close(rec.ready)
		if _, ok := rec.code.Info(); !ok || id == "" || len(id) > StallIDLenMax {
			return fmt.Errorf("engine: snapshot: stall payment id %d malformed", i)
		}
		st.remember(id, rec)
	}
	return nil
}

// StallRefund is a refund of part or all of an approved wallet payment
// through a stall code, back to the paying account; it has its own id.
type StallRefund struct {
	Code    string // the stall code the payment went through
	Payment string // the wallet's id of the payment
	ID      string // the refund's own idempotency id
	Amount  int64  // fen, 1..what remains refundable
}

// stallRefund is a refund on its way: the original's stored answer.
type stallRefund struct {
	r    StallRefund
	orig opwire.StallDecision
}

// refundKey is a refund's id in the idempotency table: wallet payment ids
// never contain '/', so the two never meet.
func refundKey(id string) string { return "r/" + id }

// StallRefundIDLenMax bounds a refund id (its key is "r/" + id).
const StallRefundIDLenMax = StallIDLenMax - 2

// RefundStallPayment refunds part or all of an approved payment through a
// stall code to the account that paid (core.OpRefund in that account's
// shard: never more than remains, the legs taken back in proportion, the
// QR and e-CNY day counters given back on the payment's day). It is
// idempotent on the refund id like a payment; a payment this gateway does
// not remember (unknown, declined, through another code, or forgotten
// past StallPaymentIDsMax) is ORIGINAL_NOT_FOUND, not stored.
func (e *Engine) RefundStallPayment(ctx context.Context, r StallRefund) (StallPayResult, error) {
	res, err := e.refundStallPayment(ctx, r)
	code := res.Code
	if err != nil {
		code = terminals.CodeSystemError
	}
	e.m.stallRefunds.WithLabelValues(string(code)).Inc()
	return res, err
}

func (e *Engine) refundStallPayment(ctx context.Context, r StallRefund) (StallPayResult, error) {
	if err := e.Ready(); err != nil {
		return StallPayResult{}, err
	}
	if r.ID == "" || len(r.ID) > StallRefundIDLenMax || r.Payment == "" || len(r.Payment) > StallIDLenMax || r.Amount <= 0 || r.Amount > terminals.MaxAmount {
		return StallPayResult{Code: terminals.CodeMalformed, Reason: "refund id 1..62 bytes, payment id 1..64 bytes, amount 1..1000000000 fen"}, nil
	}
	st := &e.stall
	st.mu.Lock()
	orig := st.pays[r.Payment]
	var o opwire.StallDecision
	ok := orig != nil && orig.durable.Load() && orig.code == terminals.CodeApproved && json.Unmarshal(orig.body, &o) == nil && o.StallCode == r.Code
	st.mu.Unlock()
	if !ok {
		return StallPayResult{Code: terminals.CodeOriginalNotFound, Reason: "no approved payment with this id through this stall code"}, nil
	}
	h := sha256.New()
	var b []byte
	for _, s := range []string{"refund", r.Code, r.Payment, r.ID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, r.Amount)
	h.Write(b)
	j := &stallJob{e: e, key: refundKey(r.ID), refund: &stallRefund{r: r, orig: o},
		hash: binary.LittleEndian.Uint64(h.Sum(nil)), res: make(chan StallPayResult, 1)}
	return e.runStall(ctx, j, o.Account)
}

// stallRefund is the writer step of a refund, like stallPay's: the core
// decides under mu and the entry is appended before mu is released.
func (s *shard) stallRefund(w *work) {
	j := w.stall
	e := s.e
	st := &e.stall
	r, o := &j.refund.r, &j.refund.orig
	now := e.cfg.Clock()
	txn := StallTxn(j.key)
	st.mu.Lock()
	w.in = core.Input{Op: core.OpRefund, Account: o.Account, Amount: r.Amount, TID: o.TID, Txn: txn, Orig: o.Txn,
		Hash: j.hash, Merchant: o.Merchant}
	s.c.Step(now, &w.in, &w.out)
	code := w.out.Code
	if len(w.out.Record) == 0 {
		j.freeLocked()
		st.mu.Unlock()
		j.res <- StallPayResult{Code: code, Reason: code.Name()}
		return
	}
	ans := opwire.StallDecision{ID: r.ID, Payment: r.Payment, StallCode: r.Code, Code: code, Name: code.Name(), Account: o.Account,
		Amount: r.Amount, Merchant: o.Merchant, TID: o.TID, Txn: txn, At: now.UTC().Format(time.RFC3339Nano)}
	if code == terminals.CodeApproved {
		ans.Auth = authRef(s.id, w.out.Seq)
	}
	body, _ := json.Marshal(&ans)
	j.rec.code, j.rec.body, j.code = code, body, code
	st.remember(j.key, j.rec)
	entry := appendStallPay(nil, j.key, j.hash, code, r.Code, 0, o.TID, w.out.Record, body)
	e.journaling.Add(1) // Done in Durable
	_, err := e.j.Append(entry, j)
	st.mu.Unlock()
	if err != nil {
		j.Durable(0, err)
	}
}
