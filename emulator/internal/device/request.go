package device

import (
	"context"
	"errors"
	"fmt"
	"time"

	"scenepay/terminals"
)

// Outcome is what one request came to, as the terminal saw it. The fleet's
// ledger and the end-of-run audit are built on these.
type Outcome struct {
	TID     string
	Type    string
	Txn     uint64
	Orig    uint64 // reversals: the txn they void
	Inst    terminals.Instrument
	Amt     int64
	Route   string // taps: the route and stop the reader reported
	Stop    string
	Fault   FaultKind // "" for a genuine request
	Code    terminals.Code
	Reply   *terminals.Reply // nil when no genuine reply came
	Raw     []byte           // the sealed reply payload as received
	Latency time.Duration    // first publish to reply (or to giving up)
	Retries int              // resends of identical bytes
	// Reversed: the request got no genuine reply and the reversal sent for it
	// was acknowledged; ReversalTxn and ReversalCode describe that reversal.
	Reversed     bool
	ReversalTxn  uint64
	ReversalCode terminals.Code
	// Unresolved: a purchase got no genuine reply and its reversal was not
	// acknowledged; the gateway may or may not have applied it.
	Unresolved bool
	Err        error
	// Req is the request as sealed (scene fields: code, item, ins, taps),
	// zero when it could not be prepared.
	Req terminals.Request
}

// Observer receives every outcome, synchronously on the caller's goroutine;
// keep it quick.
type Observer interface{ Observe(Outcome) }

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Outcome)

// Observe implements Observer.
func (f ObserverFunc) Observe(o Outcome) { f(o) }

// Sealed is a request with its txn id reserved and its frame sealed. Keep it
// to resend the identical bytes (a retry or a deliberate duplicate).
type Sealed struct {
	Req     terminals.Request
	Payload []byte
}

// Purchase builds a purchase of amt fen on inst.
func Purchase(inst terminals.Instrument, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypePurchase, Inst: inst, Amt: amt}
}

// Balance builds a balance inquiry for inst.
func Balance(inst terminals.Instrument) terminals.Request {
	return terminals.Request{Type: terminals.TypeBalance, Inst: inst}
}

// TapIn builds a boarding tap of inst on route at stop (stop "" on a flat
// route). The amount is the gateway's to decide.
func TapIn(inst terminals.Instrument, route, stop string) terminals.Request {
	return terminals.Request{Type: terminals.TypeTapIn, Inst: inst, Route: route, Stop: stop}
}

// TapOut builds an alighting tap of inst on route at stop.
func TapOut(inst terminals.Instrument, route, stop string) terminals.Request {
	return terminals.Request{Type: terminals.TypeTapOut, Inst: inst, Route: route, Stop: stop}
}

// Heartbeat builds a heartbeat (no txn id).
func Heartbeat() terminals.Request { return terminals.Request{Type: terminals.TypeHeartbeat} }

// HeartbeatReport builds a heartbeat that reports applied configuration
// versions (cfg, may be empty) and, when obk.Set, the offline backlog.
func HeartbeatReport(cfg terminals.CfgVersions, obk terminals.Backlog) terminals.Request {
	return terminals.Request{Type: terminals.TypeHeartbeat, Cfg: cfg, OBK: obk}
}

// QRPay builds a market stall's payment of amt fen by the scanned consumer
// code; the account is the code's (no "inst": a stall cannot read it).
func QRPay(code string, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypeQRPay, PayCode: code, Amt: amt}
}

// Refund builds the refund of amt fen of the qr_pay orig, drawn on inst
// (the paying account, from the payment's receipt).
func Refund(inst terminals.Instrument, orig uint64, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypeRefund, Inst: inst, Orig: orig, Amt: amt}
}

// DepositOpen builds a hospital deposit's opening hold of amt fen.
func DepositOpen(inst terminals.Instrument, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypeHold, Inst: inst, Amt: amt}
}

// DepositTopUp builds a top-up hold of amt fen on the deposit opened by txn open.
func DepositTopUp(inst terminals.Instrument, open uint64, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypeHold, Inst: inst, Orig: open, Amt: amt}
}

// DepositCapture builds a service order of amt fen against the deposit open.
func DepositCapture(inst terminals.Instrument, open uint64, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypeCapture, Inst: inst, Orig: open, Amt: amt}
}

// DepositRelease builds the discharge of the deposit open, capturing the
// last charges amt (0 = none) and releasing the rest.
func DepositRelease(inst terminals.Instrument, open uint64, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypeRelease, Inst: inst, Orig: open, Amt: amt}
}

// InsuredPurchase builds a hospital bill of item with the insurance
// platform's split; only ins.Self is charged to inst.
func InsuredPurchase(inst terminals.Instrument, item string, ins terminals.Insurance) terminals.Request {
	ins.Set = true
	return terminals.Request{Type: terminals.TypePurchase, Inst: inst, Amt: ins.Pool + ins.Personal + ins.Self, Item: item, Ins: ins}
}

// OfflineUpload builds the upload of one card's offline taps (1 to
// terminals.MaxUploadTaps).
func OfflineUpload(inst terminals.Instrument, taps []terminals.UploadTap) (terminals.Request, error) {
	req := terminals.Request{Type: terminals.TypeOfflineUpload, Inst: inst}
	for _, t := range taps {
		if err := req.Taps.Add(t); err != nil {
			return terminals.Request{}, err
		}
	}
	return req, nil
}

// ECNYOffline builds the upload of a double-offline e-CNY payment of amt fen
// from wallet inst.
func ECNYOffline(inst terminals.Instrument, amt int64) terminals.Request {
	return terminals.Request{Type: terminals.TypeECNYOffline, Inst: inst, Amt: amt}
}

// Reversible reports whether an unanswered req is voided by a reversal: a
// plain purchase only. Taps, market, hospital and upload messages are not
// reversible in protocol v1 (a reversal naming them is ORIGINAL_NOT_FOUND,
// which would wrongly read as "no effect"); their sender repeats the same
// request (same txn id and content) until it is answered. An insured
// purchase is not reversed either: its ledger amount (the self-pay) is not
// its wire amount, so a reversal could not carry the original's amount.
func Reversible(req terminals.Request) bool {
	return req.Type == terminals.TypePurchase && !req.Ins.Set
}

// Reversal builds the reversal of orig: same instrument and amount, naming
// orig's txn id.
func Reversal(orig terminals.Request) terminals.Request {
	return terminals.Request{Type: terminals.TypeReversal, Orig: orig.Txn, Inst: orig.Inst, Amt: orig.Amt}
}

// Prepare stamps req with this terminal's id, protocol version and time,
// reserves a txn id (durably, before anything is sent) unless req is a
// heartbeat or already carries one, validates it and seals it.
func (d *Device) Prepare(req terminals.Request) (Sealed, error) {
	req.V = terminals.Version
	req.TID = d.cfg.TID
	req.TS = d.cfg.Now().UnixMilli()
	if req.Type != terminals.TypeHeartbeat && req.Txn == 0 {
		txn, err := d.cfg.Store.Next()
		if err != nil {
			return Sealed{}, fmt.Errorf("device %s: %w", d.cfg.TID, err)
		}
		req.Txn = txn
	}
	if err := req.Validate(); err != nil {
		return Sealed{}, fmt.Errorf("device %s: %w", d.cfg.TID, err)
	}
	return Sealed{Req: req, Payload: d.seal(req.AppendJSON(nil))}, nil
}

func (d *Device) seal(body []byte) []byte {
	d.sealMu.Lock()
	defer d.sealMu.Unlock()
	return d.sealer.Seal(nil, body)
}

// Resend sends s again under its own txn id with the same content and a
// fresh "ts" (protocol section 10: a terminal repeats an unanswered request
// until it gets the final reply; the gateway answers a repeat with the
// stored reply, "same content" being every field but ts). It is how the
// messages that are not reversible are settled after a lost reply.
func (d *Device) Resend(ctx context.Context, s Sealed) (Sealed, terminals.Reply, []byte, error) {
	if s.Req.Txn == 0 {
		return s, terminals.Reply{}, nil, fmt.Errorf("device %s: %w: resend without a txn id", d.cfg.TID, ErrConfig)
	}
	n, err := d.Prepare(s.Req)
	if err != nil {
		return s, terminals.Reply{}, nil, err
	}
	rep, raw, err := d.Send(ctx, n)
	return n, rep, raw, err
}

// Do prepares and sends req; see Send.
func (d *Device) Do(ctx context.Context, req terminals.Request) (terminals.Reply, []byte, error) {
	s, err := d.Prepare(req)
	if err != nil {
		d.observe(Outcome{TID: d.cfg.TID, Type: req.Type, Inst: req.Inst, Amt: req.Amt, Err: err, Req: req})
		return terminals.Reply{}, nil, err
	}
	return d.Send(ctx, s)
}

// Send publishes a sealed request and waits for the genuine reply with its
// txn id. On a timeout, or a retry-later code (BUSY, SYSTEM_ERROR), it
// resends the identical bytes up to Config.Retries times. Only a plain
// purchase still unanswered then is reversed (Reversible); other money
// messages end ErrTimeout and their caller repeats them (Resend); taps are not (protocol 8: a reversal
// naming a tap is declined ORIGINAL_NOT_FOUND), so an unanswered tap ends
// ErrTimeout and its caller decides (a bus reader taps the rider out,
// which closes whatever journey the gateway holds). A purchase is reversed: a reversal under a new txn id naming it,
// repeated until acknowledged or ctx ends. A reversal sent through Send is
// likewise repeated until acknowledged. The outcome goes to the Observer.
//
// raw is the reply payload exactly as received, so that a caller can check
// that a duplicate got a byte-identical reply.
func (d *Device) Send(ctx context.Context, s Sealed) (terminals.Reply, []byte, error) {
	out := Outcome{TID: d.cfg.TID, Type: s.Req.Type, Txn: s.Req.Txn, Orig: s.Req.Orig, Inst: s.Req.Inst, Amt: s.Req.Amt,
		Route: s.Req.Route, Stop: s.Req.Stop, Req: s.Req}
	var keys []uint64
	if s.Req.Type == terminals.TypeHeartbeat {
		d.zeroMu.Lock()
		defer d.zeroMu.Unlock()
		keys = []uint64{0}
	} else {
		keys = []uint64{s.Req.Txn}
	}
	w, err := d.register(keys...)
	if err != nil {
		out.Err = err
		d.observe(out)
		return terminals.Reply{}, nil, err
	}
	start := time.Now()
	in, retries, err := d.exchange(ctx, w, s.Payload, s.Req.Type == terminals.TypeReversal)
	d.unregister(w)
	out.Latency = time.Since(start)
	out.Retries = retries
	if err == nil {
		out.Code, out.Reply, out.Raw = in.reply.Code, &in.reply, in.raw
		d.observe(out)
		return in.reply, in.raw, nil
	}
	if w.badMAC.Load() {
		err = errors.Join(ErrBadReplyMAC, err)
	}
	err = fmt.Errorf("device %s txn %d: %w", d.cfg.TID, s.Req.Txn, err)
	if Reversible(s.Req) {
		rtxn, rin, rerr := d.reverse(ctx, s.Req)
		out.ReversalTxn = rtxn
		if rerr == nil {
			out.Reversed = true
			out.ReversalCode = rin.reply.Code
			d.c.reversals.Add(1)
		} else {
			out.Unresolved = true
			d.c.unresolved.Add(1)
			err = errors.Join(err, ErrUnresolved, rerr)
		}
		out.Latency = time.Since(start)
	}
	out.Err = err
	d.observe(out)
	return terminals.Reply{}, nil, err
}

// exchange sends payload and waits, resending identical bytes on timeout or
// on a retry-later fault code, up to Config.Retries times (or without limit
// when untilAck, for reversals) while ctx lasts.
func (d *Device) exchange(ctx context.Context, w *waiter, payload []byte, untilAck bool) (inbound, int, error) {
	retries := 0
	for busy := 0; ; {
		in, err := d.roundTrip(ctx, w, payload, d.cfg.ReplyTimeout)
		more := untilAck || retries < d.cfg.Retries
		switch {
		case err == nil:
			info, _ := in.reply.Code.Info()
			if !info.Retry || !more {
				return in, retries, nil
			}
			// BUSY or SYSTEM_ERROR: no effect was made; back off, then
			// resend the same bytes under the same txn id.
			if !sleepCtx(ctx.Done(), fullJitter(d.cfg.BackoffBase, d.cfg.ReplyTimeout, busy)) {
				return in, retries, nil
			}
			busy++
		case errors.Is(err, ErrTimeout) && more && ctx.Err() == nil:
		default:
			return inbound{}, retries, err
		}
		retries++
		d.c.retries.Add(1)
	}
}

// reverse voids an unanswered purchase: a reversal under its own new txn id
// (reserved durably like any other), naming orig, with orig's instrument and
// amount, repeated with identical bytes until acknowledged or ctx ends. Any
// genuine reply that is not a retry-later fault is an acknowledgement: 00
// (voided, or remembered so that the late original is refused) or a decline
// such as ORIGINAL_NOT_FOUND (the original had no effect to void).
func (d *Device) reverse(ctx context.Context, orig terminals.Request) (uint64, inbound, error) {
	rv, err := d.Prepare(Reversal(orig))
	if err != nil {
		return 0, inbound{}, err
	}
	w, err := d.register(rv.Req.Txn)
	if err != nil {
		return rv.Req.Txn, inbound{}, err
	}
	defer d.unregister(w)
	in, _, err := d.exchange(ctx, w, rv.Payload, true)
	if err == nil && in.reply.Code.Class() == terminals.ClassFault {
		err = fmt.Errorf("reversal txn %d: gateway answered %s %s", rv.Req.Txn, in.reply.Code, in.reply.Code.Name())
	}
	if err != nil {
		return rv.Req.Txn, inbound{}, fmt.Errorf("reversal txn %d: %w", rv.Req.Txn, err)
	}
	return rv.Req.Txn, in, nil
}

func (d *Device) observe(o Outcome) {
	if d.cfg.Observer != nil {
		d.cfg.Observer.Observe(o)
	}
}
