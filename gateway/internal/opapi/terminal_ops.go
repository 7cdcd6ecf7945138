package opapi

// Terminal operations (rotate, block, status view), request ids and the
// audit trail of operator changes.
//
// Every operator request gets an id: the caller's X-Request-Id when it is a
// short plain token, else a fresh random one. The id is echoed in the
// response header and carried by every log line of the request, so an
// operator quoting a failed call lets an engineer find its lines.
//
// Every change (terminal register/rotate/block, account open/top-up/block)
// writes one line on the audit logger with the request id, the caller's
// role (operator or wallet, auth.go), a fingerprint of that role's token
// (never the token: a log reader must not be able to replay it), the
// action, the target and the result, whether the change was applied or
// refused.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

const (
	// requestIDHeader carries the request id both ways.
	requestIDHeader = "X-Request-Id"
	// requestIDLenMax bounds a caller-supplied id; a longer or odd one is
	// replaced, so that logs never carry an attacker's blob.
	requestIDLenMax = 64
	// tokenFingerprintBytes is how much of SHA-256(token) names the token.
	tokenFingerprintBytes = 6
	requestIDKey          = "scenepay.request_id"
)

// begin assigns the request id; Handle calls it first. A caller's id that
// could be a card number is not taken: every log line of the request
// carries the id.
func (s *Server) begin(ctx *fasthttp.RequestCtx) {
	id := string(ctx.Request.Header.Peek(requestIDHeader))
	if len(id) > requestIDLenMax || !terminals.ValidID(id, requestIDLenMax) || terminals.LooksLikePAN(id) {
		id = newRequestID()
	}
	ctx.SetUserValue(requestIDKey, id)
	ctx.Response.Header.Set(requestIDHeader, id)
}

// newRequestID returns 16 random hex digits that do not look like a card
// number. About one in a thousand random ids holds a Luhn-valid run of 13
// or more decimal digits: logged, it would trip the bank's card-number
// scanners (and this project's own log test).
func newRequestID() string {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		if id := hex.EncodeToString(b[:]); !terminals.LooksLikePAN(id) {
			return id
		}
	}
}

// requestID is the id begin assigned ("" outside Handle).
func requestID(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue(requestIDKey).(string)
	return id
}

// logger is the API logger carrying the request id.
func (s *Server) logger(ctx *fasthttp.RequestCtx) *slog.Logger {
	return s.cfg.Logger.With("request_id", requestID(ctx))
}

func (s *Server) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock()
	}
	return time.Now()
}

// audit writes the one audit line of an operator change.
func (s *Server) audit(ctx *fasthttp.RequestCtx, action, target, result string, attrs ...any) {
	l := s.cfg.Audit
	if l == nil {
		l = s.cfg.Logger.With("logger", "audit")
	}
	r := callerRole(ctx)
	args := append([]any{"request_id", requestID(ctx), "role", string(r), "token_fp", s.tokenFingerprint(r),
		"action", action, "target", target, "result", result}, attrs...)
	l.Info("operator change", args...)
}

// accountAction names a ledger operator operation in the audit trail.
func accountAction(op core.Op) string {
	switch op {
	case core.OpOpenAccount:
		return "account.open"
	case core.OpTopUp:
		return "account.topup"
	case core.OpBlock:
		return "account.block"
	case core.OpSetProfile:
		return "account.profile"
	}
	return "account.op"
}

// TerminalView is the JSON shape of a terminal: the journaled record plus
// runtime status. Status is "online", "offline" (the terminal's last will
// or its own report) or "unknown" (nothing heard since the gateway started).
type TerminalView struct {
	registry.Terminal
	OverlapUntil string `json:"overlap_until,omitempty"` // RFC 3339 UTC
	Status       string `json:"status"`
	StatusAt     string `json:"status_at,omitempty"` // RFC 3339 UTC
	LastSeen     string `json:"last_seen,omitempty"` // last authenticated message, RFC 3339 UTC
}

func rfc3339ms(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func terminalView(e *registry.Entry) TerminalView {
	t := e.Terminal()
	st, stMS, seen := e.Status()
	v := TerminalView{Terminal: t, OverlapUntil: rfc3339ms(t.OverlapUntilMS), StatusAt: rfc3339ms(stMS), LastSeen: rfc3339ms(seen)}
	switch st {
	case registry.StatusOnline:
		v.Status = "online"
	case registry.StatusOffline:
		v.Status = "offline"
	default:
		v.Status = "unknown"
	}
	return v
}

type rotateBody struct {
	// Overlap is a Go duration ("10m"); empty or "0s" ends the old key at once.
	Overlap string `json:"overlap"`
}

func (s *Server) rotateTerminal(ctx *fasthttp.RequestCtx, tid string) {
	var b rotateBody
	if len(ctx.PostBody()) > 0 && !s.decode(ctx, &b) {
		s.audit(ctx, "terminal.rotate", tid, string(terminals.CodeMalformed))
		return
	}
	var overlap time.Duration
	if b.Overlap != "" {
		d, err := time.ParseDuration(b.Overlap)
		if err != nil || d < 0 || d > registry.OverlapMax {
			s.audit(ctx, "terminal.rotate", tid, string(terminals.CodeMalformed))
			s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "overlap must be a duration 0s..168h, e.g. \"10m\"")
			return
		}
		overlap = d
	}
	now := s.now()
	s.change(ctx, "terminal.rotate", tid, func(cur registry.Terminal) (registry.Terminal, error) {
		return registry.Rotated(cur, now, overlap)
	}, "overlap", overlap.String())
}

func (s *Server) blockTerminal(ctx *fasthttp.RequestCtx, tid string) {
	var b blockBody
	if !s.decode(ctx, &b) {
		s.audit(ctx, "terminal.block", tid, string(terminals.CodeMalformed))
		return
	}
	s.change(ctx, "terminal.block", tid, func(cur registry.Terminal) (registry.Terminal, error) {
		cur.Blocked = b.Blocked
		return cur, nil
	}, "blocked", b.Blocked)
}

// change applies f to terminal tid, journals the result and answers with the
// new view; the audit line says what happened either way.
func (s *Server) change(ctx *fasthttp.RequestCtx, action, tid string, f func(registry.Terminal) (registry.Terminal, error), attrs ...any) {
	var journalErr error
	n, err := s.e.Registry().Change(tid, f, func(n registry.Terminal) error {
		journalErr = s.e.RegisterTerminal(n)
		return journalErr
	})
	switch {
	case errors.Is(err, registry.ErrNotFound):
		s.audit(ctx, action, tid, string(terminals.CodeUnknownTerminal), attrs...)
		s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownTerminal, "no such terminal")
		return
	case err != nil && journalErr == nil: // refused before anything was journaled
		s.audit(ctx, action, tid, string(terminals.CodeMalformed), attrs...)
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, err.Error())
		return
	case err != nil:
		s.audit(ctx, action, tid, string(terminals.CodeSystemError), attrs...)
		s.internal(ctx, err)
		return
	}
	s.audit(ctx, action, tid, "ok", append(attrs, "key_version", n.KeyVersion)...)
	e, ok := s.e.Registry().Get(tid)
	if !ok { // cannot happen: terminals are never removed
		s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownTerminal, "no such terminal")
		return
	}
	s.json(ctx, fasthttp.StatusOK, terminalView(e))
}
