package opapi

// Stall code endpoints (PBoC notice 259): the operator registers a stall's
// merchant-presented codes (static or dynamic, personal or business), lists
// and revokes them; the customer's wallet backend reports a payment through
// one. The registry and the payments are the engine's (engine/stall.go:
// journaled before the answer, in snapshots); every registry change and
// every payment, accepted or refused, writes one audit line.

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// StallEngine is what the stall code endpoints need of the engine.
type StallEngine interface {
	RegisterStallCode(spec engine.StallCodeSpec) (engine.StallCodeView, error)
	RevokeStallCode(id string) (engine.StallCodeView, error)
	StallCode(id string) (engine.StallCodeView, bool)
	StallCodes(merchant, after string, limit int) ([]engine.StallCodeView, bool)
	PayStallCode(ctx context.Context, p engine.StallPay) (engine.StallPayResult, error)
	RefundStallPayment(ctx context.Context, r engine.StallRefund) (engine.StallPayResult, error)
}

// stallListDefault is the page size of a listing without "limit".
const stallListDefault = 100

// stallView is the operator view of a stall code, its state as of now.
func (s *Server) stallView(v engine.StallCodeView) opwire.StallCode {
	c := v.StallCode
	out := opwire.StallCode{Code: c.ID, TID: c.Stall, Merchant: v.Merchant, Dynamic: c.Dynamic, Business: c.Business,
		StallBusiness: v.StallBusiness, Amount: c.Amount, ShownAt: rfc3339ms(c.ShownAt), ExpiresAt: rfc3339ms(c.Expires),
		RevokedAt: rfc3339ms(c.Revoked), PaidBy: c.PaidBy, State: "live"}
	switch {
	case c.Revoked != 0:
		out.State = "revoked"
	case c.Dynamic && c.PaidBy != "":
		out.State = "paid"
	case c.Dynamic && s.now().UnixMilli() >= c.Expires:
		out.State = "expired"
	}
	return out
}

type stallCodeList struct {
	Merchant string             `json:"merchant"`
	Codes    []opwire.StallCode `json:"codes"`
	// Next is the "after" of the next page ("" on the last page).
	Next string `json:"next,omitempty"`
}

// stallCodes routes:
//
//	POST /v1/stall-codes                          register a code; answers it (201)
//	GET  /v1/stall-codes?merchant=M[&after=C][&limit=N]  a merchant's codes by id, paged
//	GET  /v1/stall-codes/{code}                   one code
//	POST /v1/stall-codes/{code}/revoke            revoke it (idempotent)
//	POST /v1/stall-codes/{code}/payments          a wallet's payment through it
//	POST /v1/stall-codes/{code}/payments/{id}/refunds  a refund of that payment
func (s *Server) stallCodes(ctx *fasthttp.RequestCtx, parts []string) {
	se, ok := s.e.(StallEngine)
	if !ok || len(parts) > 5 {
		s.fail(ctx, fasthttp.StatusNotFound, "", "no such endpoint")
		return
	}
	switch {
	case len(parts) == 1 && ctx.IsPost():
		s.registerStallCode(ctx, se)
	case len(parts) == 1 && ctx.IsGet():
		s.listStallCodes(ctx, se)
	case len(parts) == 2 && ctx.IsGet():
		v, ok := se.StallCode(parts[1])
		if !ok {
			s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownInstrument, "no such stall code")
			return
		}
		s.json(ctx, fasthttp.StatusOK, s.stallView(v))
	case len(parts) == 3 && parts[2] == "revoke" && ctx.IsPost():
		s.revokeStallCode(ctx, se, parts[1])
	case walletRoute(parts, ctx.IsPost()) && len(parts) == 3:
		s.payStallCode(ctx, se, parts[1])
	case walletRoute(parts, ctx.IsPost()) && len(parts) == 5:
		s.refundStallPayment(ctx, se, parts[1], parts[3])
	default:
		s.fail(ctx, fasthttp.StatusNotFound, "", "no such endpoint")
	}
}

// walletRoute reports whether parts (the path after /v1/) and the method
// name one of the two routes the wallet token may call (auth.go): a
// payment through a stall code, a refund of one. The router above serves
// them by this same test, so the scope and the routes cannot drift apart.
func walletRoute(parts []string, post bool) bool {
	return post && len(parts) >= 3 && parts[0] == "stall-codes" && parts[2] == "payments" &&
		(len(parts) == 3 || len(parts) == 5 && parts[4] == "refunds")
}

type stallRegisterBody struct {
	TID           string `json:"tid"`
	Merchant      string `json:"merchant"`
	Dynamic       bool   `json:"dynamic"`
	Business      bool   `json:"business"`
	StallBusiness bool   `json:"stall_business"`
	Amount        int64  `json:"amount"`
	TTLSeconds    int64  `json:"ttl_seconds"`
}

func (s *Server) registerStallCode(ctx *fasthttp.RequestCtx, se StallEngine) {
	var b stallRegisterBody
	if !s.decode(ctx, &b) {
		s.audit(ctx, "stall_code.register", "", string(terminals.CodeMalformed))
		return
	}
	refuse := func(status int, code terminals.Code, msg string) {
		s.audit(ctx, "stall_code.register", b.TID, string(code), "dynamic", b.Dynamic, "business", b.Business, "amount_fen", b.Amount)
		s.fail(ctx, status, code, msg)
	}
	maxTTL := int64(market.StallCodeTTLMax / time.Second)
	switch {
	case !terminals.ValidID(b.TID, terminals.MaxTerminalIDLen):
		refuse(fasthttp.StatusBadRequest, terminals.CodeMalformed, "tid must be 1..32 of [A-Za-z0-9._-]")
		return
	case b.Dynamic && (b.Amount <= 0 || b.Amount > terminals.MaxAmount):
		refuse(fasthttp.StatusBadRequest, terminals.CodeInvalidAmount, "a dynamic code needs amount 1..1000000000 fen")
		return
	case b.Dynamic && (b.TTLSeconds < 1 || b.TTLSeconds > maxTTL):
		refuse(fasthttp.StatusBadRequest, terminals.CodeMalformed, "a dynamic code needs ttl_seconds 1.."+strconv.FormatInt(maxTTL, 10))
		return
	case !b.Dynamic && (b.Amount != 0 || b.TTLSeconds != 0):
		refuse(fasthttp.StatusBadRequest, terminals.CodeMalformed, "a static code has no amount or ttl_seconds: the payer enters the amount")
		return
	}
	v, err := se.RegisterStallCode(engine.StallCodeSpec{TID: b.TID, Merchant: b.Merchant, Dynamic: b.Dynamic, Business: b.Business,
		StallBusiness: b.StallBusiness, Amount: b.Amount, TTL: time.Duration(b.TTLSeconds) * time.Second})
	var d *market.Decline
	switch {
	case errors.Is(err, engine.ErrStallTerminal):
		refuse(fasthttp.StatusNotFound, terminals.CodeUnknownTerminal, "tid must name a registered stall terminal (kind stall)")
		return
	case errors.Is(err, engine.ErrStallMerchant):
		refuse(fasthttp.StatusConflict, terminals.CodeIDConflict, "merchant differs from the stall terminal's merchant")
		return
	case errors.As(err, &d):
		status := d.Code.HTTPStatus()
		if d.Code == terminals.CodeBusy {
			status = fasthttp.StatusInsufficientStorage // the registry is full: not a retry-later
		}
		refuse(status, d.Code, d.Reason)
		return
	case err != nil:
		s.audit(ctx, "stall_code.register", b.TID, string(terminals.CodeSystemError))
		s.internal(ctx, err)
		return
	}
	s.audit(ctx, "stall_code.register", v.ID, "ok", "tid", v.Stall, "merchant", v.Merchant, "dynamic", v.Dynamic,
		"business", v.Business, "stall_business", v.StallBusiness, "amount_fen", v.Amount)
	s.json(ctx, fasthttp.StatusCreated, s.stallView(v))
}

func (s *Server) listStallCodes(ctx *fasthttp.RequestCtx, se StallEngine) {
	args := ctx.QueryArgs()
	merchant := string(args.Peek("merchant"))
	after := string(args.Peek("after"))
	if !terminals.ValidID(merchant, 64) || len(after) > market.MaxIDLen {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "merchant (1..64 of [A-Za-z0-9._-]) is required; after is a code id")
		return
	}
	limit := stallListDefault
	if l := args.Peek("limit"); l != nil {
		n, err := strconv.Atoi(string(l))
		if err != nil || n < 1 || n > engine.StallListMax {
			s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "limit must be 1.."+strconv.Itoa(engine.StallListMax))
			return
		}
		limit = n
	}
	list, more := se.StallCodes(merchant, after, limit)
	out := stallCodeList{Merchant: merchant, Codes: make([]opwire.StallCode, len(list))}
	for i, v := range list {
		out.Codes[i] = s.stallView(v)
	}
	if more && len(list) > 0 {
		out.Next = list[len(list)-1].ID
	}
	s.json(ctx, fasthttp.StatusOK, out)
}

func (s *Server) revokeStallCode(ctx *fasthttp.RequestCtx, se StallEngine, id string) {
	v, err := se.RevokeStallCode(id)
	switch {
	case errors.Is(err, market.ErrUnknownStallCode):
		s.audit(ctx, "stall_code.revoke", id, string(terminals.CodeUnknownInstrument))
		s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownInstrument, "no such stall code")
		return
	case err != nil:
		s.audit(ctx, "stall_code.revoke", id, string(terminals.CodeSystemError))
		s.internal(ctx, err)
		return
	}
	s.audit(ctx, "stall_code.revoke", id, "ok", "tid", v.Stall, "merchant", v.Merchant)
	s.json(ctx, fasthttp.StatusOK, s.stallView(v))
}

type stallPayBody struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
	ID      string `json:"id"`
	// Verified is the payer's verification class in the wallet (A, B or
	// C; default C); a static code is class D whatever it is.
	Verified string `json:"verified"`
	// Remote marks a remote, non-face-to-face collection.
	Remote bool `json:"remote"`
}

// payStallCode answers a wallet's payment: the stored answer with the
// status of its code (a repeat of the same id and content gets the same
// bytes, with X-Idempotent-Replay: true), or a coded refusal.
func (s *Server) payStallCode(ctx *fasthttp.RequestCtx, se StallEngine, code string) {
	var b stallPayBody
	if !s.decode(ctx, &b) {
		s.audit(ctx, "stall_code.pay", code, string(terminals.CodeMalformed))
		return
	}
	refuse := func(status int, c terminals.Code, msg string) {
		s.audit(ctx, "stall_code.pay", code, string(c), "id", b.ID, "amount_fen", b.Amount)
		s.fail(ctx, status, c, msg)
	}
	class := market.ClassC
	if b.Verified != "" {
		var ok bool
		if class, ok = market.ParseClass(b.Verified); !ok || class == market.ClassD {
			refuse(fasthttp.StatusBadRequest, terminals.CodeMalformed, "verified must be A, B or C")
			return
		}
	}
	switch {
	case !terminals.ValidID(b.ID, engine.StallIDLenMax):
		refuse(fasthttp.StatusBadRequest, terminals.CodeMalformed, "id (the wallet's idempotency id, 1..64 of [A-Za-z0-9._-]) is required")
		return
	case b.Amount < 0 || b.Amount > terminals.MaxAmount:
		refuse(fasthttp.StatusBadRequest, terminals.CodeInvalidAmount, "amount must be 0..1000000000 fen (0: a dynamic code's own amount)")
		return
	case !terminals.ValidID(code, terminals.MaxStallCodeLen):
		refuse(fasthttp.StatusNotFound, terminals.CodeUnknownInstrument, "no such stall code")
		return
	}
	if _, ok := validKey(b.Account); !ok {
		refuse(fasthttp.StatusBadRequest, terminals.CodeMalformed, "account must be kind:id (county, bank or ecny; never a card number)")
		return
	}
	r, err := se.PayStallCode(context.Background(), engine.StallPay{Code: code, Account: b.Account, Amount: b.Amount, ID: b.ID,
		Verified: class, Remote: b.Remote})
	if err != nil {
		s.audit(ctx, "stall_code.pay", code, string(terminals.CodeSystemError), "id", b.ID)
		s.internal(ctx, err)
		return
	}
	if r.Body == nil {
		refuse(r.Code.HTTPStatus(), r.Code, r.Reason)
		return
	}
	s.audit(ctx, "stall_code.pay", code, string(r.Code), "id", b.ID, "account", b.Account, "amount_fen", b.Amount, "replay", r.Duplicate)
	s.stored(ctx, r)
}

// refundStallPayment refunds part or all of a wallet's payment through a
// stall code to the paying account, answered like a payment.
func (s *Server) refundStallPayment(ctx *fasthttp.RequestCtx, se StallEngine, code, payment string) {
	var b opwire.StallRefund
	if !s.decode(ctx, &b) {
		s.audit(ctx, "stall_code.refund", payment, string(terminals.CodeMalformed))
		return
	}
	refuse := func(status int, c terminals.Code, msg string) {
		s.audit(ctx, "stall_code.refund", payment, string(c), "id", b.ID, "amount_fen", b.Amount)
		s.fail(ctx, status, c, msg)
	}
	switch {
	case !terminals.ValidID(b.ID, engine.StallRefundIDLenMax):
		refuse(fasthttp.StatusBadRequest, terminals.CodeMalformed, "id (the refund's idempotency id, 1..62 of [A-Za-z0-9._-]) is required")
		return
	case b.Amount <= 0 || b.Amount > terminals.MaxAmount:
		refuse(fasthttp.StatusBadRequest, terminals.CodeInvalidAmount, "amount must be 1..1000000000 fen")
		return
	case !terminals.ValidID(code, terminals.MaxStallCodeLen) || !terminals.ValidID(payment, engine.StallIDLenMax):
		refuse(fasthttp.StatusNotFound, terminals.CodeOriginalNotFound, "no such payment")
		return
	}
	r, err := se.RefundStallPayment(context.Background(), engine.StallRefund{Code: code, Payment: payment, ID: b.ID, Amount: b.Amount})
	if err != nil {
		s.audit(ctx, "stall_code.refund", payment, string(terminals.CodeSystemError), "id", b.ID)
		s.internal(ctx, err)
		return
	}
	if r.Body == nil {
		refuse(r.Code.HTTPStatus(), r.Code, r.Reason)
		return
	}
	s.audit(ctx, "stall_code.refund", payment, string(r.Code), "id", b.ID, "amount_fen", b.Amount, "replay", r.Duplicate)
	s.stored(ctx, r)
}

// stored writes a stored answer with the status of its code.
func (s *Server) stored(ctx *fasthttp.RequestCtx, r engine.StallPayResult) {
	if r.Duplicate {
		ctx.Response.Header.Set("X-Idempotent-Replay", "true")
	}
	ctx.SetStatusCode(r.Code.HTTPStatus())
	ctx.SetContentType("application/json")
	ctx.SetBody(append(append([]byte(nil), r.Body...), '\n'))
}
