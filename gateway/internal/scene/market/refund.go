package market

import (
	"math/bits"
	"time"
)

// Payment is an approved market payment as the refund ledger keeps it.
type Payment struct {
	ID            string // the payment's id (terminal id + txn id, or the gateway reference)
	Account       string // the original instrument: refunds go back to it
	StallMerchant string
	Class         Class
	Amount        int64 // fen
	Operator      int64 // the operator's leg of Amount, fen
	PaidAt        time.Time
}

type refundEntry struct {
	id       string
	amount   int64
	operator int64
}

type paymentEntry struct {
	Payment
	refunded         int64
	operatorRefunded int64
	refunds          []refundEntry
}

// Refund is a refund decision: the amount credited back to the original
// instrument, split into the legs that are taken back from the stall and
// the operator (they sum to Amount), and what Reverse needs to take the
// amount off the PBoC counter.
type Refund struct {
	Payment   string
	ID        string
	Account   string
	Class     Class
	PaidAt    time.Time
	Amount    int64
	Stall     Leg
	Operator  Leg
	Duplicate bool // a repeated refund id: the first result, no effect
}

// Ledger is the bounded per-shard refund ledger of market payments, in
// insertion order (oldest evicted first when full). Refunds are idempotent
// by refund id and never exceed what remains refundable.
type Ledger struct {
	max, refundsMax int
	order           []string // ring of payment ids
	head, n         int
	byID            map[string]*paymentEntry
}

// NewLedger returns an empty ledger bounded by r's PaymentsMax and
// RefundsPerPaymentMax.
func NewLedger(r *Rules) *Ledger {
	return newLedger(r.cfg.PaymentsMax, r.cfg.RefundsPerPaymentMax)
}

func newLedger(max, refundsMax int) *Ledger {
	return &Ledger{max: max, refundsMax: refundsMax, order: make([]string, max), byID: make(map[string]*paymentEntry)}
}

// Len is the number of payments held.
func (l *Ledger) Len() int { return l.n }

// Lookup returns a payment and the amount refunded so far.
func (l *Ledger) Lookup(id string) (p Payment, refunded int64, ok bool) {
	e, ok := l.byID[id]
	if !ok {
		return Payment{}, 0, false
	}
	return e.Payment, e.refunded, true
}

// Record adds an approved payment, evicting the oldest when full.
func (l *Ledger) Record(p Payment) error {
	if !validID(p.ID) || !validID(p.Account) || !validID(p.StallMerchant) {
		return ErrFieldTooLong
	}
	if p.Amount <= 0 || p.Operator < 0 || p.Operator > p.Amount || p.Class < ClassA || p.Class > ClassD {
		return ErrInvalidAmount
	}
	if _, dup := l.byID[p.ID]; dup {
		return ErrPaymentExists
	}
	if l.n == l.max {
		delete(l.byID, l.order[l.head])
		l.order[l.head] = ""
		l.head = (l.head + 1) % l.max
		l.n--
	}
	p.PaidAt = p.PaidAt.UTC()
	l.order[(l.head+l.n)%l.max] = p.ID
	l.n++
	l.byID[p.ID] = &paymentEntry{Payment: p}
	return nil
}

// operatorCum is the operator's part of a cumulative refund x of a payment:
// x * operator / amount rounded half-even. It is monotone in x and equals
// the operator leg at x = amount, so the refund legs of every refund step
// are non-negative and a full refund takes back exactly the legs paid, even
// if the fee ratio changed since.
func operatorCum(x, operator, amount int64) int64 {
	if x >= amount {
		return operator
	}
	hi, lo := bits.Mul64(uint64(x), uint64(operator))
	q, rem := bits.Div64(hi, lo, uint64(amount)) // hi < amount: x*operator < amount^2
	if twice := 2 * rem; twice > uint64(amount) || (twice == uint64(amount) && q&1 == 1) {
		q++
	}
	return int64(q)
}

// CheckRefund decides a refund of amount under refundID against payment
// payID without changing the ledger. A refund id seen before with the same
// amount returns the first result with Duplicate set; with another amount
// it is ErrRefundConflict. Then: ErrInvalidAmount, ErrPaymentUnknown,
// ErrRefundExceeds, ErrRefundsFull. The caller credits the original
// instrument and, if that is approved, calls ApplyRefund in the same step.
func (l *Ledger) CheckRefund(r *Rules, payID, refundID string, amount int64) (Refund, error) {
	if !validID(payID) || !validID(refundID) {
		return Refund{}, ErrFieldTooLong
	}
	e, ok := l.byID[payID]
	if !ok {
		return Refund{}, ErrPaymentUnknown
	}
	out := Refund{Payment: payID, ID: refundID, Account: e.Account, Class: e.Class, PaidAt: e.PaidAt}
	out.Stall.Merchant, out.Operator.Merchant = e.StallMerchant, r.operatorMerchant
	for _, f := range e.refunds {
		if f.id == refundID {
			if f.amount != amount {
				return Refund{}, ErrRefundConflict
			}
			out.Amount, out.Operator.Amount, out.Stall.Amount = f.amount, f.operator, f.amount-f.operator
			out.Duplicate = true
			return out, nil
		}
	}
	if amount <= 0 {
		return Refund{}, ErrInvalidAmount
	}
	if amount > e.Amount-e.refunded {
		return Refund{}, ErrRefundExceeds
	}
	if len(e.refunds) >= l.refundsMax {
		return Refund{}, ErrRefundsFull
	}
	op := operatorCum(e.refunded+amount, e.Operator, e.Amount) - e.operatorRefunded
	out.Amount, out.Operator.Amount, out.Stall.Amount = amount, op, amount-op
	return out, nil
}

// ApplyRefund records a refund decided by CheckRefund (a duplicate is a
// no-op).
func (l *Ledger) ApplyRefund(f *Refund) error {
	if f.Duplicate {
		return nil
	}
	e, ok := l.byID[f.Payment]
	if !ok {
		return ErrPaymentUnknown
	}
	if f.Amount <= 0 || f.Amount > e.Amount-e.refunded || f.Operator.Amount < 0 || f.Operator.Amount > e.Operator-e.operatorRefunded {
		return ErrRefundExceeds
	}
	if len(e.refunds) >= l.refundsMax {
		return ErrRefundsFull
	}
	e.refunded += f.Amount
	e.operatorRefunded += f.Operator.Amount
	e.refunds = append(e.refunds, refundEntry{id: f.ID, amount: f.Amount, operator: f.Operator.Amount})
	return nil
}

// AppendBinary appends: version, capacity u32, refunds per payment u32,
// count u32, then each payment oldest first: id, account, stall merchant
// (u8 length + bytes), class u8, amount, operator, paid-at UTC Unix ns
// (i64 each), refund count u8 and each refund: id, amount i64, operator i64.
func (l *Ledger) AppendBinary(dst []byte) []byte {
	dst = append(dst, stateVersion)
	dst = appendU32(dst, uint32(l.max))
	dst = appendU32(dst, uint32(l.refundsMax))
	dst = appendU32(dst, uint32(l.n))
	for i := 0; i < l.n; i++ {
		e := l.byID[l.order[(l.head+i)%l.max]]
		dst = appendStr(dst, e.ID)
		dst = appendStr(dst, e.Account)
		dst = appendStr(dst, e.StallMerchant)
		dst = append(dst, byte(e.Class))
		dst = appendU64(dst, uint64(e.Amount))
		dst = appendU64(dst, uint64(e.Operator))
		dst = appendU64(dst, uint64(e.PaidAt.UnixNano()))
		dst = append(dst, byte(len(e.refunds)))
		for _, f := range e.refunds {
			dst = appendStr(dst, f.id)
			dst = appendU64(dst, uint64(f.amount))
			dst = appendU64(dst, uint64(f.operator))
		}
	}
	return dst
}

// DecodeBinary replaces l with the ledger in b, checking every invariant
// (refunds sum to the refunded amount and never exceed the payment, legs
// within bounds, ids unique); on error l is unchanged.
func (l *Ledger) DecodeBinary(b []byte) error {
	r := *newReader(b)
	r.Version("ledger")
	max, rmax, n := int(r.U32()), int(r.U32()), int(r.U32())
	if r.Err == nil && (max < 1 || max > paymentsMaxLimit || rmax < 1 || rmax > refundsPerPaymentCap || n > max) {
		r.Fail("capacity %d, refunds %d, count %d out of bounds", max, rmax, n)
	}
	// The smallest payment encoding is 3 + 1 + 24 + 1 bytes: refuse counts
	// the input cannot hold before allocating for them.
	if r.Err == nil && n > (len(b)-r.Off)/29 {
		r.Fail("count %d larger than the input can hold", n)
	}
	if r.Err != nil {
		return r.Err
	}
	nl := newLedger(max, rmax)
	for i := 0; i < n && r.Err == nil; i++ {
		e := &paymentEntry{}
		e.ID, e.Account, e.StallMerchant = r.Str("payment id"), r.Str("account"), r.Str("stall merchant")
		e.Class = Class(r.U8())
		e.Amount, e.Operator = r.Fen("amount"), r.Fen("operator")
		e.PaidAt = time.Unix(0, r.I64()).UTC()
		k := int(r.U8())
		if r.Err != nil {
			break
		}
		if !validID(e.ID) || !validID(e.Account) || !validID(e.StallMerchant) || e.Class < ClassA || e.Class > ClassD ||
			e.Amount == 0 || e.Operator > e.Amount || k > rmax {
			r.Fail("payment %d out of range", i)
			break
		}
		if _, dup := nl.byID[e.ID]; dup {
			r.Fail("duplicate payment id at %d", i)
			break
		}
		for j := 0; j < k && r.Err == nil; j++ {
			f := refundEntry{id: r.Str("refund id"), amount: r.Fen("refund amount"), operator: r.Fen("refund operator")}
			if r.Err != nil {
				break
			}
			if !validID(f.id) || f.amount == 0 || f.operator > f.amount ||
				f.amount > e.Amount-e.refunded || f.operator > e.Operator-e.operatorRefunded {
				r.Fail("payment %d refund %d out of range", i, j)
				break
			}
			for _, g := range e.refunds {
				if g.id == f.id {
					r.Fail("payment %d duplicate refund id", i)
				}
			}
			e.refunded += f.amount
			e.operatorRefunded += f.operator
			e.refunds = append(e.refunds, f)
		}
		nl.order[i] = e.ID
		nl.byID[e.ID] = e
		nl.n++
	}
	if err := r.Done(); err != nil {
		return err
	}
	*l = *nl
	return nil
}
