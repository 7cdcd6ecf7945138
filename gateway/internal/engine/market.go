package engine

// Market stall requests (qr_pay, refund) on the common request path. They
// are ledger requests like a purchase: idempotent by (terminal, txn id),
// journaled before the reply, one core Step each (core.OpQRPay,
// core.OpRefund), where the code's MAC, lifetime and single use, the PBoC
// QR class limit and the funds are decided together with the debit.
//
// What the engine adds is routing and keys. A qr_pay need not carry "inst"
// (a stall terminal cannot read the code; docs/protocol.md section 15), so
// the engine reads the account the code claims with market.CodeAccount,
// without verifying it, and queues the request to that account's shard;
// the shard verifies the MAC before anything moves, so a forged code gains
// nothing by where it is routed. The issuer keys are derived from the
// master key (market.IssuerKey), as the wallet backend derives them, so the
// gateway holds no second secret.

import (
	"errors"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/scene/market"
	"scenepay/terminals"
)

// DefaultPayCodeKeyIDs are the issuer key versions accepted when
// Config.PayCodeKeyIDs is empty.
var DefaultPayCodeKeyIDs = []uint8{1}

// payCodeKeyIDsMax bounds Config.PayCodeKeyIDs: a rotation needs the
// current and the next version, a few more are a misconfiguration.
const payCodeKeyIDsMax = 8

var errPayCodeKeyIDs = errors.New("engine: more than 8 payment code issuer key ids (Config.PayCodeKeyIDs)")

// withPayCodeKeys returns a copy of c whose PayCodeKeys are the issuer keys
// of ids derived from master, unless c already has keys (tests, or a
// deployment that provisions them otherwise). c is not modified: the
// caller's Config may be shared.
func withPayCodeKeys(c *core.Config, master []byte, ids []uint8) (*core.Config, error) {
	if len(c.PayCodeKeys) > 0 {
		return c, nil
	}
	if len(ids) == 0 {
		ids = DefaultPayCodeKeyIDs
	}
	if len(ids) > payCodeKeyIDsMax {
		return nil, errPayCodeKeyIDs
	}
	n := *c
	n.PayCodeKeys = make(map[uint8][]byte, len(ids))
	for _, id := range ids {
		n.PayCodeKeys[id] = market.IssuerKey(master, id)
	}
	return &n, nil
}

// routeKey is the account whose shard serves r: for a qr_pay the account
// its code claims to be bound to, otherwise the request's instrument.
func routeKey(r *terminals.Request) string {
	if r.Type == terminals.TypeQRPay {
		if acct, ok := market.CodeAccount(r.PayCode); ok {
			return acct
		}
	}
	return r.Inst.Key()
}

// accountOf is the account a ledger request names. A qr_pay without "inst"
// names the code's account ("" for a code that is not one: the core
// refuses it MALFORMED, without a ledger effect); with "inst" it names
// that, and the core declines PAYCODE_INVALID when the code is bound to
// another account.
func accountOf(r *terminals.Request) string {
	if r.Type == terminals.TypeQRPay && r.Inst == (terminals.Instrument{}) {
		acct, _ := market.CodeAccount(r.PayCode)
		return acct
	}
	return r.Inst.Key()
}

// isMarket reports whether typ is a market stall ledger request.
func isMarket(typ string) bool { return typ == terminals.TypeQRPay || typ == terminals.TypeRefund }
