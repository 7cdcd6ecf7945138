package opapi

// Authentication and roles. Two bearer tokens open the /v1 routes:
//
//   - the operator token (Config.Token): every route, for the bank's
//     operators, settlement's reconciliation and support;
//   - the wallet token (Config.WalletToken), given to the bank's wallet
//     backend: only the two stall code payment routes (walletRoute in
//     stallcodes.go). Any other route with it answers 403 WALLET_SCOPE
//     and writes an audit line, so a wallet backend's credential cannot
//     register terminals, rotate keys, change configuration or the deny
//     list.
//
// The operator token keeps the payment routes (support repeats a wallet's
// call or refunds by hand); such calls are audited with role operator.
// Without a wallet token the payment routes take the operator token only.
// Both tokens are compared in constant time, and both comparisons always
// run, so the time taken does not tell which token a guess came near.

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"

	"github.com/valyala/fasthttp"

	"scenepay/terminals"
)

// role names the caller in audit lines.
type role string

const (
	roleOperator role = "operator"
	roleWallet   role = "wallet"
	roleKey           = "scenepay.role"
	// codeWalletScope is the code of a 403: the wallet token on a route
	// other than the payment routes. It is not a terminal response code.
	codeWalletScope = "WALLET_SCOPE"
	// walletScopeMsg is the error text of that 403.
	walletScopeMsg = "the wallet token may call only POST /v1/stall-codes/{code}/payments and POST /v1/stall-codes/{code}/payments/{id}/refunds"
)

// authenticate finds the caller's role from the bearer token and keeps it
// on the request for the audit lines; false: no token or a wrong one.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (role, bool) {
	tok, ok := bytes.CutPrefix(ctx.Request.Header.Peek("Authorization"), []byte("Bearer "))
	if !ok || len(tok) == 0 {
		return "", false
	}
	op := s.cfg.Token != "" && subtle.ConstantTimeCompare(tok, []byte(s.cfg.Token)) == 1
	wallet := s.cfg.WalletToken != "" && subtle.ConstantTimeCompare(tok, []byte(s.cfg.WalletToken)) == 1
	var r role
	switch {
	case op:
		r = roleOperator
	case wallet:
		r = roleWallet
	default:
		return "", false
	}
	ctx.SetUserValue(roleKey, r)
	return r, true
}

// callerRole is the role authenticate found ("" before it).
func callerRole(ctx *fasthttp.RequestCtx) role {
	r, _ := ctx.UserValue(roleKey).(role)
	return r
}

// forbidWallet answers the wallet token on a route outside its scope, and
// audits the attempt: the resource (the first path segment) and the method,
// never the rest of the path, which may carry an account or any text.
func (s *Server) forbidWallet(ctx *fasthttp.RequestCtx, parts []string) {
	resource, method := parts[0], string(ctx.Method())
	if !terminals.ValidID(resource, 32) {
		resource = "?"
	}
	if !terminals.ValidID(method, 16) {
		method = "?"
	}
	s.audit(ctx, "auth.forbidden", "/v1/"+resource, codeWalletScope, "method", method)
	s.json(ctx, fasthttp.StatusForbidden, errorBody{Code: codeWalletScope, Error: walletScopeMsg})
}

// tokenFingerprint names the token of role r without revealing it.
func (s *Server) tokenFingerprint(r role) string {
	tok := s.cfg.Token
	if r == roleWallet {
		tok = s.cfg.WalletToken
	}
	sum := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(sum[:tokenFingerprintBytes])
}
