package hospital

import "time"

// State is the life-cycle state of an inpatient deposit.
//
//	(none) --Open--> open --Discharge--> discharged
//	                  |  \--Expire---> expired
//	                  +-- TopUp, Capture (stay open)
type State uint8

const (
	StateNone       State = 0
	StateOpen       State = 1
	StateDischarged State = 2
	StateExpired    State = 3
)

func (s State) String() string {
	return [...]string{"none", "open", "discharged", "expired", "?"}[min(int(s), 4)]
}

// EffectOp is a core hold operation. The values are the core's Op numbers
// (gateway/internal/core: OpHold 7, OpCapture 8, OpRelease 9) so the
// mapping is one to one; this package does not import the core.
type EffectOp uint8

const (
	EffectHold    EffectOp = 7 // core OpHold: TID, Txn = leg txn, Amount
	EffectCapture EffectOp = 8 // core OpCapture: TID, Orig = leg txn, Amount (partial allowed)
	EffectRelease EffectOp = 9 // core OpRelease: TID, Orig = leg txn (releases the remainder, once)
)

func (o EffectOp) String() string {
	switch o {
	case EffectHold:
		return "hold"
	case EffectCapture:
		return "capture"
	case EffectRelease:
		return "release"
	}
	return "?"
}

// Effect is one core operation a plan asks for. Txn is the leg's hold id:
// the Txn of the OpHold that created it and the Orig of later captures and
// releases (with the deposit's kiosk TID). For a release, Amount is the
// remainder the core will release.
type Effect struct {
	Op     EffectOp
	Txn    uint64
	Amount int64
}

// HoldLeg is one core hold of a deposit: the opening hold or a top-up.
// Core holds cannot grow, so a top-up is a new hold on the same deposit.
type HoldLeg struct {
	Txn      uint64
	Amount   int64 // held when placed
	Captured int64
	Released bool // the remainder went back to the instrument
}

func (l *HoldLeg) remaining() int64 {
	if l.Released {
		return 0
	}
	return l.Amount - l.Captured
}

type order struct {
	id     string
	amount int64
}

// Deposit is an inpatient deposit: a pool of core holds on the patient's
// instrument from which service orders are captured. The caller owns it
// (in the account's shard) and changes it only through Commit.
type Deposit struct {
	ID       string
	Account  string
	State    State
	Seq      uint32 // commits so far; a plan is valid only for the Seq it was made at
	OpenedAt int64  // UTC Unix ns
	Activity int64  // UTC Unix ns of the last open, top-up or capture
	Legs     []HoldLeg
	orders   []order // ring, oldest first from ordersHead
	ordHead  int
}

// Remaining is the uncaptured, unreleased amount of the deposit.
func (d *Deposit) Remaining() int64 {
	var s int64
	for i := range d.Legs {
		s += d.Legs[i].remaining()
	}
	return s
}

// Captured is the total captured by service orders.
func (d *Deposit) Captured() int64 {
	var s int64
	for i := range d.Legs {
		s += d.Legs[i].Captured
	}
	return s
}

func (d *Deposit) findOrder(id string) (int64, bool) {
	for i := range d.orders {
		if d.orders[i].id == id {
			return d.orders[i].amount, true
		}
	}
	return 0, false
}

// Kind is what a plan does.
type Kind uint8

const (
	KindOpen      Kind = 1
	KindTopUp     Kind = 2
	KindCapture   Kind = 3
	KindDischarge Kind = 4
	KindExpire    Kind = 5
)

// Plan is a decision on a deposit: the core effects to run, in order, in
// the same shard step, and what the deposit will look like after Commit.
// The caller reuses one Plan (its Effects buffer too) so planning does not
// allocate in steady state.
type Plan struct {
	Kind      Kind
	Deposit   string
	Seq       uint32 // the deposit's Seq the plan was made at
	At        int64  // UTC Unix ns
	Account   string // KindOpen only
	Order     string // KindCapture, KindDischarge (may be empty)
	Amount    int64  // opened, topped up or captured
	Effects   []Effect
	Remaining int64 // remaining deposit after the plan
	// LowBalance: the remaining deposit is below LowBalanceFen after the
	// plan. Notice: it has just crossed below (the gateway sends one
	// low-balance message to the kiosk topic per crossing).
	LowBalance bool
	Notice     bool
	Duplicate  bool // a repeated order id: no effects, the first result stands
}

func (p *Plan) reset(k Kind, d *Deposit, now time.Time) {
	*p = Plan{Kind: k, Deposit: d.ID, Seq: d.Seq, At: now.UnixNano(), Effects: p.Effects[:0]}
}

func (r *Rules) flags(p *Plan, before int64) {
	p.LowBalance = p.Remaining < r.cfg.LowBalanceFen
	p.Notice = p.LowBalance && before >= r.cfg.LowBalanceFen
}

// Open plans a new deposit: one core hold of amount with hold id txn.
func (r *Rules) Open(d *Deposit, id, account string, txn uint64, amount int64, now time.Time, p *Plan) error {
	if !validID(id) || !validID(account) {
		return ErrFieldTooLong
	}
	switch d.State {
	case StateOpen:
		return ErrDepositExists
	case StateDischarged, StateExpired:
		return ErrDepositClosed
	}
	if amount < r.cfg.DepositMinFen {
		return ErrDepositBelowMin
	}
	if amount > r.cfg.DepositMaxFen {
		return ErrDepositAboveMax
	}
	p.reset(KindOpen, d, now)
	p.Deposit, p.Account, p.Amount, p.Remaining = id, account, amount, amount
	p.Effects = append(p.Effects, Effect{EffectHold, txn, amount})
	r.flags(p, maxFen)
	return nil
}

// TopUp plans an additional hold of amount (hold id txn) on an open deposit.
// A txn already used for a leg with the same amount is a duplicate.
func (r *Rules) TopUp(d *Deposit, txn uint64, amount int64, now time.Time, p *Plan) error {
	if d.State != StateOpen {
		return closedErr(d)
	}
	for i := range d.Legs {
		if d.Legs[i].Txn == txn {
			if d.Legs[i].Amount != amount {
				return ErrLegConflict
			}
			p.reset(KindTopUp, d, now)
			p.Amount, p.Remaining, p.Duplicate = amount, d.Remaining(), true
			r.flags(p, p.Remaining)
			return nil
		}
	}
	if amount < r.cfg.DepositMinFen {
		return ErrDepositBelowMin
	}
	rem := d.Remaining()
	if amount > r.cfg.DepositMaxFen-rem {
		return ErrDepositAboveMax
	}
	if len(d.Legs) >= r.cfg.LegsMax {
		return ErrLegsFull
	}
	p.reset(KindTopUp, d, now)
	p.Amount, p.Remaining = amount, rem+amount
	p.Effects = append(p.Effects, Effect{EffectHold, txn, amount})
	r.flags(p, rem)
	return nil
}

func closedErr(d *Deposit) error {
	if d.State == StateNone {
		return ErrDepositNotOpen
	}
	return ErrDepositClosed
}

// Capture plans the capture of a service order from the deposit, oldest
// hold first (the core captures each leg separately). Idempotent by order
// id: the same id and amount is a duplicate with no effects; another amount
// is ErrOrderConflict. A non-emergency order is refused (ErrPaused) while
// the remaining deposit is below PauseBelowFen; any order larger than the
// remaining deposit is ErrInsufficient.
func (r *Rules) Capture(d *Deposit, orderID string, amount int64, emergency bool, now time.Time, p *Plan) error {
	if d.State != StateOpen {
		return closedErr(d)
	}
	return r.capture(d, KindCapture, orderID, amount, emergency, now, p)
}

func (r *Rules) capture(d *Deposit, k Kind, orderID string, amount int64, emergency bool, now time.Time, p *Plan) error {
	if !validID(orderID) {
		return ErrFieldTooLong
	}
	rem := d.Remaining()
	if prev, ok := d.findOrder(orderID); ok {
		if prev != amount {
			return ErrOrderConflict
		}
		if k == KindCapture {
			p.reset(k, d, now)
			p.Order, p.Amount, p.Remaining, p.Duplicate = orderID, amount, rem, true
			r.flags(p, rem)
			return nil
		}
		amount = 0 // discharge whose final order was already captured
	} else if amount <= 0 {
		return ErrInvalidAmount
	}
	if amount > rem {
		return ErrInsufficient
	}
	if amount > 0 && !emergency && rem < r.cfg.PauseBelowFen {
		return ErrPaused
	}
	p.reset(k, d, now)
	p.Order, p.Amount, p.Remaining = orderID, amount, rem-amount
	left := amount
	for i := range d.Legs {
		if left == 0 {
			break
		}
		if take := min(left, d.Legs[i].remaining()); take > 0 {
			p.Effects = append(p.Effects, Effect{EffectCapture, d.Legs[i].Txn, take})
			left -= take
		}
	}
	r.flags(p, rem)
	return nil
}

// Discharge plans the end of the stay: capture the last charges (orderID,
// amount; amount 0 and empty orderID for none; never paused), then release
// the remainder of every hold back to the patient's instrument. Because
// the money was only ever held, "refund to the original route" is the
// core's release: nothing was debited that needs paying back.
func (r *Rules) Discharge(d *Deposit, orderID string, amount int64, now time.Time, p *Plan) error {
	if d.State != StateOpen {
		return closedErr(d)
	}
	if orderID != "" || amount != 0 {
		if err := r.capture(d, KindDischarge, orderID, amount, true, now, p); err != nil {
			return err
		}
	} else {
		p.reset(KindDischarge, d, now)
		p.Remaining = d.Remaining()
	}
	r.releaseAll(d, p)
	return nil
}

// releaseAll appends a release for every leg with a remainder after the
// plan's captures, and leaves the deposit with nothing remaining.
func (r *Rules) releaseAll(d *Deposit, p *Plan) {
	for i := range d.Legs {
		rem := d.Legs[i].remaining()
		for _, e := range p.Effects {
			if e.Op == EffectCapture && e.Txn == d.Legs[i].Txn {
				rem -= e.Amount
			}
		}
		if rem > 0 {
			p.Effects = append(p.Effects, Effect{EffectRelease, d.Legs[i].Txn, rem})
		}
	}
	p.Remaining, p.LowBalance, p.Notice = 0, false, false
}

// Expire plans the release of a forgotten deposit: one without an open,
// top-up or capture for DepositExpiryHours. It reports false (and leaves p
// alone) when the deposit is not open or not yet due; the gateway's sweep
// calls it with its tick time.
func (r *Rules) Expire(d *Deposit, now time.Time, p *Plan) bool {
	if d.State != StateOpen || now.UnixNano()-d.Activity < int64(r.expiry) {
		return false
	}
	p.reset(KindExpire, d, now)
	r.releaseAll(d, p)
	return true
}

// Commit applies a plan after the core approved every one of its effects
// in the same shard step. A plan made for another deposit or another Seq is
// refused (ErrStalePlan); a duplicate plan changes nothing.
func (r *Rules) Commit(d *Deposit, p *Plan) error {
	if p.Deposit != d.ID && p.Kind != KindOpen || p.Seq != d.Seq {
		return ErrStalePlan
	}
	if p.Duplicate {
		return nil
	}
	if p.Kind == KindOpen {
		if d.State != StateNone {
			return ErrStalePlan
		}
		*d = Deposit{ID: p.Deposit, Account: p.Account, State: StateOpen, Seq: d.Seq, OpenedAt: p.At}
	}
	for _, e := range p.Effects {
		switch e.Op {
		case EffectHold:
			d.Legs = append(d.Legs, HoldLeg{Txn: e.Txn, Amount: e.Amount})
		case EffectCapture, EffectRelease:
			l := d.leg(e.Txn)
			if l == nil || e.Amount > l.remaining() {
				return ErrStalePlan // unreachable for a plan made at this Seq
			}
			if e.Op == EffectCapture {
				l.Captured += e.Amount
			} else {
				l.Released = true
			}
		}
	}
	switch p.Kind {
	case KindDischarge:
		d.State = StateDischarged
	case KindExpire:
		d.State = StateExpired
	}
	if p.Order != "" && p.Amount > 0 {
		r.rememberOrder(d, p.Order, p.Amount)
	}
	if p.Kind != KindExpire {
		d.Activity = p.At
	}
	d.Seq++
	return nil
}

func (d *Deposit) leg(txn uint64) *HoldLeg {
	for i := range d.Legs {
		if d.Legs[i].Txn == txn {
			return &d.Legs[i]
		}
	}
	return nil
}

// rememberOrder keeps the last OrdersMax order ids (FIFO): a retry comes
// within minutes, the window is the last OrdersMax orders of the stay.
func (r *Rules) rememberOrder(d *Deposit, id string, amount int64) {
	if len(d.orders) < r.cfg.OrdersMax {
		d.orders = append(d.orders, order{id, amount})
		return
	}
	d.orders[d.ordHead] = order{id, amount}
	d.ordHead = (d.ordHead + 1) % len(d.orders)
}
