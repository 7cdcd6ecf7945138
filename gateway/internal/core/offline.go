package core

// Offline transit uploads in the shard step. A bus reader that was offline
// approved taps against its deny list within floor limits; it uploads them
// later, and the gateway gives each card's part of the upload to that
// card's shard as one OpTapUpload. The fare rules (transit.ProcessUpload)
// apply the taps in order on a copy of the card with the account's
// available balance; what the balance cannot cover becomes debt on the
// card instead of a decline (the ride already happened). The record
// carries the summed ledger amounts, the per-tap outcomes and the card
// after the upload including its upload dedupe ring, so replay rebuilds
// the card without consulting fares, and a tap uploaded again (by reader
// id and reader seq) is recognised across restarts.
//
// Debt is paid first by the next top-up (OpTopUp): the part that pays
// debt goes to the bus company's receivable, not to the balance, and the
// top-up record carries it in Orig (0 when no debt was paid), so that
// settlement sees it and replay checks it.

import (
	"fmt"
	"time"

	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// UploadTapsMax bounds one card's part of an upload (taps per OpTapUpload):
// the per-tap outcomes must fit the record's Ref field and the card's
// dedupe ring (transit.SeenMax) must still hold the whole part.
const UploadTapsMax = transit.SeenMax

// uploadCardMax bounds the card an upload record carries: the state and
// the dedupe ring (transit.Card.AppendBinary).
const uploadCardMax = transit.StateBytesMax + 2 + 16*transit.SeenMax

// cardLenMax is the longest card field a record of op may carry.
func cardLenMax(op Op) int {
	if op == OpTapUpload {
		return uploadCardMax
	}
	return transit.StateBytesMax
}

// Upload outcomes, one byte per tap in the record's Ref (in the order the
// taps were applied: by time, then reader, then seq).
const (
	UploadCharged   = 'c' // approved: charged, held or captured in full
	UploadDebt      = 'd' // approved: part or all of it became debt on the card
	UploadNothing   = 'n' // approved without a ledger effect (cancelled, stray tap-out)
	UploadDuplicate = 'u' // already applied by an earlier upload
	UploadTooOld    = 'o' // older than the upload age limit: not charged
	UploadRefused   = 'x' // malformed (unknown route or stop, bad kind): not charged
)

// debtPay is the part of a top-up of amount that pays the card's debt.
func debtPay(a *account, amount int64) int64 {
	if a == nil || a.card == nil || a.card.Debt <= 0 || amount <= 0 {
		return 0
	}
	return min(amount, a.card.Debt)
}

// decideUpload decides one card's part of an offline upload. Refusals (not
// journaled): no taps or more than UploadTapsMax, a tap without reader,
// with a route or stop over transit.IDLenMax or an unknown kind. An
// unknown account is a journaled decline (the gateway books the fare to
// the route's first-ride budget). A blocked account is still charged: the
// rides happened. The e-CNY class limits are not applied to uploaded taps
// (the reader's floor limits bounded them offline); the money still counts
// in the day and year counters.
func (s *Shard) decideUpload(in *Input, r *Record) (terminals.Code, bool) {
	if len(in.Taps) == 0 || len(in.Taps) > UploadTapsMax {
		return terminals.CodeMalformed, false
	}
	for i := range in.Taps {
		t := &in.Taps[i]
		if t.Reader == "" || len(t.Reader) > MaxFieldLen || t.Route == "" || len(t.Route) > transit.IDLenMax ||
			len(t.Stop) > transit.IDLenMax || (t.Kind != transit.TapIn && t.Kind != transit.TapOut) {
			return terminals.CodeMalformed, false
		}
		t.Merchant = in.Merchant // a journey it opens is owed to the uploader's merchant
	}
	_, a := s.lookup(in.Account)
	if a == nil {
		return terminals.CodeUnknownInstrument, true
	}
	if s.cfg.Transit == nil {
		return terminals.CodeUnsupported, false
	}
	c := &s.card
	if a.card != nil {
		*c = *a.card
	} else {
		*c = transit.Card{}
	}
	s.upDec = s.cfg.Transit.ProcessUpload(c, in.Taps, a.available(), time.Unix(0, r.Time), s.upDec[:0])
	var t TapAmounts
	var outcome [UploadTapsMax]byte
	debt := false
	for i := range s.upDec {
		d := &s.upDec[i]
		switch {
		case d.Code == terminals.CodeReplay:
			outcome[i] = UploadTooOld
			continue
		case d.Code != terminals.CodeApproved:
			outcome[i] = UploadRefused
			continue
		case d.Reason == transit.ReasonDuplicate:
			outcome[i] = UploadDuplicate
			continue
		case d.Debt > 0:
			outcome[i], debt = UploadDebt, true
		case d.Charge+d.Hold+d.Capture+d.PrevCapture > 0:
			outcome[i] = UploadCharged
		default:
			outcome[i] = UploadNothing
		}
		t.Fare += d.Fare
		t.PrevCapture += d.PrevCapture
		t.Capture += d.Capture
		t.Release += d.Release
		t.Charge += d.Charge
		t.Hold += d.Hold
		t.Flags |= uint16(d.Flags)
	}
	// Any new debt (re)lists the card, not only the first: the list's Add
	// is idempotent and an operator may have taken the card off meanwhile.
	t.Flags &^= uint16(transit.FlagDeny)
	if debt && c.Debt > 0 {
		t.Flags |= uint16(transit.FlagDeny)
	}
	r.Tap = t
	r.Ref = string(outcome[:len(s.upDec)])
	r.Amount = t.Charge + t.Hold + t.Capture
	s.cardBuf = c.AppendBinary(s.cardBuf[:0])
	r.Card = string(s.cardBuf)
	return terminals.CodeApproved, true
}

// uploadAmountMax bounds each summed amount of an upload record.
const uploadAmountMax = transit.FareMax * UploadTapsMax

// effectUpload applies an approved upload record: the summed amounts move
// money, the card takes the recorded state (with its dedupe ring). Like
// effectTap it checks that the amounts fit the card's journey before and
// after, here in sum: what was held, less what the upload closed, plus
// what it held, is what the card's journey holds after.
func (s *Shard) effectUpload(r *Record, a *account) error {
	t := &r.Tap
	for _, v := range [...]int64{t.Fare, t.PrevCapture, t.Capture, t.Release, t.Charge, t.Hold} {
		if v < 0 || v > uploadAmountMax {
			return fmt.Errorf("upload amount %d out of 0..%d", v, uploadAmountMax)
		}
	}
	if r.Amount != t.Charge+t.Hold+t.Capture {
		return fmt.Errorf("upload amount %d, parts sum to %d", r.Amount, t.Charge+t.Hold+t.Capture)
	}
	if len(r.Ref) == 0 || len(r.Ref) > UploadTapsMax {
		return fmt.Errorf("upload with %d outcomes", len(r.Ref))
	}
	c := &s.card
	if err := transit.DecodeCard([]byte(r.Card), c); err != nil {
		return fmt.Errorf("upload card state: %v", err)
	}
	oldHeld := journeyHeld(a.card)
	closed := t.PrevCapture + t.Capture + t.Release
	if journeyHeld(c) != oldHeld-closed+t.Hold {
		return fmt.Errorf("card journey holds %d fen, the amounts give %d", journeyHeld(c), oldHeld-closed+t.Hold)
	}
	if c.Debt < 0 {
		return fmt.Errorf("card debt %d", c.Debt)
	}
	return s.applyCardMoney(r, a, c, closed, "upload")
}

// offlineOutput fills the deny-list facts of an applied record into out:
// the flags of an upload, and for a top-up the debt it paid (FlagUndeny
// when that cleared the card's debt).
func offlineOutput(r *Record, a *account, out *Output) {
	if r.Code != terminals.CodeApproved {
		return
	}
	switch r.Op {
	case OpTapUpload:
		out.Flags, out.Outcomes = r.Tap.Flags, r.Ref
	case OpTopUp:
		if r.Orig > 0 {
			out.DebtPaid = int64(r.Orig)
			if a != nil && a.card != nil && a.card.Debt == 0 {
				out.Flags = uint16(transit.FlagUndeny)
			}
		}
	}
}
