package fleet

import (
	"scenepay/emulator/internal/device"
	"scenepay/emulator/internal/wallet"
	"scenepay/terminals"
)

// The ledger of the scene messages (market, hospital, offline uploads,
// e-CNY offline payments). What each approved message moves, as the
// terminal was told (docs/protocol.md sections 14 to 17) and as the
// gateway's handoff turns it into settlement rows:
//
//	qr_pay           debit amt of the code's account        row +amt
//	refund           credit amt to inst                     row -amt (orig = the qr_pay)
//	hold (open/top)  a hold: no balance change              no row
//	capture          debit amt (oldest hold first)          rows +amt (one per hold it spans)
//	release          debit amt (the last charges, may be 0) capture rows +amt; the release: no row
//	purchase + ins   debit ins.self (the reply's amt)       row +self
//	offline_upload   debit the reply's amt (charged taps;   row +amt
//	                 debt is not balance and not a row)
//	ecny_offline     debit amt                              row +amt
//
// Offline uploads are exact only when they place and close no holds
// inside one message (a distance journey uploaded whole has reply amt =
// hold + capture, while the balance moves by the capture alone). The
// fleet's readers go offline on flat routes only, which the default floor
// limits imply anyway (D1's 6 CNY hold is above the 5 CNY a reader may
// approve offline): there amt is the charge.
//
// These messages are not reversible: an unanswered one is repeated by its
// terminal under the same txn id until answered. Until then it is pending:
// it may or may not have been applied, which widens the audit's range by
// the most it can have moved (a refund on the credit side).

type pend struct {
	acct, tid     string
	debit, credit int64
}

// UploadCounts are the per-tap outcomes of approved offline uploads
// (reply "out"), by letter.
type UploadCounts struct {
	Messages int
	Taps     map[byte]int
}

func isScene(o device.Outcome) bool {
	switch o.Type {
	case terminals.TypeQRPay, terminals.TypeRefund, terminals.TypeHold, terminals.TypeCapture, terminals.TypeRelease,
		terminals.TypeOfflineUpload, terminals.TypeECNYOffline:
		return true
	case terminals.TypePurchase:
		return o.Req.Ins.Set
	}
	return false
}

// sceneAccount is the account o draws on: a qr_pay names it in its code.
func sceneAccount(o device.Outcome) string {
	if o.Type == terminals.TypeQRPay && o.Inst.Kind == "" {
		if in, ok := wallet.Decode(o.Req.PayCode); ok {
			return in.Account
		}
		return ""
	}
	return o.Inst.Key()
}

// sceneBound is the most an unanswered o can have moved: debit, credit.
func (l *Ledger) sceneBound(o device.Outcome) (int64, int64) {
	switch o.Type {
	case terminals.TypeRefund:
		return 0, o.Amt
	case terminals.TypeHold:
		return 0, 0
	case terminals.TypePurchase:
		return o.Req.Ins.Self, 0
	case terminals.TypeOfflineUpload:
		var n int64
		for i := 0; i < o.Req.Taps.Len(); i++ {
			t := o.Req.Taps.At(i)
			r, ok := l.routes[t.Route]
			if !ok {
				r.MaxFare = 600 // an unknown route: the town's largest fare
			}
			n += r.MaxFare
		}
		return n, 0
	}
	return o.Amt, 0
}

// observeScene records a scene message's outcome; l.mu is held.
func (l *Ledger) observeScene(o device.Outcome) {
	id := idKey{o.TID, o.Txn}
	acct := sceneAccount(o)
	if o.Reply == nil {
		if o.Txn == 0 || o.Fault != "" {
			return // never sealed, or a probe copy of a request already counted
		}
		d, c := l.sceneBound(o)
		if d != 0 || c != 0 {
			l.pending[id] = pend{acct: acct, tid: o.TID, debit: d, credit: c}
		}
		return
	}
	if c := o.Code.Class(); c == terminals.ClassApproved || c == terminals.ClassDecline {
		// A final answer under this id: the gateway's stored result (a
		// refusal such as CLOCK_SKEW or ID_CONFLICT says nothing about it).
		delete(l.pending, id)
	}
	if !o.Code.Approved() {
		return
	}
	if acct == "" {
		l.anomaly("%s txn %d: approved %s names no account", o.TID, o.Txn, o.Type)
		return
	}
	req := o.Req
	if req.Type == "" {
		req = terminals.Request{Type: o.Type, Amt: o.Amt, Inst: o.Inst, Orig: o.Orig}
	}
	req.TS, req.V, req.TID = 0, 0, ""
	k := txnKey{o.TID, o.Txn, req.ContentHash()}
	if _, dup := l.approved[k]; dup {
		return // the same approval told again (a repeat, a duplicate)
	}
	if first, used := l.byTxn[id]; used && first != k.hash {
		l.anomaly("%s txn %d: %s approved again with different content", o.TID, o.Txn, o.Type)
	} else {
		l.byTxn[id] = k.hash
	}
	if len(l.approved) >= LedgerApprovalsMax {
		l.anomaly("ledger full: %s %s txn %d not recorded", o.Type, o.TID, o.Txn)
		return
	}
	var amt int64
	switch o.Type {
	case terminals.TypeHold:
		// a hold moves no balance
	case terminals.TypeRefund:
		amt = o.Amt
		if !l.refund(acct, o.TID, o.Txn, amt) {
			return
		}
	case terminals.TypePurchase, terminals.TypeOfflineUpload:
		// The reply's amt is what was charged: the self-pay of an insured
		// bill, the charged taps of an upload.
		if o.Reply.Amt == nil {
			l.anomaly("%s txn %d: approved %s without amt", o.TID, o.Txn, o.Type)
			return
		}
		amt = *o.Reply.Amt
		if o.Type == terminals.TypeOfflineUpload {
			l.uploads.Messages++
			if l.uploads.Taps == nil {
				l.uploads.Taps = map[byte]int{}
			}
			for i := 0; i < len(o.Reply.Out); i++ {
				l.uploads.Taps[o.Reply.Out[i]]++
				if o.Reply.Out[i] == 'd' {
					// A tap the balance could not cover: at most its
					// route's largest fare became debt on the card.
					bound := int64(600) // an unknown route: the town's largest fare
					if i < o.Req.Taps.Len() {
						if r, ok := l.routes[o.Req.Taps.At(i).Route]; ok {
							bound = r.MaxFare
						}
					}
					l.debtors[acct], _ = add(l.debtors[acct], bound)
				}
			}
		}
		if amt > 0 {
			l.debit(acct, o.TID, o.Txn, amt)
		}
	default: // qr_pay, capture, release, ecny_offline: the request's amount
		amt = o.Amt
		if amt > 0 {
			l.debit(acct, o.TID, o.Txn, amt)
		}
	}
	l.approved[k] = approval{acct: acct, amt: amt}
}

// Uploads returns the offline-upload outcome counts.
func (l *Ledger) Uploads() UploadCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := UploadCounts{Messages: l.uploads.Messages, Taps: map[byte]int{}}
	for k, v := range l.uploads.Taps {
		c.Taps[k] = v
	}
	return c
}
