package handoff

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"scenepay/gateway/internal/core"
	settle "scenepay/settlement/handoff"
	"scenepay/terminals"
)

// Row mapping from an approved core record (declines, holds, releases,
// inquiries and operator operations move no merchant money and give no row;
// an op not listed stops the handoff instead of being dropped):
//
//	purchase, QR pay  +Amount                      op purchase
//	refund            -Amount, Orig = the payment  op refund
//	reversal          -Amount, Orig = original     op reversal
//	capture           +Amount, Orig = the hold     op capture
//	tap-in / tap-out  +(Charge + PrevCapture + Capture); op purchase when the
//	                  tap only charged a flat fare, else capture (money taken
//	                  from a journey hold); no row when the sum is 0 (a tap-in
//	                  that only placed a hold, a free transfer); a journey the
//	                  sweep closed (journey_expire) is a capture of the maximum
//	                  fare for the boarding reader and its merchant
//
// The terminal's scene is its kind in the registry at handoff time. The
// mapping is deterministic for a given record and registry, so a batch
// re-cut after a crash carries identical rows.
//
// Market records (version 3) and the operator's leg. A QR payment becomes
// one purchase row of the whole Amount for the stall merchant (the
// record's Merchant, the terminal's), a refund one refund row of -Amount
// with Orig; the row's Amount is what the customer paid or got back, so
// the per-merchant sum of rows still equals the ledger's postings
// (DESIGN.md promise 4). The core also splits each payment into a stall
// leg and the market operator's leg (Record.Market.Stall, .Operator,
// .OpMerch; a refund takes both back in proportion). That division does
// not reach settlement per payment: settle.Txn has no field for it, and
// rows are keyed by (source, LSN), so a second row for the operator under
// the same LSN is impossible. Settlement's clearing takes the market fee
// as a division of the day's settlement instead (store.DivisionMarketFee:
// the stall merchant's window net x its configured market_fee_rate,
// rounded half-even once per window, paid to its configured operator).
// With the same rate in both places the two agree up to rounding: the
// gateway rounds each payment, clearing rounds the window, so they may
// differ by up to half a fen per payment. Carrying the per-payment leg
// would need in settlement/handoff a Txn field (e.g. Division int64 and
// DivisionPayee string, signed like Amount, in the codec and the store's
// rows), and in clearing a sum of those legs replacing the rate-based
// market fee for stall merchants. Until then the handoff checks the legs
// it drops (they sum to Amount, neither is negative, an operator leg names
// its payee), so a record whose division is inconsistent stops the
// handoff instead of settling.

// errRow marks a record that cannot become a valid row: a software or data
// bug, which stops the handoff (with an alarm) rather than drop money.
type rowError struct {
	LSN    uint64
	Reason string
}

func (e *rowError) Error() string {
	return fmt.Sprintf("handoff: journal lsn %d: %s", e.LSN, e.Reason)
}

// rowOf returns the settlement row of record r at lsn, and whether there is one.
func rowOf(source string, lsn uint64, r *core.Record, scene func(tid string) (string, bool)) (settle.Txn, bool, error) {
	if r.Code != terminals.CodeApproved {
		return settle.Txn{}, false, nil
	}
	var op string
	var amt int64
	var orig uint64
	switch r.Op {
	case core.OpPurchase, core.OpECNYOffline:
		// An offline e-CNY payment (r.Unsynced) settles as a purchase; the
		// payee's value is not spendable until the wallet syncs.
		op, amt = settle.OpPurchase, r.Amount
	case core.OpQRPay:
		if why := marketLegs(r); why != "" {
			return settle.Txn{}, false, &rowError{LSN: lsn, Reason: why}
		}
		op, amt = settle.OpPurchase, r.Amount
	case core.OpRefund:
		if why := marketLegs(r); why != "" {
			return settle.Txn{}, false, &rowError{LSN: lsn, Reason: why}
		}
		op, amt, orig = settle.OpRefund, -r.Amount, r.Orig
	case core.OpReversal:
		op, amt, orig = settle.OpReversal, -r.Amount, r.Orig
	case core.OpCapture:
		op, amt, orig = settle.OpCapture, r.Amount, r.Orig
	case core.OpTapIn, core.OpTapOut, core.OpTapUpload, core.OpJourneyExpire:
		// An offline upload's record carries the sums over one card's
		// taps in the same fields (debt is not money received).
		t := &r.Tap
		amt = t.Charge + t.PrevCapture + t.Capture // each <= transit.FareMax: no overflow
		if t.PrevCapture == 0 && t.Capture == 0 {
			op = settle.OpPurchase
		} else {
			op = settle.OpCapture
		}
	case core.OpOpenAccount, core.OpTopUp, core.OpBlock, core.OpHold, core.OpRelease, core.OpSetProfile:
		return settle.Txn{}, false, nil
	default:
		// A new op that moves money must be mapped here, never dropped.
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "no settlement mapping for op " + r.Op.String()}
	}
	if amt == 0 {
		return settle.Txn{}, false, nil
	}
	kind, id, ok := strings.Cut(r.Account, ":")
	if !ok {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "account key without a kind"}
	}
	sc, ok := scene(r.TID)
	if !ok {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "terminal " + r.TID + " is not registered"}
	}
	row := settle.Txn{
		Source: source, LSN: lsn, At: time.Unix(0, r.Time).UTC().Truncate(time.Microsecond),
		Merchant: r.Merchant, Terminal: r.TID, Scene: sc, Op: op, InstKind: kind, Account: id,
		Amount: amt, Auth: authRef(r.Shard, r.Seq), Txn: r.Txn, Orig: orig,
	}
	if err := row.Validate(); err != nil {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: err.Error()}
	}
	return row, true, nil
}

// EntryRow is the row mapping the handoff applies to one journal entry
// (entryRow: at most one row per LSN), for readers that must agree with it
// to the fen, such as the gateway's journal totals for reconciliation.
// ok is false for an entry that makes no row; at is the time of the
// entry's first record (zero when it has none).
func EntryRow(source string, lsn uint64, payload []byte, entry func([]byte, func(string, []byte) error) error,
	scene func(string) (string, bool), rec *core.Record) (row settle.Txn, ok bool, at time.Time, err error) {
	row, rows, at, err := entryRow(source, lsn, payload, entry, scene, rec)
	return row, rows > 0, at, err
}

// marketLegs checks the stall/operator division of an approved market
// record; it returns why it is inconsistent, or "".
func marketLegs(r *core.Record) string {
	m := &r.Market
	switch {
	case m.Stall < 0 || m.Operator < 0:
		return "market record with a negative leg"
	case m.Stall > r.Amount || m.Operator != r.Amount-m.Stall:
		return "market legs " + strconv.FormatInt(m.Stall, 10) + " + " + strconv.FormatInt(m.Operator, 10) +
			" do not make the amount " + strconv.FormatInt(r.Amount, 10)
	case m.Operator > 0 && m.OpMerch == "":
		return "market operator leg without its merchant"
	}
	return ""
}

// authRef is the gateway's authorization reference of a record, the same
// "SS-NNNNNNNNNN" (shard, shard sequence) the terminal was told.
func authRef(shard uint32, seq uint64) string {
	b := make([]byte, 0, 20)
	if shard < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendUint(b, uint64(shard), 10)
	b = append(b, '-')
	s := strconv.FormatUint(seq, 10)
	for i := len(s); i < 10; i++ {
		b = append(b, '0')
	}
	return string(append(b, s...))
}
