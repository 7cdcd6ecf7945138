package device

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"scenepay/terminals"
)

// FaultKind names a deliberately wrong message.
type FaultKind string

// Fault kinds the emulator can produce.
const (
	// FaultTamper: one byte of the body changed after sealing (a man in the
	// middle raising an amount). The gateway must answer BAD_MAC.
	FaultTamper FaultKind = "tamper"
	// FaultDuplicate: the exact bytes of an earlier message sent again. The
	// gateway must answer with the byte-identical stored reply.
	FaultDuplicate FaultKind = "duplicate"
	// FaultChangedAmount: an earlier txn id reused with a new amount, validly
	// sealed. ID_CONFLICT, unless the first result was a decline.
	FaultChangedAmount FaultKind = "changed-amount"
	// FaultOldTxn: a validly sealed request under an old txn id. REPLAY when
	// the id is below the gateway's window, else duplicate/conflict rules.
	FaultOldTxn FaultKind = "old-txn"
	// FaultOversize: a validly sealed payload larger than MaxPayload. OVERSIZE.
	FaultOversize FaultKind = "oversize"
	// FaultMalformed: a body that is not a valid request, with a valid MAC.
	// MALFORMED.
	FaultMalformed FaultKind = "malformed"
)

// Fault is a deliberately wrong message ready to inject.
type Fault struct {
	Kind FaultKind
	// Req is the request the fault is built from (for a tamper, as it was
	// before the flip; for malformed, only TID and Txn are meaningful).
	Req terminals.Request
	// Payload is exactly what will be published.
	Payload []byte
}

// Tampered returns s with one body byte flipped after sealing: the last digit
// of the amount (or of the timestamp for a heartbeat), XOR 1, so the body is
// still well-formed JSON and only the MAC can tell.
func (d *Device) Tampered(s Sealed) Fault {
	p := append([]byte(nil), s.Payload...)
	body, _, err := terminals.Split(p)
	i := -1
	if err == nil {
		i = lastDigitAfter(body, `"amt":`)
		if i < 0 {
			i = lastDigitAfter(body, `"ts":`)
		}
	}
	if i < 0 {
		i = 0
	}
	p[i] ^= 0x01
	return Fault{Kind: FaultTamper, Req: s.Req, Payload: p}
}

// lastDigitAfter returns the index of the last digit of the number following
// key in body, -1 if none.
func lastDigitAfter(body []byte, key string) int {
	k := bytes.Index(body, []byte(key))
	if k < 0 {
		return -1
	}
	i := k + len(key)
	j := i
	for j < len(body) && body[j] >= '0' && body[j] <= '9' {
		j++
	}
	if j == i {
		return -1
	}
	return j - 1
}

// Duplicate resends the exact bytes of s.
func (d *Device) Duplicate(s Sealed) Fault {
	return Fault{Kind: FaultDuplicate, Req: s.Req, Payload: append([]byte(nil), s.Payload...)}
}

// ChangedAmount reuses s's txn id with amount amt, sealed validly.
func (d *Device) ChangedAmount(s Sealed, amt int64) (Fault, error) {
	req := s.Req
	req.Amt = amt
	n, err := d.Prepare(req)
	if err != nil {
		return Fault{}, err
	}
	return Fault{Kind: FaultChangedAmount, Req: n.Req, Payload: n.Payload}, nil
}

// OldTxn seals req under the explicit txn id txn (normally one long used)
// with a fresh timestamp; the counter is not touched.
func (d *Device) OldTxn(req terminals.Request, txn uint64) (Fault, error) {
	if txn == 0 {
		return Fault{}, fmt.Errorf("device %s: old txn id must be >= 1", d.cfg.TID)
	}
	req.Txn = txn
	n, err := d.Prepare(req)
	if err != nil {
		return Fault{}, err
	}
	return Fault{Kind: FaultOldTxn, Req: n.Req, Payload: n.Payload}, nil
}

// Oversize seals req (a fresh txn id is reserved) with a padding field that
// takes the payload past terminals.MaxPayload; the MAC is valid.
func (d *Device) Oversize(req terminals.Request) (Fault, error) {
	s, err := d.Prepare(req)
	if err != nil {
		return Fault{}, err
	}
	body := s.Req.AppendJSON(nil)
	body = body[:len(body)-1]
	body = append(body, `,"pad":"`...)
	body = append(body, bytes.Repeat([]byte{'x'}, terminals.MaxPayload)...)
	body = append(body, `"}`...)
	return Fault{Kind: FaultOversize, Req: s.Req, Payload: d.seal(body)}, nil
}

// Malformed builds a truncated purchase body under a fresh txn id, sealed
// with a valid MAC: it passes the MAC check and must fail decoding.
func (d *Device) Malformed() (Fault, error) {
	txn, err := d.cfg.Store.Next()
	if err != nil {
		return Fault{}, fmt.Errorf("device %s: %w", d.cfg.TID, err)
	}
	req := terminals.Request{V: terminals.Version, Type: terminals.TypePurchase, TID: d.cfg.TID, Txn: txn, TS: d.cfg.Now().UnixMilli()}
	body := []byte(`{"v":1,"type":"purchase","tid":` + strconv.Quote(d.cfg.TID) + `,"txn":` + strconv.FormatUint(txn, 10) + `,"amt":`)
	return Fault{Kind: FaultMalformed, Req: req, Payload: d.seal(body)}, nil
}

// Inject publishes a fault once and waits one reply timeout for the answer.
// The gateway answers a fault it could not read with txn 0, so the answer is
// accepted under the fault's txn id or 0. There is no retry and no reversal:
// a fault is a probe, and its outcome (Fault set) goes to the Observer.
func (d *Device) Inject(ctx context.Context, f Fault) (terminals.Reply, []byte, error) {
	out := Outcome{TID: d.cfg.TID, Type: f.Req.Type, Txn: f.Req.Txn, Orig: f.Req.Orig, Inst: f.Req.Inst, Amt: f.Req.Amt,
		Route: f.Req.Route, Stop: f.Req.Stop, Fault: f.Kind, Req: f.Req}
	d.zeroMu.Lock()
	defer d.zeroMu.Unlock()
	keys := []uint64{0}
	if f.Req.Txn != 0 {
		keys = append(keys, f.Req.Txn)
	}
	w, err := d.register(keys...)
	if err != nil {
		out.Err = err
		d.observe(out)
		return terminals.Reply{}, nil, err
	}
	defer d.unregister(w)
	start := time.Now()
	in, err := d.roundTrip(ctx, w, f.Payload, d.cfg.ReplyTimeout)
	out.Latency = time.Since(start)
	if err != nil {
		if w.badMAC.Load() {
			err = fmt.Errorf("%w; %w", ErrBadReplyMAC, err)
		}
		out.Err = fmt.Errorf("device %s %s txn %d: %w", d.cfg.TID, f.Kind, f.Req.Txn, err)
		d.observe(out)
		return terminals.Reply{}, nil, out.Err
	}
	out.Code, out.Reply, out.Raw = in.reply.Code, &in.reply, in.raw
	d.observe(out)
	return in.reply, in.raw, nil
}
