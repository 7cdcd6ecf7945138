package core

import (
	"hash/maphash"
	"math"
	"strings"
	"time"

	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// Op is what an Input asks the shard to do.
type Op uint8

// Ops. The numbers are written into records; never renumber them.
const (
	OpOpenAccount Op = 1  // create an account; Amount = opening balance (credit), Class/Floor used
	OpTopUp       Op = 2  // credit Amount; Ref is the operator's idempotency ref (bounded dedupe in shard)
	OpBlock       Op = 3  // Blocked=true blocks, false unblocks
	OpPurchase    Op = 4  // debit Amount from Account for terminal TID/Txn, merchant Merchant
	OpReversal    Op = 5  // void the purchase (TID, Orig) exactly once, crediting it back
	OpBalance     Op = 6  // read only: Code + Available, no record
	OpHold        Op = 7  // place a hold of Amount (counts against available), id = (TID, Txn)
	OpCapture     Op = 8  // capture Amount (<= remaining hold) of hold (TID, Orig); partial allowed, several times
	OpRelease     Op = 9  // release the remainder of hold (TID, Orig); once
	OpTapIn       Op = 10 // bus tap-in on Route at Stop: fare rules decide a charge or a journey hold
	OpTapOut      Op = 11 // bus tap-out on Route at Stop: capture the fare, release the rest of the hold
	OpQRPay       Op = 12 // market: debit Amount for the consumer payment Code scanned by stall terminal TID/Txn
	OpRefund      Op = 13 // market: refund Amount of the QR payment (TID, Orig) to its account; own id (TID, Txn)
	OpTapUpload   Op = 14 // transit: one card's part of a reader's offline upload (Taps), applied in order; debt when uncovered
	OpECNYOffline Op = 15 // e-CNY double offline: debit Amount paid offline to Merchant, uploaded by TID/Txn; offline caps
	OpSetProfile  Op = 16 // operator: set the concession profile (Profile) of a county card; no money moves
	// OpJourneyExpire is the gateway closing Account's journey without a
	// valid tap-out: past its route's maximum journey time (the sweep), or
	// ended as incomplete by the card's next tap (ExpireBeforeTap). The
	// maximum fare held is captured for the boarding reader's merchant
	// (sweep.go).
	OpJourneyExpire Op = 17
)

var opNames = [...]string{"", "open", "topup", "block", "purchase", "reversal", "balance", "hold", "capture", "release", "tap_in", "tap_out", "qr_pay", "refund", "tap_upload", "ecny_offline", "set_profile", "journey_expire"}

func (o Op) String() string {
	if int(o) < len(opNames) && o != 0 {
		return opNames[o]
	}
	return "op?"
}

// journaled reports whether records of o can exist (every op but balance).
func (o Op) journaled() bool {
	return o >= OpOpenAccount && o <= OpJourneyExpire && o != OpBalance
}

// tap reports whether o is a transit tap (records of version 2); a
// journey closed by the sweep is journaled like a tap.
func (o Op) tap() bool {
	return o == OpTapIn || o == OpTapOut || o == OpTapUpload || o == OpJourneyExpire
}

// terminalOp reports whether o comes from a terminal and so needs TID/Txn.
func (o Op) terminalOp() bool {
	return o == OpPurchase || o == OpReversal || o == OpHold || o == OpCapture || o == OpRelease ||
		o == OpTapIn || o == OpTapOut || o == OpTapUpload || o.market() || o == OpECNYOffline
}

// market reports whether o is a market op (records of version 3).
func (o Op) market() bool { return o == OpQRPay || o == OpRefund }

// Input is one request to a shard. The caller owns it; Step keeps its
// strings (account key, terminal id, ref) in the shard's tables, so they
// must not be backed by memory the caller later overwrites.
type Input struct {
	Op       Op
	Account  string // ledger key "kind:id", kinds "county", "bank", "ecny" (terminals.Instrument.Key())
	Amount   int64  // fen
	TID      string // terminal id (empty for operator ops)
	Txn      uint64 // terminal txn id
	Orig     uint64 // original txn id for reversal/capture/release
	Hash     uint64 // request content hash (terminals.Request.ContentHash), recorded for audit
	Merchant string // merchant id of the terminal
	Ref      string // operator ref for OpTopUp / OpOpenAccount
	Class    uint8  // e-CNY wallet class 1..4 for OpOpenAccount of an ecny account; 0 otherwise
	Floor    int64  // lowest allowed balance (0 normally; negative = overdraft for bank accounts)
	Blocked  bool   // OpBlock
	Route    string // OpTapIn/OpTapOut: route id (<= transit.IDLenMax bytes)
	Stop     string // OpTapIn/OpTapOut: stop id (required on distance routes)
	// Code is the consumer payment code of an OpQRPay (market.CodePrefix
	// form); Account must be the account the code is bound to.
	Code string
	// QRStatic marks an OpQRPay through a merchant-presented static code
	// (PBoC class D, no consumer code): the wallet backend's report of a
	// scan of a stall's static code. Not reachable from the terminal wire.
	QRStatic bool
	// QRClass marks an OpQRPay through a merchant-presented dynamic stall
	// code scanned while fresh (PBoC class 1..3 = A..C, the payer's
	// verification, decided by the caller with market.Registry.Authorize;
	// 0 otherwise). Code is then the stall code's id, marked used in the
	// shard (market.StallTag) until QRExpiry (Unix seconds). Like QRStatic,
	// the wallet backend's report; not reachable from the terminal wire.
	QRClass  uint8
	QRExpiry int64
	// Taps is one card's part of an offline upload (OpTapUpload), at most
	// UploadTapsMax; each tap's Reader is the uploading terminal. Step sorts
	// it in place (by time, reader, seq) and reports outcomes in that order.
	Taps []transit.Tap
	// Profile is the concession profile an OpSetProfile gives a county
	// card (transit.ProfileAdult ... ProfileDisabled).
	Profile transit.Profile
}

// Output is the decision of one Step. The caller reuses it across Steps so
// that Record's buffer is reused.
type Output struct {
	Code      terminals.Code // result (terminals.CodeApproved, CodeInsufficientFunds, ...)
	Available int64          // available balance after the step (balance - held - floor), for replies
	Seq       uint64         // shard sequence number given to this record (0 if no record); used as the authorization reference
	Amount    int64          // taps: fen charged, held or captured by this tap (Record.Amount), for replies
	Record    []byte         // the encoded record to journal (Step appends into out.Record[:0]; empty when nothing to journal)
	// Flags are the transit flags of an approved tap, upload or top-up
	// (transit.FlagDeny: the card went into debt, transit.FlagUndeny: a
	// top-up paid its debt off): the gateway updates the deny list.
	Flags uint16
	// DebtPaid is the part of an approved top-up that paid transit debt
	// (fen; it goes to the bus company's receivable, not the balance); a
	// repeated top-up ref reports what the call that applied it paid.
	DebtPaid int64
	// Outcomes is an upload's per-tap outcome letters (the record's Ref,
	// UploadCharged ...), for the reply.
	Outcomes string
}

type kind uint8

const (
	kindCounty kind = 1
	kindBank   kind = 2
	kindECNY   kind = 3
)

var kindNames = [...]string{"", terminals.InstCounty, terminals.InstBank, terminals.InstECNY}

// kindOf parses the kind prefix of an account key "kind:id".
func kindOf(key string) (kind, bool) {
	i := strings.IndexByte(key, ':')
	if i <= 0 || i == len(key)-1 {
		return 0, false
	}
	switch key[:i] {
	case terminals.InstCounty:
		return kindCounty, true
	case terminals.InstBank:
		return kindBank, true
	case terminals.InstECNY:
		return kindECNY, true
	}
	return 0, false
}

// account is one ledger account. Invariants (checkAccount): held >= 0,
// floor <= 0 (and 0 unless bank), balance - held >= floor, balance - floor
// fits in int64 (so available never overflows), counters >= 0.
type account struct {
	key       string
	balance   int64
	held      int64
	floor     int64
	dayTotal  int64 // debits in business day `day`
	yearTotal int64 // debits in calendar year `year`
	day       int32 // business day of dayTotal, days since 1970-01-01 (local date)
	year      int32
	kind      kind
	class     uint8
	blocked   bool
	// card is the account's transit card state (nil until its first tap):
	// kept beside the balance so that the fare decision and its ledger
	// effect are one Step of one writer. At most one per account, so the
	// accounts bound it. An open journey's Held is part of held.
	card *transit.Card
	// qr is the account's PBoC QR class counters (nil until its first QR
	// payment), beside the balance for the same reason as card.
	qr *market.Customer
	// offN counts the wallet's double-offline payments since its last
	// online operation (ecny_offline.go).
	offN uint16
}

func (a *account) available() int64 { return a.balance - a.held - a.floor }

// txnKey names a terminal transaction: purchases and holds by (TID, Txn).
type txnKey struct {
	tid string
	txn uint64
}

type revEntry struct {
	acct     int32
	day      int32 // business day of the purchase
	year     int32
	amount   int64
	reversed bool
}

type refEntry struct {
	acct   int32
	amount int64
	debt   int64 // the part of amount that paid transit debt (record Orig)
}

type holdEntry struct {
	acct      int32
	amount    int64 // as placed
	remaining int64 // not yet captured
}

// Shard is one single-writer partition of the ledger. It is not safe for
// concurrent use: exactly one goroutine owns a Shard and calls Step (live)
// or Apply (replay) on it.
type Shard struct {
	id       uint32
	cfg      Config
	seq      uint64
	accounts []account
	byKey    map[string]int32
	seed     maphash.Seed
	rev      fifo[txnKey, revEntry]
	refs     fifo[string, refEntry]
	holds    pool[txnKey, holdEntry]
	clock    bizClock
	rec      Record             // Step's scratch record, reused so that Step does not allocate
	card     transit.Card       // decideTap's scratch copy of a card (the fare rules mutate it)
	mkt      marketState        // market scene state: used codes, refund ledger, code verifier
	cardBuf  []byte             // reused buffer of the card state a tap record carries
	upDec    []transit.Decision // decideUpload's reused per-tap decisions (<= UploadTapsMax)
	open     openSet            // accounts whose card has an open journey (sweep.go; derived, not in snapshots)
	closing  bool               // ExpireBeforeTap is closing a journey its tap would close (sweep.go)
	last     int32              // lookup's cached account index
}

// NewShard returns an empty shard. A nil cfg means DefaultConfig; zero
// bounds take their defaults. The bounded tables are allocated here, once.
func NewShard(id uint32, cfg *Config) *Shard {
	c := cfg.normalized()
	return &Shard{
		id:    id,
		cfg:   c,
		byKey: make(map[string]int32),
		seed:  maphash.MakeSeed(),
		rev:   newFIFO[txnKey, revEntry](c.ReversibleMax),
		refs:  newFIFO[string, refEntry](c.RefsMax),
		holds: newPool[txnKey, holdEntry](c.HoldsMax),
		clock: bizClock{loc: c.Loc},
		mkt:   newMarketState(&c),
	}
}

// SetTransit replaces the fare policy that tap ops decide with (the seam
// for the operators' versioned config push). It must be called by the
// shard's single writer, between Steps; records already journaled replay
// the same under any policy. A nil e is ignored.
func (s *Shard) SetTransit(e *transit.Engine) {
	if e != nil {
		s.cfg.Transit = e
	}
}

// ID is the shard id written into every record.
func (s *Shard) ID() uint32 { return s.id }

// Seq is the sequence number of the last record stepped or applied. Replay
// after Restore starts at Seq()+1; records at or below it are already in
// the snapshot.
func (s *Shard) Seq() uint64 { return s.seq }

// ShardOf maps an account key to one of n shards (FNV-1a, 64 bits). The
// mapping is part of the journal's meaning: never change it for a ledger
// that has records.
func ShardOf(account string, n int) int {
	if n <= 1 {
		return 0
	}
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(account); i++ {
		h ^= uint64(account[i])
		h *= prime
	}
	return int(h % uint64(n))
}

func mix64(x uint64) uint64 { // splitmix64 finalizer
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashTxn hashes a txnKey under the shard's random seed, so that a terminal
// choosing txn ids cannot aim them at one probe run.
func (s *Shard) hashTxn(tid string, txn uint64) uint64 {
	return mix64(maphash.String(s.seed, tid) + txn)
}

func (s *Shard) hashRef(ref string) uint64 { return maphash.String(s.seed, ref) }

// lookup finds an account. A one-entry cache saves the second map lookup
// of a Step (decide, then effect, look up the same key); accounts are never
// removed, so a cached index stays valid.
func (s *Shard) lookup(key string) (int32, *account) {
	if c := s.last; c < int32(len(s.accounts)) && s.accounts[c].key == key {
		return c, &s.accounts[c]
	}
	i, ok := s.byKey[key]
	if !ok {
		return -1, nil
	}
	s.last = i
	return i, &s.accounts[i]
}

// bizClock maps a UTC instant to its business day and year in Loc, caching
// the current day's bounds because nearly every Step falls in it.
type bizClock struct {
	loc      *time.Location
	from, to int64 // [from, to) in Unix nanoseconds is the cached day
	day      int32
	year     int32
}

func (c *bizClock) at(ns int64) (day, year int32) {
	if ns >= c.from && ns < c.to {
		return c.day, c.year
	}
	t := time.Unix(0, ns).In(c.loc)
	y, m, d := t.Date()
	c.from = time.Date(y, m, d, 0, 0, 0, 0, c.loc).UnixNano()
	c.to = time.Date(y, m, d+1, 0, 0, 0, 0, c.loc).UnixNano()
	c.day = int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	c.year = int32(y)
	return c.day, c.year
}

// checked arithmetic on fen. ok is false on overflow.
func add64(a, b int64) (int64, bool) {
	c := a + b
	return c, (c > a) == (b > 0)
}

func sub64(a, b int64) (int64, bool) {
	c := a - b
	return c, (c < a) == (b > 0)
}

// Step decides in at time now, applies the effect in memory and, when the
// decision must be journaled, writes the record into out.Record and its
// sequence number into out.Seq. The caller must make out.Record durable
// before it replies with out.Code. Step never fails: bad input is a code.
//
// Journaling rule: every approved effect is journaled. Declines of terminal
// ops (purchase, reversal, hold, capture, release) are journaled so that
// the stored reply can be rebuilt after a restart, except
// CodeOriginalNotFound, which names nothing in the ledger. Outcomes with no
// effect are not journaled: balance inquiries, a second reversal of the same
// original (approved, no effect), a repeated top-up ref, an open of an
// existing account, declines of operator ops, and refusals (CodeMalformed,
// CodeUnsupported, CodeIDConflict, CodeBusy).
func (s *Shard) Step(now time.Time, in *Input, out *Output) {
	out.Code, out.Available, out.Seq, out.Amount = "", 0, 0, 0
	out.Flags, out.DebtPaid, out.Outcomes = 0, 0, ""
	out.Record = out.Record[:0]
	r := &s.rec
	*r = Record{
		Version:  RecordVersion,
		Op:       in.Op,
		Shard:    s.id,
		Time:     now.UnixNano(),
		Account:  in.Account,
		Amount:   in.Amount,
		TID:      in.TID,
		Txn:      in.Txn,
		Orig:     in.Orig,
		Hash:     in.Hash,
		Merchant: in.Merchant,
		Ref:      in.Ref,
		Route:    in.Route,
		Stop:     in.Stop,
	}
	if in.Op.tap() {
		r.Version, r.Amount = RecordVersionTap, 0
	}
	if in.Op.market() {
		r.Version = RecordVersionMarket
	}
	code, journal := s.decide(in, r)
	out.Code = code
	if !journal {
		if _, a := s.lookup(in.Account); a != nil {
			out.Available = a.available()
		}
		if in.Op == OpTopUp && code == terminals.CodeApproved {
			out.DebtPaid = int64(r.Orig) // a repeated ref: what the first call paid
		}
		return
	}
	r.Code = code
	if code != terminals.CodeApproved {
		r.Market = MarketAmounts{} // a market decline records no class, legs or counters
	}
	r.Seq = s.seq + 1
	a, err := s.effect(r)
	if err != nil {
		// decide approved something effect refuses: the two disagree, a
		// programmer error. Continuing would journal a lie.
		panic("core: invariant: " + err.Error())
	}
	if a != nil {
		r.Balance, r.Held, r.Floor, r.Class, r.Blocked = a.balance, a.held, a.floor, a.class, a.blocked
		out.Available = a.available()
		if in.Op.market() && r.Code == terminals.CodeApproved {
			r.Market.QRDay, r.Market.QRSpent = qrAfter(a, r.Market.Class)
		}
	}
	out.Seq = r.Seq
	out.Amount = r.Amount
	offlineOutput(r, a, out)
	out.Record = r.AppendBinary(out.Record)
}

// decide computes the code for in without changing the shard (the business
// clock cache aside). It may adjust r for the record (the release amount,
// the floor and class of a new account).
func (s *Shard) decide(in *Input, r *Record) (terminals.Code, bool) {
	if len(in.Account) > MaxFieldLen || len(in.TID) > MaxFieldLen || len(in.Merchant) > MaxFieldLen || len(in.Ref) > MaxFieldLen {
		return terminals.CodeMalformed, false
	}
	if in.Op.terminalOp() && (in.TID == "" || in.Txn == 0) {
		return terminals.CodeMalformed, false
	}
	switch in.Op {
	case OpOpenAccount:
		return s.decideOpen(in, r)
	case OpTopUp:
		return s.decideTopUp(in, r)
	case OpBlock:
		if _, a := s.lookup(in.Account); a == nil {
			return terminals.CodeUnknownInstrument, false
		}
		r.Blocked = in.Blocked
		return terminals.CodeApproved, true
	case OpPurchase:
		return s.decideDebit(in, r, false)
	case OpHold:
		return s.decideDebit(in, r, true)
	case OpReversal:
		return s.decideReversal(in)
	case OpCapture:
		return s.decideCapture(in, r)
	case OpRelease:
		return s.decideRelease(in, r)
	case OpTapIn, OpTapOut:
		return s.decideTap(in, r)
	case OpTapUpload:
		return s.decideUpload(in, r)
	case OpECNYOffline:
		return s.decideECNYOffline(in, r)
	case OpSetProfile:
		return s.decideProfile(in, r)
	case OpJourneyExpire:
		return s.decideJourneyExpire(in, r)
	case OpQRPay:
		return s.decideQRPay(in, r)
	case OpRefund:
		return s.decideRefund(in, r)
	case OpBalance:
		_, a := s.lookup(in.Account)
		switch {
		case a == nil:
			return terminals.CodeUnknownInstrument, false
		case a.blocked:
			return terminals.CodeInstrumentBlocked, false
		}
		return terminals.CodeApproved, false
	}
	return terminals.CodeUnsupported, false
}

// openCheck validates an account opening; Step and Apply share it.
func openCheck(cfg *Config, key string, amount, floor int64, class uint8) terminals.Code {
	k, ok := kindOf(key)
	switch {
	case !ok:
		return terminals.CodeMalformed
	case floor > 0 || (floor < 0 && k != kindBank):
		return terminals.CodeMalformed // only bank accounts may overdraw
	case k == kindECNY && (class < 1 || class > 4):
		return terminals.CodeMalformed
	case k != kindECNY && class != 0:
		return terminals.CodeMalformed
	case amount < 0:
		return terminals.CodeInvalidAmount
	case amount > math.MaxInt64+floor:
		return terminals.CodeInvalidAmount // balance - floor must fit
	case k == kindECNY && cfg != nil && overCap(cfg.ECNY[class].Balance, amount):
		return terminals.CodeLimitBalance
	}
	return terminals.CodeApproved
}

func overCap(limit, v int64) bool { return limit > 0 && v > limit }

func (s *Shard) decideOpen(in *Input, r *Record) (terminals.Code, bool) {
	if _, a := s.lookup(in.Account); a != nil {
		return terminals.CodeIDConflict, false
	}
	if c := openCheck(&s.cfg, in.Account, in.Amount, in.Floor, in.Class); c != terminals.CodeApproved {
		return c, false
	}
	r.Floor, r.Class = in.Floor, in.Class
	return terminals.CodeApproved, true
}

// credit checks that amt can be credited to a: no overflow of balance or of
// balance - floor.
func credit(a *account, amt int64) (int64, bool) {
	nb, ok := add64(a.balance, amt)
	if !ok || nb > math.MaxInt64+a.floor {
		return 0, false
	}
	return nb, true
}

func (s *Shard) decideTopUp(in *Input, r *Record) (terminals.Code, bool) {
	if in.Ref == "" {
		return terminals.CodeMalformed, false // a top-up without a ref could not be deduplicated
	}
	if in.Amount <= 0 {
		return terminals.CodeInvalidAmount, false
	}
	ai, a := s.lookup(in.Account)
	if e := s.refs.get(in.Ref, s.hashRef(in.Ref)); e != nil {
		if e.acct == ai && e.amount == in.Amount {
			// The debt it paid is reported again (Output.DebtPaid).
			r.Orig = uint64(e.debt)
			return terminals.CodeApproved, false // the first top-up stands
		}
		return terminals.CodeIDConflict, false
	}
	if a == nil {
		return terminals.CodeUnknownInstrument, false
	}
	// Transit debt is paid first (DOMAIN: paying the debt takes the card
	// off the deny list); the record carries the part in Orig.
	pay := debtPay(a, in.Amount)
	r.Orig = uint64(pay)
	nb, ok := credit(a, in.Amount-pay)
	if !ok {
		return terminals.CodeInvalidAmount, false
	}
	if a.kind == kindECNY && overCap(s.cfg.ECNY[a.class].Balance, nb) {
		return terminals.CodeLimitBalance, false
	}
	return terminals.CodeApproved, true
}

// dayUsed and yearUsed are a's counters as seen on (day, year): a counter
// of an earlier day or year counts as zero.
func dayUsed(a *account, day int32) int64 {
	if a.day == day {
		return a.dayTotal
	}
	return 0
}

func yearUsed(a *account, year int32) int64 {
	if a.year == year {
		return a.yearTotal
	}
	return 0
}

// counters are an account's e-CNY day and year counters after a debit. A
// debit's effect computes them first (spend) and stores them (count) only
// once every check has passed, so a refused record changes nothing.
type counters struct {
	day, year           int32
	dayTotal, yearTotal int64
}

// spend returns a's counters after debiting amt at ns (UTC Unix ns), and
// false if a counter would overflow.
func (s *Shard) spend(a *account, ns, amt int64) (counters, bool) {
	day, year := s.clock.at(ns)
	du, ok1 := add64(dayUsed(a, day), amt)
	yu, ok2 := add64(yearUsed(a, year), amt)
	return counters{day: day, year: year, dayTotal: du, yearTotal: yu}, ok1 && ok2
}

// count stores counters from spend in a.
func (a *account) count(c counters) {
	a.day, a.dayTotal, a.year, a.yearTotal = c.day, c.dayTotal, c.year, c.yearTotal
}

// limitCheck applies the e-CNY class limits to a debit of amt at r.Time in
// precedence single, daily, annual. single is skipped for captures (the hold
// already passed it). Counter overflow is CodeInvalidAmount.
func (s *Shard) limitCheck(a *account, amt, ns int64, single bool) terminals.Code {
	c, ok := s.spend(a, ns, amt)
	if !ok {
		return terminals.CodeInvalidAmount
	}
	if a.kind != kindECNY {
		return terminals.CodeApproved
	}
	l := &s.cfg.ECNY[a.class]
	switch {
	case single && overCap(l.Single, amt):
		return terminals.CodeLimitSingle
	case overCap(l.Daily, c.dayTotal):
		return terminals.CodeLimitDaily
	case overCap(l.Annual, c.yearTotal):
		return terminals.CodeLimitAnnual
	}
	return terminals.CodeApproved
}

// decideDebit decides a purchase or a hold. Precedence: amount, unknown
// account, blocked, single, daily, annual, funds; then the refusals that
// are not decisions (id reuse, full hold table).
func (s *Shard) decideDebit(in *Input, r *Record, hold bool) (terminals.Code, bool) {
	h := s.hashTxn(in.TID, in.Txn)
	k := txnKey{in.TID, in.Txn}
	if s.rev.get(k, h) != nil || s.holds.find(k, h) >= 0 {
		return terminals.CodeIDConflict, false // the gateway's dedupe should have caught it
	}
	if in.Amount <= 0 {
		return terminals.CodeInvalidAmount, true
	}
	_, a := s.lookup(in.Account)
	if a == nil {
		return terminals.CodeUnknownInstrument, true
	}
	if a.blocked {
		return terminals.CodeInstrumentBlocked, true
	}
	if c := s.limitCheck(a, in.Amount, r.Time, true); c != terminals.CodeApproved {
		return c, true
	}
	if in.Amount > a.available() {
		return terminals.CodeInsufficientFunds, true
	}
	if hold && s.holds.len() == len(s.holds.vals) {
		return terminals.CodeBusy, false // HoldsMax live holds: retry later, nothing journaled
	}
	return terminals.CodeApproved, true
}

func (s *Shard) decideReversal(in *Input) (terminals.Code, bool) {
	e := s.rev.get(txnKey{in.TID, in.Orig}, s.hashTxn(in.TID, in.Orig))
	if e == nil || s.accounts[e.acct].key != in.Account {
		return terminals.CodeOriginalNotFound, false
	}
	if e.reversed {
		return terminals.CodeApproved, false // voided already; exactly once
	}
	if in.Amount != e.amount {
		return terminals.CodeInvalidAmount, true
	}
	if _, ok := credit(&s.accounts[e.acct], e.amount); !ok {
		return terminals.CodeInvalidAmount, true
	}
	return terminals.CodeApproved, true
}

func (s *Shard) findHold(in *Input) *holdEntry {
	i := s.holds.find(txnKey{in.TID, in.Orig}, s.hashTxn(in.TID, in.Orig))
	if i < 0 {
		return nil
	}
	e := &s.holds.vals[i]
	if s.accounts[e.acct].key != in.Account {
		return nil
	}
	return e
}

// decideCapture: captures count toward the daily and annual limits on the
// day of the capture (that is when money leaves), so a capture can be
// declined by a limit that other payments used up after the hold.
func (s *Shard) decideCapture(in *Input, r *Record) (terminals.Code, bool) {
	e := s.findHold(in)
	if e == nil {
		return terminals.CodeOriginalNotFound, false
	}
	if in.Amount <= 0 || in.Amount > e.remaining {
		return terminals.CodeInvalidAmount, true
	}
	if c := s.limitCheck(&s.accounts[e.acct], in.Amount, r.Time, false); c != terminals.CodeApproved {
		return c, true
	}
	return terminals.CodeApproved, true
}

func (s *Shard) decideRelease(in *Input, r *Record) (terminals.Code, bool) {
	e := s.findHold(in)
	if e == nil {
		return terminals.CodeOriginalNotFound, false
	}
	r.Amount = e.remaining // the record carries what was released
	return terminals.CodeApproved, true
}
