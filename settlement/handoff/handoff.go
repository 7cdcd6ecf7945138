package handoff

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"time"

	"scenepay/terminals"
)

// Named bounds. A batch beyond them is refused, not truncated.
const (
	// BatchRowsMax is the most rows one batch may carry. The gateway seals
	// by count well below it; the store stages a whole batch in one
	// transaction, so the bound also caps that transaction's size.
	BatchRowsMax = 50_000
	// EncodedBytesMax bounds an encoded batch (about 300 bytes a row).
	EncodedBytesMax = 32 << 20
	// SourceLenMax bounds a gateway instance id.
	SourceLenMax = 64
	// MerchantLenMax bounds a merchant id.
	MerchantLenMax = 64
	// AuthLenMax bounds an authorization reference.
	AuthLenMax = 64
	// LSNMax is the largest LSN the store can hold (a signed 64-bit column).
	LSNMax = math.MaxInt64
	// SyncsMax is the most wallet syncs one batch may carry (at most one
	// per journal record, and a batch covers fewer records than this).
	SyncsMax = 50_000
)

// Scenes.
const (
	SceneBus   = "bus"
	SceneStall = "stall"
	SceneKiosk = "kiosk"
)

// Operations. The sign of Amount follows the operation: money the merchant
// receives is positive, money given back is negative.
const (
	OpPurchase = "purchase" // +amount
	OpCapture  = "capture"  // +amount: a hold turned into a payment
	OpReversal = "reversal" // -amount: a void of an earlier request (Orig)
	OpRefund   = "refund"   // -amount: money returned for an earlier payment (Orig)
	// OpDebtRecovery is transit debt paid by a card's top-up, owed to the
	// bus company (the row's merchant): +amount, Orig 0.
	OpDebtRecovery = "debt_recovery"
)

// Leg kinds: the per-payment divisions a row may carry (Txn.Legs).
const (
	// LegMarketFee is the market operator's leg of a QR payment (+) or of
	// a refund (-, taken back); Payee is the operator's merchant id. It is
	// part of the row's Amount: the stall merchant's takings include it
	// and clearing pays it on to the operator.
	LegMarketFee = "market_fee"
	// LegInsPooled and LegInsPersonal are the parts of a hospital bill the
	// medical insurance platform pays (pooled fund, personal account);
	// Payee names the insurance payer. They are not part of the row's
	// Amount (the patient's instrument paid only the self-pay part): they
	// are receivables of the merchant from the payer.
	LegInsPooled   = "ins_pooled"
	LegInsPersonal = "ins_personal"
)

// LegsMax bounds the legs of one row (one of each kind at most).
const LegsMax = 3

// Leg is one division of a row, paid to or owed by someone other than the
// row's merchant. Amount is fen: a market_fee leg is signed like the row,
// an insurance leg is positive.
type Leg struct {
	Kind   string
	Payee  string // merchant or payer id, same rules as a merchant id
	Amount int64
}

// Txn is one journaled transaction as settlement sees it.
type Txn struct {
	Source   string    // gateway instance id
	LSN      uint64    // journal LSN, unique per Source
	At       time.Time // gateway time, UTC, microsecond precision
	Merchant string    // merchant id
	Terminal string    // terminal id (the wire "tid")
	Scene    string    // SceneBus, SceneStall, SceneKiosk
	Op       string    // OpPurchase, OpCapture, OpReversal, OpRefund, OpDebtRecovery
	InstKind string    // terminals.InstCounty, InstBank, InstECNY
	Account  string    // ledger key: a token, card id or wallet id; never a PAN
	Amount   int64     // fen, signed by Op
	Auth     string    // gateway authorization reference
	Txn      uint64    // terminal txn id
	Orig     uint64    // terminal txn id of the original, for reversal and refund
	Legs     []Leg     // optional per-payment divisions, at most LegsMax, nil when none
	// Unsynced marks an e-CNY "double offline" payment (only on a
	// purchase row of InstKind ecny): the payee's value is not paid out
	// until the paying wallet syncs online (see Sync).
	Unsynced bool
}

// Sync is an e-CNY wallet's sync: an approved online operation of the
// wallet (an online debit, QR payment, tap, hold or top-up), after which
// its earlier offline payments (rows with Unsynced) may be paid out to
// their payees. Account is the wallet id as in Txn.Account (InstKind ecny
// is implied); LSN is the journal record's.
//
// The rule that splits the syncs between rows and Batch.Syncs: a row for
// which SyncsWallet is true is its wallet's sync by itself (settlement
// sees it); every other approved online operation of an e-CNY wallet (a
// top-up, a hold, a tap, a payment at a bus terminal, a capture) is sent
// as a Sync in the batch covering its LSN, whether or not it gives a row.
type Sync struct {
	Account string
	At      time.Time // gateway time of the sync, UTC, microsecond precision
	LSN     uint64
}

// SyncsWallet reports whether row r is by itself the sync of its e-CNY
// wallet: an online purchase row (not Unsynced) of an ecny account at a
// stall or kiosk terminal. Bus rows are never syncs by themselves: a bus
// reader's offline upload gives purchase rows too, so the gateway sends
// the syncs of online taps as Batch.Syncs instead.
func (r *Txn) SyncsWallet() bool {
	return r.InstKind == terminals.InstECNY && r.Op == OpPurchase && !r.Unsynced && r.Scene != SceneBus
}

// Batch is a contiguous LSN range of one source's journal, with the
// settlement rows found in it. Journal records that do not settle
// (declines, inquiries, top-ups) are inside the range but not in Rows, so a
// batch may cover a range and carry no rows; it still advances the high
// water. A batch with FirstLSN == LastLSN == 0 covers no range: it only
// carries a watermark, which is how an idle gateway lets windows close.
type Batch struct {
	ID        string    // BatchID(Source, FirstLSN, LastLSN)
	Source    string    // gateway instance id
	FirstLSN  uint64    // first journal LSN covered, or 0 for a watermark-only batch
	LastLSN   uint64    // last journal LSN covered, or 0 for a watermark-only batch
	Watermark time.Time // every transaction of Source up to this gateway time is handed off once this batch is
	Rows      []Txn     // ascending LSN, all within [FirstLSN, LastLSN]
	// Syncs are the e-CNY wallet syncs in the range that no row shows
	// (see Sync): ascending (LSN, Account), at most SyncsMax, nil when none.
	Syncs []Sync
}

// BatchID is the deterministic id of a batch: the same source and range
// always give the same id, so a re-sent batch is recognised by id alone.
// Sources are restricted to [A-Za-z0-9._-], so the id cannot be ambiguous.
func BatchID(source string, first, last uint64) string {
	b := make([]byte, 0, len(source)+42)
	b = append(b, source...)
	b = append(b, ':')
	b = strconv.AppendUint(b, first, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, last, 10)
	return string(b)
}

// WatermarkOnly reports whether the batch covers no LSN range.
func (b *Batch) WatermarkOnly() bool { return b.FirstLSN == 0 && b.LastLSN == 0 }

// Validate checks every field and every cross-field rule. It is called by
// Decode and again by every store before a write, so that a batch built in
// memory is held to the same rules as one read from the wire.
func (b *Batch) Validate() error {
	if why := checkSource(b.Source); why != "" {
		return malformed("source", why)
	}
	if len(b.Rows) > BatchRowsMax {
		return &Error{Code: CodeOversize, Field: "rows", Reason: "more than " + strconv.Itoa(BatchRowsMax) + " rows"}
	}
	if why := checkTime(b.Watermark); why != "" {
		return malformed("watermark", why)
	}
	if b.WatermarkOnly() {
		if len(b.Rows) != 0 {
			return malformed("rows", "a watermark-only batch carries no rows")
		}
	} else {
		if b.FirstLSN == 0 || b.LastLSN < b.FirstLSN || b.LastLSN > LSNMax {
			return malformed("lsn", "range must satisfy 1 <= first <= last <= 2^63-1")
		}
	}
	if b.ID != BatchID(b.Source, b.FirstLSN, b.LastLSN) {
		return malformed("id", "not the id of this source and range")
	}
	var prev uint64
	for i := range b.Rows {
		r := &b.Rows[i]
		f := func(name string) string { return rowField(i, name) }
		if r.Source != b.Source {
			return malformed(f("source"), "differs from the batch source")
		}
		if r.LSN < b.FirstLSN || r.LSN > b.LastLSN {
			return malformed(f("lsn"), "outside the batch range")
		}
		if i > 0 && r.LSN <= prev {
			return malformed(f("lsn"), "not ascending")
		}
		prev = r.LSN
		if err := r.validate(i); err != nil {
			return err
		}
		if r.At.After(b.Watermark) {
			return malformed(f("at"), "after the batch watermark")
		}
	}
	return b.validateSyncs()
}

// validateSyncs checks the wallet syncs of a batch whose rows are valid.
func (b *Batch) validateSyncs() error {
	if len(b.Syncs) == 0 {
		return nil
	}
	if len(b.Syncs) > SyncsMax {
		return &Error{Code: CodeOversize, Field: "syncs", Reason: "more than " + strconv.Itoa(SyncsMax) + " syncs"}
	}
	if b.WatermarkOnly() {
		return malformed("syncs", "a watermark-only batch carries no syncs")
	}
	for j := range b.Syncs {
		s := &b.Syncs[j]
		f := func(name string) string { return "syncs[" + strconv.Itoa(j) + "]." + name }
		if s.LSN < b.FirstLSN || s.LSN > b.LastLSN {
			return malformed(f("lsn"), "outside the batch range")
		}
		if j > 0 {
			p := &b.Syncs[j-1]
			if s.LSN < p.LSN || s.LSN == p.LSN && s.Account <= p.Account {
				return malformed(f("lsn"), "not ascending by lsn and account")
			}
		}
		if why := checkText(s.Account, terminals.MaxInstrumentIDLen); why != "" {
			return malformed(f("account"), why)
		}
		if terminals.LooksLikePAN(s.Account) {
			return &Error{Code: CodePAN, Field: f("account"), Reason: "looks like a card number; send a token"}
		}
		if why := checkTime(s.At); why != "" {
			return malformed(f("at"), why)
		}
		if s.At.After(b.Watermark) {
			return malformed(f("at"), "after the batch watermark")
		}
		i, found := slices.BinarySearchFunc(b.Rows, s.LSN, func(r Txn, lsn uint64) int { return cmp.Compare(r.LSN, lsn) })
		if found && b.Rows[i].SyncsWallet() && b.Rows[i].Account == s.Account {
			return malformed(f("lsn"), "repeats the sync its row gives")
		}
	}
	return nil
}

// Validate checks one row on its own (not its place in a batch).
func (r *Txn) Validate() error {
	return r.validate(-1)
}

func rowField(i int, name string) string {
	if i < 0 {
		return name
	}
	return "rows[" + strconv.Itoa(i) + "]." + name
}

// validate checks row i of a batch (i < 0: a row on its own).
func (r *Txn) validate(i int) error {
	f := func(name string) string { return rowField(i, name) }
	if why := checkSource(r.Source); why != "" {
		return malformed(f("source"), why)
	}
	if r.LSN == 0 || r.LSN > LSNMax {
		return malformed(f("lsn"), "out of range")
	}
	if why := checkTime(r.At); why != "" {
		return malformed(f("at"), why)
	}
	if why := checkText(r.Merchant, MerchantLenMax); why != "" {
		return malformed(f("merchant"), why)
	}
	if why := checkText(r.Terminal, terminals.MaxTerminalIDLen); why != "" {
		return malformed(f("terminal"), why)
	}
	switch r.Scene {
	case SceneBus, SceneStall, SceneKiosk:
	default:
		return malformed(f("scene"), "unknown scene")
	}
	switch r.InstKind {
	case terminals.InstCounty, terminals.InstBank, terminals.InstECNY:
	default:
		return malformed(f("inst"), "unknown instrument kind")
	}
	if why := checkText(r.Account, terminals.MaxInstrumentIDLen); why != "" {
		return malformed(f("account"), why)
	}
	if terminals.LooksLikePAN(r.Account) {
		return &Error{Code: CodePAN, Field: f("account"), Reason: "looks like a card number; send a token"}
	}
	if r.Auth != "" {
		if why := checkText(r.Auth, AuthLenMax); why != "" {
			return malformed(f("auth"), why)
		}
		if terminals.LooksLikePAN(r.Auth) {
			return &Error{Code: CodePAN, Field: f("auth"), Reason: "looks like a card number"}
		}
	}
	if r.Txn == 0 || r.Txn > LSNMax {
		return malformed(f("txn"), "out of range")
	}
	if r.Orig > LSNMax {
		return malformed(f("orig"), "out of range")
	}
	if r.Unsynced && (r.Op != OpPurchase || r.InstKind != terminals.InstECNY) {
		return malformed(f("unsynced"), "only on a purchase row of an ecny wallet")
	}
	if r.Amount == 0 || r.Amount > terminals.MaxAmount || r.Amount < -terminals.MaxAmount {
		return malformed(f("amount"), "zero or beyond the protocol maximum")
	}
	switch r.Op {
	case OpPurchase, OpCapture, OpDebtRecovery:
		if r.Amount < 0 {
			return malformed(f("amount"), "must be positive for "+r.Op)
		}
	case OpReversal, OpRefund:
		if r.Amount > 0 {
			return malformed(f("amount"), "must be negative for "+r.Op)
		}
		if r.Orig == 0 {
			return malformed(f("orig"), "required for "+r.Op)
		}
	default:
		return malformed(f("op"), "unknown operation")
	}
	return r.validateLegs(f)
}

// validateLegs checks the per-payment divisions of a row whose own fields
// are valid: known kinds, one of each, payee ids like merchant ids, a
// market fee signed like the row and no larger than it (payments and
// refunds only), insurance legs positive and on payment rows only.
func (r *Txn) validateLegs(f func(string) string) error {
	if len(r.Legs) == 0 {
		return nil
	}
	if len(r.Legs) > LegsMax {
		return malformed(f("legs"), "more than "+strconv.Itoa(LegsMax)+" legs")
	}
	var seen [3]bool
	for j := range r.Legs {
		l := &r.Legs[j]
		lf := func(name string) string { return f("legs[" + strconv.Itoa(j) + "]." + name) }
		var k int
		switch l.Kind {
		case LegMarketFee:
			k = 0
			switch {
			case r.Op == OpPurchase && l.Amount > 0 && l.Amount <= r.Amount:
			case r.Op == OpRefund && l.Amount < 0 && l.Amount >= r.Amount:
			case r.Op != OpPurchase && r.Op != OpRefund:
				return malformed(lf("kind"), "a market fee leg is only on a purchase or a refund")
			default:
				return malformed(lf("amount"), "a market fee leg is signed like the row and at most its amount")
			}
		case LegInsPooled, LegInsPersonal:
			k = 1
			if l.Kind == LegInsPersonal {
				k = 2
			}
			if r.Op != OpPurchase && r.Op != OpCapture {
				return malformed(lf("kind"), "an insurance leg is only on a payment")
			}
			if l.Amount <= 0 || l.Amount > terminals.MaxAmount {
				return malformed(lf("amount"), "an insurance leg is positive and within the protocol maximum")
			}
		default:
			return malformed(lf("kind"), "unknown leg kind")
		}
		if seen[k] {
			return malformed(lf("kind"), "a kind appears twice")
		}
		seen[k] = true
		if why := checkText(l.Payee, MerchantLenMax); why != "" {
			return malformed(lf("payee"), why)
		}
		if terminals.LooksLikePAN(l.Payee) {
			return &Error{Code: CodePAN, Field: lf("payee"), Reason: "looks like a card number"}
		}
	}
	return nil
}

// The check helpers return "" or the reason; the caller names the field,
// so that a valid row costs no string building.

func checkSource(s string) string {
	if s == "" || len(s) > SourceLenMax {
		return "must be 1.." + strconv.Itoa(SourceLenMax) + " bytes"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "only [A-Za-z0-9._-] allowed"
		}
	}
	return ""
}

// checkText allows printable ASCII only: ids end up in CSV files and HTML
// pages, and a control byte or invalid UTF-8 there is a bug, not data.
func checkText(s string, max int) string {
	if s == "" || len(s) > max {
		return "must be 1.." + strconv.Itoa(max) + " bytes"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "only printable ASCII allowed"
		}
	}
	return ""
}

// Both stores keep microseconds (PostgreSQL timestamptz precision), so a
// finer time would not survive a round trip; it is refused instead of being
// silently truncated. The year range keeps Unix microseconds in an int64.
func checkTime(t time.Time) string {
	if t.IsZero() {
		return "missing"
	}
	if t.Nanosecond()%1000 != 0 {
		return "finer than a microsecond"
	}
	if y := t.Year(); y < 2000 || y > 9999 {
		return "year out of range"
	}
	return ""
}
