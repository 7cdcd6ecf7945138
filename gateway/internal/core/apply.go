package core

import (
	"fmt"
	"time"

	"scenepay/terminals"
)

// ReplayError reports a record that cannot be applied to the shard as it
// stands: a gap in the sequence, a record of another shard, or an effect
// whose preconditions or resulting state differ from what the record says.
// Any of these means the journal or the snapshot is not the history of this
// shard; the shard must be discarded, not repaired.
type ReplayError struct {
	Seq uint64 // the record's sequence number
	Op  Op
	Msg string
}

func (e *ReplayError) Error() string {
	return fmt.Sprintf("core: replay of record %d (%v): %s", e.Seq, e.Op, e.Msg)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *ReplayError) Is(target error) bool { return target == ErrCorrupt }

// Apply replays one journaled record: it performs the record's effect with
// exactly the code Step used (policy such as limits is not re-decided, so a
// changed Config cannot block a replay) and then checks that the account
// ends with the balance, held, floor, class and blocked flag the record
// carries. Records must come in sequence order without gaps, starting at
// Seq()+1. After an error the shard's state is undefined.
func (s *Shard) Apply(r *Record) error {
	fail := func(format string, args ...any) error {
		return &ReplayError{Seq: r.Seq, Op: r.Op, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case r.Version != recordVersionOf(r.Op):
		return fail("version %d, want %d", r.Version, recordVersionOf(r.Op))
	case r.Shard != s.id:
		return fail("record of shard %d applied to shard %d", r.Shard, s.id)
	case r.Seq != s.seq+1:
		return fail("sequence gap: shard is at %d", s.seq)
	case !r.Op.journaled():
		return fail("op %d is never journaled", r.Op)
	}
	if _, ok := lookupRecordCode(codeBytes(r.Code)); !ok {
		return fail("code %q is not a decision", r.Code)
	}
	a, err := s.effect(r)
	if err != nil {
		return fail("%v", err)
	}
	var bal, held, floor int64
	var class uint8
	var blocked bool
	if a != nil {
		bal, held, floor, class, blocked = a.balance, a.held, a.floor, a.class, a.blocked
	}
	if r.Op.market() && r.Code == terminals.CodeApproved && a != nil {
		if day, spent := qrAfter(a, r.Market.Class); day != r.Market.QRDay || spent != r.Market.QRSpent {
			return fail("divergence: account %q QR class %d counter is day=%d spent=%d, record says day=%d spent=%d",
				r.Account, r.Market.Class, day, spent, r.Market.QRDay, r.Market.QRSpent)
		}
	}
	if bal != r.Balance || held != r.Held || floor != r.Floor || class != r.Class || blocked != r.Blocked {
		return fail("divergence: account %q is balance=%d held=%d floor=%d class=%d blocked=%t, record says balance=%d held=%d floor=%d class=%d blocked=%t",
			r.Account, bal, held, floor, class, blocked, r.Balance, r.Held, r.Floor, r.Class, r.Blocked)
	}
	return nil
}

// effect performs r on the shard: Step's effects and Apply's replays both go
// through here, which is what makes replay reproduce the live state. It
// checks every precondition before it changes anything and returns the
// account the record is about (nil if there is none). On success the shard
// is at r.Seq.
func (s *Shard) effect(r *Record) (*account, error) {
	ai, a := s.lookup(r.Account)
	if r.Op == OpQRPay {
		// Forget expired used codes at the record's time, approved or
		// declined: live Step purges (in Verify) only on steps that end in
		// such a record, at the same time, so replay keeps the same set.
		s.mkt.used.Room(time.Unix(0, r.Time).Unix())
	}
	if r.Code != terminals.CodeApproved {
		// A journaled decline changes nothing but the sequence.
		if r.Code == terminals.CodeUnknownInstrument && a != nil {
			return nil, fmt.Errorf("declined as unknown, but account %q exists", r.Account)
		}
		s.seq = r.Seq
		return a, nil
	}
	if r.Op != OpOpenAccount && r.Op != OpReversal && r.Op != OpCapture && r.Op != OpRelease && a == nil {
		return nil, fmt.Errorf("account %q does not exist", r.Account)
	}
	var err error
	switch r.Op {
	case OpOpenAccount:
		ai, a, err = s.effectOpen(r, a)
	case OpTopUp:
		err = s.effectTopUp(r, ai, a)
	case OpBlock:
		a.blocked = r.Blocked
	case OpPurchase, OpHold:
		err = s.effectDebit(r, ai, a)
	case OpReversal:
		a, err = s.effectReversal(r)
	case OpCapture, OpRelease:
		a, err = s.effectHold(r)
	case OpTapIn, OpTapOut:
		err = s.effectTap(r, a)
	case OpTapUpload:
		err = s.effectUpload(r, a)
	case OpECNYOffline:
		err = s.effectECNYOffline(r, a)
	case OpQRPay:
		err = s.effectQRPay(r, a)
	case OpRefund:
		err = s.effectRefund(r, a)
	case OpSetProfile:
		err = effectProfile(r, a)
	case OpJourneyExpire:
		err = s.effectJourneyExpire(r, a)
	default:
		err = fmt.Errorf("op %d has no effect", r.Op)
	}
	if err != nil {
		return nil, err
	}
	if err := checkAccount(a); err != nil {
		return nil, err
	}
	if syncsOffline(r.Op) {
		a.offN = 0 // an online operation is the wallet's sync
	}
	if r.Op.tap() {
		s.trackJourney(ai, a)
	}
	s.seq = r.Seq
	return a, nil
}

func (s *Shard) effectOpen(r *Record, a *account) (int32, *account, error) {
	if a != nil {
		return 0, nil, fmt.Errorf("account %q exists already", r.Account)
	}
	// Limits are policy and not re-checked; the shape of the account is.
	if c := openCheck(nil, r.Account, r.Amount, r.Floor, r.Class); c != terminals.CodeApproved {
		return 0, nil, fmt.Errorf("account %q cannot be opened: %s", r.Account, c.Name())
	}
	if len(s.accounts) >= maxAccounts {
		return 0, nil, fmt.Errorf("shard holds %d accounts, the most it can index", len(s.accounts))
	}
	k, _ := kindOf(r.Account)
	ai := int32(len(s.accounts))
	s.accounts = append(s.accounts, account{key: r.Account, balance: r.Amount, floor: r.Floor, kind: k, class: r.Class})
	s.byKey[r.Account] = ai
	return ai, &s.accounts[ai], nil
}

// maxAccounts keeps account indexes inside int32.
const maxAccounts = 1<<31 - 1

func (s *Shard) effectTopUp(r *Record, ai int32, a *account) error {
	if r.Amount <= 0 {
		return fmt.Errorf("top-up of %d fen", r.Amount)
	}
	pay := debtPay(a, r.Amount)
	if r.Orig != uint64(pay) {
		return fmt.Errorf("top-up pays %d fen of debt, the record says %d", pay, r.Orig)
	}
	nb, ok := credit(a, r.Amount-pay)
	if !ok {
		return fmt.Errorf("top-up of %d fen overflows balance %d", r.Amount, a.balance)
	}
	var h uint64
	if r.Ref != "" {
		h = s.hashRef(r.Ref)
		if s.refs.get(r.Ref, h) != nil {
			return fmt.Errorf("top-up ref %q already applied", r.Ref)
		}
	}
	a.balance = nb
	if pay > 0 {
		a.card.Debt -= pay
	}
	if r.Ref != "" {
		s.refs.push(r.Ref, h, refEntry{acct: ai, amount: r.Amount, debt: int64(pay)})
	}
	return nil
}

func (s *Shard) effectDebit(r *Record, ai int32, a *account) error {
	if r.Amount <= 0 || r.Amount > a.available() {
		return fmt.Errorf("debit of %d fen with %d available", r.Amount, a.available())
	}
	if r.TID == "" || r.Txn == 0 {
		return fmt.Errorf("debit without a terminal txn id")
	}
	k, h := txnKey{r.TID, r.Txn}, s.hashTxn(r.TID, r.Txn)
	if s.rev.get(k, h) != nil || s.holds.find(k, h) >= 0 {
		return fmt.Errorf("txn %s/%d is already in the ledger", r.TID, r.Txn)
	}
	if r.Op == OpHold {
		if !s.holds.add(k, h, holdEntry{acct: ai, amount: r.Amount, remaining: r.Amount}) {
			return fmt.Errorf("hold table full (%d)", len(s.holds.vals))
		}
		a.held += r.Amount
		return nil
	}
	c, ok := s.spend(a, r.Time, r.Amount)
	if !ok {
		return fmt.Errorf("debit of %d fen overflows the day or year counter", r.Amount)
	}
	a.balance -= r.Amount
	a.count(c)
	s.rev.push(k, h, revEntry{acct: ai, day: c.day, year: c.year, amount: r.Amount})
	return nil
}

func (s *Shard) effectReversal(r *Record) (*account, error) {
	e := s.rev.get(txnKey{r.TID, r.Orig}, s.hashTxn(r.TID, r.Orig))
	switch {
	case e == nil:
		return nil, fmt.Errorf("original %s/%d not found", r.TID, r.Orig)
	case e.reversed:
		return nil, fmt.Errorf("original %s/%d already reversed", r.TID, r.Orig)
	case s.accounts[e.acct].key != r.Account:
		return nil, fmt.Errorf("original %s/%d is on another account", r.TID, r.Orig)
	case e.amount != r.Amount:
		return nil, fmt.Errorf("original %s/%d was %d fen, reversal says %d", r.TID, r.Orig, e.amount, r.Amount)
	}
	a := &s.accounts[e.acct]
	nb, ok := credit(a, e.amount)
	if !ok {
		return nil, fmt.Errorf("reversal of %d fen overflows balance %d", e.amount, a.balance)
	}
	a.balance = nb
	// Take the purchase off the counters it still sits in. min() guards a
	// clock that stepped back across a day, after which the counter may
	// no longer contain the purchase.
	if e.day == a.day {
		a.dayTotal -= min(a.dayTotal, e.amount)
	}
	if e.year == a.year {
		a.yearTotal -= min(a.yearTotal, e.amount)
	}
	e.reversed = true
	return a, nil
}

func (s *Shard) effectHold(r *Record) (*account, error) {
	i := s.holds.find(txnKey{r.TID, r.Orig}, s.hashTxn(r.TID, r.Orig))
	if i < 0 {
		return nil, fmt.Errorf("hold %s/%d not found", r.TID, r.Orig)
	}
	e := &s.holds.vals[i]
	a := &s.accounts[e.acct]
	if a.key != r.Account {
		return nil, fmt.Errorf("hold %s/%d is on another account", r.TID, r.Orig)
	}
	if r.Op == OpRelease {
		if r.Amount != e.remaining {
			return nil, fmt.Errorf("release of %d fen, hold has %d", r.Amount, e.remaining)
		}
		a.held -= e.remaining
		s.holds.del(i)
		return a, nil
	}
	if r.Amount <= 0 || r.Amount > e.remaining {
		return nil, fmt.Errorf("capture of %d fen, hold has %d", r.Amount, e.remaining)
	}
	c, ok := s.spend(a, r.Time, r.Amount)
	if !ok {
		return nil, fmt.Errorf("capture of %d fen overflows the day or year counter", r.Amount)
	}
	a.balance -= r.Amount
	a.held -= r.Amount
	a.count(c)
	e.remaining -= r.Amount
	if e.remaining == 0 {
		s.holds.del(i) // fully captured: no further capture or release
	}
	return a, nil
}

// checkAccount asserts the account invariants of the money path.
func checkAccount(a *account) error {
	free, ok1 := sub64(a.balance, a.held)
	_, ok2 := sub64(a.balance, a.floor)
	switch {
	case a.held < 0:
		return fmt.Errorf("account %q: held %d < 0", a.key, a.held)
	case a.floor > 0 || (a.floor < 0 && a.kind != kindBank):
		return fmt.Errorf("account %q: floor %d not allowed for its kind", a.key, a.floor)
	case !ok1 || !ok2:
		return fmt.Errorf("account %q: balance %d, held %d, floor %d overflow", a.key, a.balance, a.held, a.floor)
	case free < a.floor:
		return fmt.Errorf("account %q: balance %d - held %d below floor %d", a.key, a.balance, a.held, a.floor)
	case a.dayTotal < 0 || a.yearTotal < 0:
		return fmt.Errorf("account %q: counters day=%d year=%d < 0", a.key, a.dayTotal, a.yearTotal)
	case a.kind == kindECNY && (a.class < 1 || a.class > 4), a.kind != kindECNY && a.class != 0:
		return fmt.Errorf("account %q: class %d not allowed for its kind", a.key, a.class)
	}
	return nil
}
