// Package opapi owns the gateway's operator HTTP API (fasthttp): terminals
// and accounts for the bank's operators, the journal totals settlement
// reconciles against (journal_totals.go), plus /metrics, /healthz and
// /readyz.
// Every /v1 call needs a bearer token: the operator token opens every
// route; the wallet token (auth.go), given to the bank's wallet backend,
// opens only the two stall code payment routes. Every change goes through
// the engine, so it is journaled before it is acknowledged.
package opapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// Engine is what the API needs of the engine.
type Engine interface {
	Operate(ctx context.Context, in core.Input) (engine.OperatorResult, error)
	OperateTopUp(ctx context.Context, in core.Input) (engine.TopUpResult, error)
	RegisterTerminal(t registry.Terminal) error
	Registry() *registry.Registry
	Ready() error
}

// Config of the API.
type Config struct {
	// Token is the operator token: every /v1 route.
	Token string
	// WalletToken is the wallet backend's token: only the stall code
	// payment and refund routes (auth.go). Empty: those routes take the
	// operator token only. It must differ from Token.
	WalletToken string
	Gatherer    prometheus.Gatherer
	Ready       func() error // extra readiness (MQTT connected, ...)
	Logger      *slog.Logger
	// Audit receives one line per operator change (nil: Logger with
	// logger=audit); main also copies it to an append-only file.
	Audit *slog.Logger
	// Clock stamps rotation overlaps (nil: time.Now); the engine's clock
	// must agree with it.
	Clock func() time.Time
	// BodyBytesMax bounds request bodies.
	BodyBytesMax int
	// Source is the gateway's instance name (the handoff's source), named
	// in GET /v1/journal/totals; empty: that route is not served.
	Source string
}

// Server is the operator API.
type Server struct {
	cfg     Config
	e       Engine
	srv     *fasthttp.Server
	metrics fasthttp.RequestHandler
	ln      net.Listener
}

// New builds the server.
func New(cfg Config, e Engine) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BodyBytesMax <= 0 {
		cfg.BodyBytesMax = 64 << 10
	}
	s := &Server{cfg: cfg, e: e}
	if cfg.Gatherer != nil {
		s.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	s.srv = &fasthttp.Server{
		Handler:            s.Handle,
		Name:               "scenepay-gateway",
		MaxRequestBodySize: cfg.BodyBytesMax,
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       15 * time.Second,
		IdleTimeout:        60 * time.Second,
		Concurrency:        1024,
	}
	return s
}

// Listen binds addr; a taken port fails at once with a clear message.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.New("operator API: listen " + addr + ": " + err.Error() + " (choose another with -http-listen or SCENEPAY_HTTP_LISTEN)")
	}
	s.ln = ln
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Shutdown() }

func (s *Server) ready() error {
	if err := s.e.Ready(); err != nil {
		return err
	}
	if s.cfg.Ready != nil {
		return s.cfg.Ready()
	}
	return nil
}

// Handle routes one request.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	s.begin(ctx)
	path := string(ctx.Path())
	switch path {
	case "/healthz":
		ctx.SetBodyString("ok\n")
		return
	case "/readyz":
		if err := s.ready(); err != nil {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("not ready: " + err.Error() + "\n")
			return
		}
		ctx.SetBodyString("ready\n")
		return
	case "/metrics":
		if s.metrics == nil {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		s.metrics(ctx)
		return
	}
	if !strings.HasPrefix(path, "/v1/") {
		s.fail(ctx, fasthttp.StatusNotFound, "", "no such endpoint")
		return
	}
	r, ok := s.authenticate(ctx)
	if !ok {
		ctx.Response.Header.Set("WWW-Authenticate", "Bearer")
		s.fail(ctx, fasthttp.StatusUnauthorized, "", "missing or wrong bearer token (the operator token, or the wallet token on the payment routes)")
		return
	}
	parts := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	post := ctx.IsPost()
	if r == roleWallet && !walletRoute(parts, post) {
		s.forbidWallet(ctx, parts)
		return
	}
	if len(parts) >= 2 && parts[0] == "accounts" {
		// One check for every /v1/accounts/{key}/... route: a malformed key
		// (or a card number) names no account.
		if _, ok := validKey(parts[1]); !ok {
			s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownInstrument, "no such account")
			return
		}
	}
	switch {
	case len(parts) == 1 && parts[0] == "terminals" && post:
		s.registerTerminal(ctx)
	case len(parts) == 2 && parts[0] == "terminals" && ctx.IsGet():
		s.getTerminal(ctx, parts[1])
	case len(parts) == 3 && parts[0] == "terminals" && parts[2] == "rotate" && post:
		s.rotateTerminal(ctx, parts[1])
	case len(parts) == 3 && parts[0] == "terminals" && parts[2] == "block" && post:
		s.blockTerminal(ctx, parts[1])
	case len(parts) >= 2 && parts[0] == "config":
		s.config(ctx, parts)
	case parts[0] == "denylist":
		s.denylist(ctx, parts)
	case parts[0] == "stall-codes":
		s.stallCodes(ctx, parts)
	case len(parts) == 2 && parts[0] == "journal" && parts[1] == "totals" && ctx.IsGet():
		s.journalTotals(ctx)
	case len(parts) == 1 && parts[0] == "accounts" && post:
		s.openAccount(ctx)
	case len(parts) == 2 && parts[0] == "accounts" && ctx.IsGet():
		s.getAccount(ctx, parts[1])
	case len(parts) == 3 && parts[0] == "accounts" && parts[2] == "topup" && post:
		s.topUp(ctx, parts[1])
	case len(parts) == 3 && parts[0] == "accounts" && parts[2] == "block" && post:
		s.block(ctx, parts[1])
	case len(parts) == 3 && parts[0] == "accounts" && parts[2] == "profile" && post:
		s.setProfile(ctx, parts[1])
	default:
		s.fail(ctx, fasthttp.StatusNotFound, "", "no such endpoint")
	}
}

type errorBody struct {
	Code  string `json:"code,omitempty"`
	Name  string `json:"name,omitempty"`
	Error string `json:"error"`
}

func (s *Server) fail(ctx *fasthttp.RequestCtx, status int, code terminals.Code, msg string) {
	b := errorBody{Error: msg}
	if code != "" {
		b.Code, b.Name = string(code), code.Name()
	}
	s.json(ctx, status, b)
}

func (s *Server) json(ctx *fasthttp.RequestCtx, status int, v any) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b, _ := json.Marshal(v)
	ctx.SetBody(append(b, '\n'))
}

func (s *Server) decode(ctx *fasthttp.RequestCtx, v any) bool {
	dec := json.NewDecoder(strings.NewReader(string(ctx.PostBody())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) registerTerminal(ctx *fasthttp.RequestCtx) {
	var t registry.Terminal
	if !s.decode(ctx, &t) {
		return
	}
	if e, ok := s.e.Registry().Get(t.TID); ok {
		// Registration never rewrites a terminal: that would undo a key
		// rotation or a block. The same registration again is answered with
		// the current record (a retried call); anything else is a conflict.
		cur := e.Terminal()
		if t.Kind == cur.Kind && t.Merchant == cur.Merchant && (t.KeyVersion == 0 || t.KeyVersion == cur.KeyVersion) && !t.Blocked {
			s.json(ctx, fasthttp.StatusOK, cur)
			return
		}
		s.fail(ctx, fasthttp.StatusConflict, terminals.CodeIDConflict, "terminal already registered with other settings; use /rotate or /block to change it")
		return
	}
	if t.KeyVersion == 0 {
		t.KeyVersion = 1
	}
	if err := t.Validate(); err != nil {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, err.Error())
		return
	}
	if err := s.e.RegisterTerminal(t); err != nil {
		s.internal(ctx, err)
		return
	}
	s.audit(ctx, "terminal.register", t.TID, "ok", "kind", t.Kind, "merchant", t.Merchant, "key_version", t.KeyVersion)
	s.json(ctx, fasthttp.StatusCreated, t)
}

func (s *Server) getTerminal(ctx *fasthttp.RequestCtx, tid string) {
	e, ok := s.e.Registry().Get(tid)
	if !ok {
		s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownTerminal, "no such terminal")
		return
	}
	s.json(ctx, fasthttp.StatusOK, terminalView(e))
}

// AccountView is the JSON shape of an account.
type AccountView struct {
	Account   string `json:"account"`
	Kind      string `json:"kind"`
	Class     uint8  `json:"class,omitempty"`
	Balance   int64  `json:"balance"`
	Held      int64  `json:"held"`
	Available int64  `json:"available"`
	Floor     int64  `json:"floor"`
	Blocked   bool   `json:"blocked"`
	// Profile is a county card's concession profile (adult, senior,
	// student, disabled); other kinds ride on no concession and omit it.
	Profile string `json:"profile,omitempty"`
	// Debt is the transit debt a county card owes (fen): offline taps its
	// balance could not cover, paid first by the next top-up. 0 for a
	// card without debt and for other kinds.
	Debt int64 `json:"debt"`
}

// TopUpView is the answer to a top-up: the account after it and the part
// of the top-up that paid the card's transit debt (fen, 0 when none).
type TopUpView struct {
	AccountView
	DebtPaid int64 `json:"debt_paid"`
}

func view(key string, v core.AccountView) AccountView {
	kind, _, _ := strings.Cut(key, ":")
	av := AccountView{Account: key, Kind: kind, Class: v.Class, Balance: v.Balance, Held: v.Held,
		Available: v.Available, Floor: v.Floor, Blocked: v.Blocked, Debt: v.Debt}
	if kind == terminals.InstCounty {
		av.Profile = v.Profile.String()
	}
	return av
}

type openBody struct {
	Inst    terminals.Instrument `json:"inst"`
	Class   uint8                `json:"class"`
	Floor   int64                `json:"floor"`
	Balance int64                `json:"balance"`
	Ref     string               `json:"ref"`
	// Profile is the optional concession profile of a county card
	// ("adult" when empty).
	Profile string `json:"profile"`
}

// parseProfile reads a profile name for the account key: only county
// cards ride on concessions.
func parseProfile(key, name string) (transit.Profile, string) {
	p, ok := transit.ParseProfile(name)
	switch {
	case !ok:
		return 0, "profile must be adult, senior, student or disabled"
	case !strings.HasPrefix(key, terminals.InstCounty+":"):
		return 0, "only county cards have a concession profile"
	}
	return p, ""
}

func validKey(key string) (terminals.Instrument, bool) {
	kind, id, ok := strings.Cut(key, ":")
	in := terminals.Instrument{Kind: kind, ID: id}
	if !ok || !terminals.ValidID(id, terminals.MaxInstrumentIDLen) || terminals.LooksLikePAN(id) {
		return in, false
	}
	switch kind {
	case terminals.InstCounty, terminals.InstBank, terminals.InstECNY:
		return in, true
	}
	return in, false
}

func (s *Server) openAccount(ctx *fasthttp.RequestCtx) {
	var b openBody
	if !s.decode(ctx, &b) {
		return
	}
	key := b.Inst.Key()
	if _, ok := validKey(key); !ok {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "inst: kind must be county, bank or ecny and id 1..64 of [A-Za-z0-9._-], never a card number")
		return
	}
	if b.Balance < 0 || b.Balance > terminals.MaxAmount {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeInvalidAmount, "balance must be 0..1000000000 fen")
		return
	}
	if b.Ref == "" {
		b.Ref = "open:" + key
	}
	if terminals.LooksLikePAN(b.Ref) {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "ref must never be a card number")
		return
	}
	prof := transit.ProfileAdult
	if b.Profile != "" {
		var why string
		if prof, why = parseProfile(key, b.Profile); why != "" {
			s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, why)
			return
		}
	}
	open := core.Input{Op: core.OpOpenAccount, Account: key, Amount: b.Balance, Class: b.Class, Floor: b.Floor, Ref: b.Ref}
	if prof == transit.ProfileAdult {
		s.run(ctx, fasthttp.StatusCreated, open)
		return
	}
	// Two journaled steps, open then profile: the core opens every card
	// adult. Should the second fail (the engine stopped), the card stays
	// open as adult, the caller sees the failure and repeats the profile.
	if _, ok := s.operate(ctx, open); !ok {
		return
	}
	s.run(ctx, fasthttp.StatusCreated, core.Input{Op: core.OpSetProfile, Account: key, Profile: prof})
}

type profileBody struct {
	Profile string `json:"profile"`
}

func (s *Server) setProfile(ctx *fasthttp.RequestCtx, key string) {
	var b profileBody
	if !s.decode(ctx, &b) {
		return
	}
	p, why := parseProfile(key, b.Profile)
	if why != "" {
		s.audit(ctx, "account.profile", key, string(terminals.CodeMalformed), "profile", b.Profile)
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, why)
		return
	}
	s.run(ctx, fasthttp.StatusOK, core.Input{Op: core.OpSetProfile, Account: key, Profile: p})
}

func (s *Server) getAccount(ctx *fasthttp.RequestCtx, key string) {
	s.run(ctx, fasthttp.StatusOK, core.Input{Account: key})
}

type topUpBody struct {
	Amt int64  `json:"amt"`
	Ref string `json:"ref"`
}

func (s *Server) topUp(ctx *fasthttp.RequestCtx, key string) {
	var b topUpBody
	if !s.decode(ctx, &b) {
		return
	}
	if b.Amt <= 0 || b.Amt > terminals.MaxAmount {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeInvalidAmount, "amt must be 1..1000000000 fen")
		return
	}
	if b.Ref == "" || len(b.Ref) > 64 || terminals.LooksLikePAN(b.Ref) {
		// A ref is journaled and logged: a card number pasted into it is refused.
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "ref (1..64 chars, never a card number) is required: it makes a retried top-up safe")
		return
	}
	s.topUpRun(ctx, core.Input{Op: core.OpTopUp, Account: key, Amount: b.Amt, Ref: b.Ref})
}

type blockBody struct {
	Blocked bool `json:"blocked"`
}

func (s *Server) block(ctx *fasthttp.RequestCtx, key string) {
	var b blockBody
	if !s.decode(ctx, &b) {
		return
	}
	s.run(ctx, fasthttp.StatusOK, core.Input{Op: core.OpBlock, Account: key, Blocked: b.Blocked})
}

func (s *Server) run(ctx *fasthttp.RequestCtx, okStatus int, in core.Input) {
	if r, ok := s.operate(ctx, in); ok {
		s.json(ctx, okStatus, view(in.Account, r.Account))
	}
}

// operate runs in on the engine and audits it; on anything but an
// approval of an existing account it answers the request and reports
// false.
func (s *Server) operate(ctx *fasthttp.RequestCtx, in core.Input) (engine.OperatorResult, bool) {
	r, err := s.e.Operate(context.Background(), in)
	if err != nil {
		s.internal(ctx, err)
		return r, false
	}
	if r.Code != terminals.CodeApproved {
		if in.Op != 0 {
			s.audit(ctx, accountAction(in.Op), in.Account, string(r.Code), auditAttrs(in)...)
		}
		s.fail(ctx, r.Code.HTTPStatus(), r.Code, r.Code.Name())
		return r, false
	}
	if !r.Found {
		s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownInstrument, "no such account")
		return r, false
	}
	if in.Op != 0 {
		s.audit(ctx, accountAction(in.Op), in.Account, "ok", auditAttrs(in)...)
	}
	return r, true
}

// auditAttrs are the audit fields of a ledger operator operation.
func auditAttrs(in core.Input) []any {
	if in.Op == core.OpSetProfile {
		return []any{"profile", in.Profile.String()}
	}
	return []any{"amount_fen", in.Amount, "ref", in.Ref}
}

func (s *Server) internal(ctx *fasthttp.RequestCtx, err error) {
	s.logger(ctx).Error("operator API", "path", string(ctx.Path()), "err", err)
	s.fail(ctx, fasthttp.StatusServiceUnavailable, terminals.CodeSystemError, err.Error())
}
