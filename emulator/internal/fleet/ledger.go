package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"scenepay/emulator/internal/device"
	"scenepay/terminals"
)

// Ledger bounds.
const (
	// LedgerApprovalsMax bounds the approved txns remembered; past it the
	// run stops issuing purchases (Full reports it) rather than forget one.
	LedgerApprovalsMax = 1_000_000
	// LedgerAnomaliesMax bounds the anomaly messages kept (all are counted).
	LedgerAnomaliesMax = 100
)

// ErrLedger marks an arithmetic or bound failure of the ledger itself.
var ErrLedger = errors.New("fleet: ledger")

type txnKey struct {
	tid  string
	txn  uint64
	hash uint64 // content hash: a second approval under one id with other content is counted too
}

type idKey struct {
	tid string
	txn uint64
}

type approval struct {
	acct string
	amt  int64
}

// Position is what the terminals were told about one account. Money in fen.
type Position struct {
	Account string
	Opening int64 // balance when the run began (as opened, or as read back)
	TopUps  int64
	// Purchases is every approved debit: purchases, tap and upload
	// charges, QR payments, deposit captures (orders and discharge
	// charges), insured self-pay, e-CNY offline payments.
	Purchases int64
	Reversals int64 // approved reversals of approved purchases
	Refunds   int64 // approved refunds of QR and wallet payments (credits)
	// DebtPaid is the part of top-ups that paid transit debt (offline
	// taps the balance could not cover): it went to the bus company, not
	// to the balance.
	DebtPaid int64
	// Uncertain is the sum of debits that got no reply and were not voided
	// (a purchase whose reversal was not acknowledged, a message repeated
	// until the run ended without an answer): each may or may not have
	// been applied. UncertainCredit is the same for credits (refunds).
	Uncertain       int64
	UncertainCredit int64
}

// Expected is Opening + TopUps - DebtPaid - Purchases + Reversals + Refunds.
func (p Position) Expected() (int64, error) {
	v, ok := add(p.Opening, p.TopUps)
	if ok {
		v, ok = add(v, -p.DebtPaid)
	}
	if ok {
		v, ok = add(v, -p.Purchases)
	}
	if ok {
		v, ok = add(v, p.Reversals)
	}
	if ok {
		v, ok = add(v, p.Refunds)
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s: expected balance overflows int64", ErrLedger, p.Account)
	}
	return v, nil
}

// add is a+b, reporting overflow instead of wrapping.
func add(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) || b == math.MinInt64 {
		return 0, false
	}
	return s, true
}

// Ledger records what terminals were told. It is a device.Observer.
//
// Taps: the reply's amt is what the tap charged, held or captured. On a
// flat route a tap_in's amt is a debit (charge); on a distance route it is a
// hold (no balance change) and the tap_out's amt is the captured fare (a
// debit). The ledger therefore knows which routes are distance routes and
// their maximum fare, the bound of what an unanswered tap may have cost.
type Ledger struct {
	mu       sync.Mutex
	pos      map[string]*Position
	routes   map[string]RouteSpec // by route id
	merchant map[string]string    // terminal id -> merchant id
	merch    map[string]*MerchantPosition
	approved map[txnKey]approval
	byTxn    map[idKey]uint64 // (tid, txn) -> content hash of the first approval
	reversed map[txnKey]bool  // purchases whose approval a reversal voided
	// pending are requests that ended without a reply and that their
	// terminal repeats under the same txn id (the non-reversible types):
	// a later answer to the same id settles them; those still pending at
	// the audit widen the ranges.
	pending   map[idKey]pend
	wallet    map[idKey]bool   // wallet payments and refunds counted, by (stall tid, gateway txn)
	debtors   map[string]int64 // accounts an offline upload put in debt -> the most that debt can be
	uploads   UploadCounts
	anomalies []string
	nAnomaly  int
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{
		pos:      make(map[string]*Position),
		approved: make(map[txnKey]approval),
		byTxn:    make(map[idKey]uint64),
		reversed: make(map[txnKey]bool),
		pending:  make(map[idKey]pend),
		wallet:   make(map[idKey]bool),
		debtors:  make(map[string]int64),
		routes:   make(map[string]RouteSpec),
		merchant: make(map[string]string),
		merch:    make(map[string]*MerchantPosition),
	}
}

// MerchantPosition is what one merchant's terminals were told, in fen: the
// settlement audit compares Net with the settlement store's net.
type MerchantPosition struct {
	Merchant string
	Net      int64 // approved debits (purchases, taps, uploads, QR, captures, e-CNY offline) minus reversals and refunds
	// Uncertain bounds what unanswered requests may have added to Net;
	// UncertainCredit what unanswered refunds may have taken from it.
	Uncertain       int64
	UncertainCredit int64
	// Txns holds "tid/txn" -> fen of every approval counted (bounded by
	// merchantTxnsMax), to name the offending ids when the totals differ.
	Txns map[string]int64
}

// merchantTxnsMax bounds the approvals listed per merchant position.
const merchantTxnsMax = 10_000

// AddRoute tells the ledger a route's kind and maximum fare.
func (l *Ledger) AddRoute(r RouteSpec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.routes[r.ID] = r
}

// SetMerchant tells the ledger which merchant a terminal belongs to.
func (l *Ledger) SetMerchant(tid, merchant string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.merchant[tid] = merchant
	if l.merch[merchant] == nil {
		l.merch[merchant] = &MerchantPosition{Merchant: merchant}
	}
}

// merchantAdd adds amt to the merchant of tid (net or uncertain).
func (l *Ledger) merchantAdd(tid string, txn uint64, amt int64, uncertain bool) {
	m := l.merch[l.merchant[tid]]
	if m == nil {
		return // a terminal the run did not register: no settlement claim
	}
	f := &m.Net
	if uncertain {
		f = &m.Uncertain
	}
	v, ok := add(*f, amt)
	if !ok {
		l.anomaly("merchant %s: sum overflows", m.Merchant)
		return
	}
	*f = v
	if !uncertain && len(m.Txns) < merchantTxnsMax {
		if m.Txns == nil {
			m.Txns = map[string]int64{}
		}
		m.Txns[fmt.Sprintf("%s/%d", tid, txn)] += amt
	}
}

// Merchants returns every merchant position, sorted by merchant.
func (l *Ledger) Merchants() []MerchantPosition {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]MerchantPosition, 0, len(l.merch))
	for _, m := range l.merch {
		c := *m
		c.Txns = make(map[string]int64, len(m.Txns))
		for k, v := range m.Txns {
			c.Txns[k] = v
		}
		for _, p := range l.pending {
			if l.merchant[p.tid] == m.Merchant {
				c.Uncertain, _ = add(c.Uncertain, p.debit)
				c.UncertainCredit, _ = add(c.UncertainCredit, p.credit)
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Merchant < out[j].Merchant })
	return out
}

// debit records a balance debit of amt told to a terminal.
func (l *Ledger) debit(acct, tid string, txn uint64, amt int64) {
	p := l.position(acct)
	v, ok := add(p.Purchases, amt)
	if !ok {
		l.anomaly("%s: approved debits overflow", acct)
		return
	}
	p.Purchases = v
	l.merchantAdd(tid, txn, amt, false)
}

// refund records an approved refund of amt to acct at terminal tid; false
// (an anomaly) when the account's refunds would overflow.
func (l *Ledger) refund(acct, tid string, txn uint64, amt int64) bool {
	p := l.position(acct)
	v, ok := add(p.Refunds, amt)
	if !ok {
		l.anomaly("%s: refunds overflow", acct)
		return false
	}
	p.Refunds = v
	l.merchantAdd(tid, txn, -amt, false)
	return true
}

// uncertain records that amt may or may not have been debited.
func (l *Ledger) uncertain(acct, tid string, amt int64) {
	p := l.position(acct)
	if v, ok := add(p.Uncertain, amt); ok {
		p.Uncertain = v
	} else {
		l.anomaly("%s: uncertain amount overflows", acct)
	}
	l.merchantAdd(tid, 0, amt, true)
}

// observeTap records an approved or unanswered tap.
func (l *Ledger) observeTap(o device.Outcome) {
	acct := o.Inst.Key()
	r, known := l.routes[o.Route]
	if o.Reply == nil {
		// Unanswered after retries. A flat tap_in may have charged the fare;
		// a distance tap_out may have captured up to the maximum fare; a
		// distance tap_in only held (no balance change).
		switch {
		case !known:
			l.anomaly("%s txn %d: tap on unknown route %q", o.TID, o.Txn, o.Route)
		case o.Type == terminals.TypeTapIn && !r.Distance:
			l.uncertain(acct, o.TID, r.MaxFare)
		case o.Type == terminals.TypeTapOut && r.Distance:
			l.uncertain(acct, o.TID, r.MaxFare)
		}
		return
	}
	if !o.Code.Approved() || o.Reply.Amt == nil || *o.Reply.Amt == 0 {
		return
	}
	amt := *o.Reply.Amt
	req := terminals.Request{Type: o.Type, Inst: o.Inst, Route: o.Route, Stop: o.Stop}
	k := txnKey{o.TID, o.Txn, req.ContentHash()}
	if _, dup := l.approved[k]; dup {
		return
	}
	if len(l.approved) >= LedgerApprovalsMax {
		l.anomaly("ledger full: tap %s txn %d not recorded", o.TID, o.Txn)
		return
	}
	l.approved[k] = approval{acct: acct, amt: amt}
	if !known {
		l.anomaly("%s txn %d: tap on unknown route %q approved", o.TID, o.Txn, o.Route)
		return
	}
	if r.Distance && o.Type == terminals.TypeTapIn {
		return // a hold: the balance moves at tap_out
	}
	l.debit(acct, o.TID, o.Txn, amt)
}

func (l *Ledger) position(acct string) *Position {
	p := l.pos[acct]
	if p == nil {
		p = &Position{Account: acct}
		l.pos[acct] = p
	}
	return p
}

func (l *Ledger) anomaly(format string, args ...any) {
	l.nAnomaly++
	if len(l.anomalies) < LedgerAnomaliesMax {
		l.anomalies = append(l.anomalies, fmt.Sprintf(format, args...))
	}
}

// Open records an account's balance at the start of the run.
func (l *Ledger) Open(acct string, balance int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.position(acct).Opening = balance
}

// TopUp records an acknowledged top-up.
func (l *Ledger) TopUp(acct string, amt int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.position(acct)
	v, ok := add(p.TopUps, amt)
	if !ok {
		return fmt.Errorf("%w: %s: top-ups overflow", ErrLedger, acct)
	}
	p.TopUps = v
	return nil
}

// Full reports whether the ledger reached LedgerApprovalsMax.
func (l *Ledger) Full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.approved) >= LedgerApprovalsMax
}

// Observe implements device.Observer.
func (l *Ledger) Observe(o device.Outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acct := o.Inst.Key()
	switch o.Fault {
	case device.FaultTamper, device.FaultOversize, device.FaultMalformed:
		if o.Code.Approved() {
			l.anomaly("%s txn %d: %s message was approved", o.TID, o.Txn, o.Fault)
		}
		return
	}
	if o.Type == terminals.TypeTapIn || o.Type == terminals.TypeTapOut {
		l.observeTap(o)
		return
	}
	if isScene(o) {
		l.observeScene(o)
		return
	}
	if o.Reply == nil {
		if o.Type == terminals.TypePurchase && o.Unresolved {
			l.uncertain(acct, o.TID, o.Amt)
		}
		// Reversed with no reply: the purchase had no effect, or it was voided.
		return
	}
	if !o.Code.Approved() {
		return
	}
	req := terminals.Request{Type: o.Type, Amt: o.Amt, Inst: o.Inst, Orig: o.Orig}
	k := txnKey{o.TID, o.Txn, req.ContentHash()}
	switch o.Type {
	case terminals.TypePurchase:
		if _, dup := l.approved[k]; dup {
			return // a duplicate told the same approval again: one effect
		}
		if first, used := l.byTxn[idKey{o.TID, o.Txn}]; used && first != k.hash {
			l.anomaly("%s txn %d: approved again with different content (%d fen on %s)", o.TID, o.Txn, o.Amt, acct)
		} else {
			l.byTxn[idKey{o.TID, o.Txn}] = k.hash
		}
		if len(l.approved) >= LedgerApprovalsMax {
			l.anomaly("ledger full: approval %s txn %d not recorded", o.TID, o.Txn)
			return
		}
		l.debit(acct, o.TID, o.Txn, o.Amt)
		l.approved[k] = approval{acct: acct, amt: o.Amt}
	case terminals.TypeReversal:
		orig := terminals.Request{Type: terminals.TypePurchase, Amt: o.Amt, Inst: o.Inst}
		ok := txnKey{o.TID, o.Orig, orig.ContentHash()}
		a, found := l.approved[ok]
		if !found || l.reversed[ok] {
			return // voided nothing the terminal was told was approved
		}
		l.reversed[ok] = true
		p := l.position(a.acct)
		if v, fine := add(p.Reversals, a.amt); fine {
			p.Reversals = v
		}
		l.merchantAdd(o.TID, o.Txn, -a.amt, false)
	}
}

// Positions returns every account position, sorted by account.
func (l *Ledger) Positions() []Position {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Position, 0, len(l.pos))
	for _, p := range l.pos {
		c := *p
		for _, q := range l.pending {
			if q.acct == p.Account {
				c.Uncertain, _ = add(c.Uncertain, q.debit)
				c.UncertainCredit, _ = add(c.UncertainCredit, q.credit)
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// Anomalies returns the kept anomaly messages and the total count.
func (l *Ledger) Anomalies() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.anomalies...), l.nAnomaly
}

// BalanceReader reads an account's balance at the gateway (opclient does).
type BalanceReader interface {
	Balance(ctx context.Context, acct string) (int64, error)
}

// Mismatch is one account whose gateway balance is not what terminals were told.
type Mismatch struct {
	Position
	Expected int64
	Gateway  int64
	Err      error // the balance could not be read
}

// AuditResult compares the ledger with the gateway.
type AuditResult struct {
	Accounts   int
	Matched    int
	Uncertain  int // accounts whose balance is within their uncertain range
	Mismatches []Mismatch
	Anomalies  []string
	NAnomaly   int
}

// OK reports whether the audit passed: every balance as expected (or, for
// an account with unresolved purchases, within their range) and no anomaly.
func (r AuditResult) OK() bool { return len(r.Mismatches) == 0 && r.NAnomaly == 0 }

// Audit reads every account the ledger knows and compares it with
// expected = opening + top-ups - approved purchases + approved reversals.
// An account with unresolved purchases passes if its balance lies within
// [expected - uncertain, expected]: each of those may or may not have
// been applied. (A range is looser than the exact subset sums; it is
// reported separately so that a reader sees it.)
func (l *Ledger) Audit(ctx context.Context, r BalanceReader) AuditResult {
	var res AuditResult
	res.Anomalies, res.NAnomaly = l.Anomalies()
	for _, p := range l.Positions() {
		res.Accounts++
		want, err := p.Expected()
		if err != nil {
			res.Mismatches = append(res.Mismatches, Mismatch{Position: p, Err: err})
			continue
		}
		got, err := r.Balance(ctx, p.Account)
		switch {
		case err != nil:
			res.Mismatches = append(res.Mismatches, Mismatch{Position: p, Expected: want, Err: err})
		case got == want && p.Uncertain == 0 && p.UncertainCredit == 0:
			res.Matched++
		case p.Uncertain > 0 || p.UncertainCredit > 0:
			if got >= want-p.Uncertain && got-want <= p.UncertainCredit {
				res.Uncertain++
			} else {
				res.Mismatches = append(res.Mismatches, Mismatch{Position: p, Expected: want, Gateway: got})
			}
		default:
			res.Mismatches = append(res.Mismatches, Mismatch{Position: p, Expected: want, Gateway: got})
		}
	}
	return res
}
