package merchant

// The merchant web page: server-rendered html/template (contextual
// escaping of every value), no JavaScript, no build step. Login posts the
// key once; the answer sets an HttpOnly, SameSite=Strict cookie holding a
// random session id (never the key). Logout is a POST carrying the
// session's CSRF token. Downloads are plain links to /m/dl/..., which the
// cookie authenticates; SameSite=Strict keeps other sites from using it.

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"time"

	"github.com/valyala/fasthttp"
)

// SessionCookie is the name of the session cookie.
const SessionCookie = "scenepay_msession"

// loginKeyLenMax bounds the key field of the login form.
const loginKeyLenMax = 256

const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{"yuan": yuan}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Merchant settlement</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}.err{color:#a00}</style></head><body>
{{if .Login}}
<h1>Merchant settlement</h1>
{{if .Error}}<p class="err" id="error">{{.Error}}</p>{{end}}
<form method="post" action="/m/login">
<label>API key <input type="password" name="key" autocomplete="off" required></label>
<button type="submit">Log in</button></form>
{{else}}
<h1>Merchant <span id="merchant">{{.Merchant}}</span></h1>
<form method="post" action="/m/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Log out</button></form>
<h2>Today ({{.Today}}, Asia/Shanghai)</h2>
<table id="today"><tr><th>Payments</th><th>Gross</th><th>Refunds</th><th>Reversals</th><th>Net</th></tr>
<tr><td id="today-payments">{{.Totals.Payments}}</td><td id="today-gross">{{yuan .Totals.Gross}}</td>
<td id="today-refunds">{{yuan .Totals.Refunds}}</td><td id="today-reversals">{{yuan .Totals.Reversals}}</td>
<td id="today-net">{{yuan .Totals.Net}}</td></tr></table>
<p><a id="today-csv" href="/m/dl/transactions.csv?from={{.Today}}&amp;to={{.Today}}">Today's transactions (CSV)</a></p>
<h2>Statements</h2>
{{if .Statements}}<table id="statements"><tr><th>Window</th><th>Status</th><th>Count</th><th>Gross</th><th>Fees</th><th>Net</th><th>Held</th><th>Released</th><th>Payable</th><th>Download</th></tr>
{{range .Statements}}<tr><td>{{.Window}}</td><td>{{.Status}}</td><td>{{.Count}}</td><td>{{yuan .Gross}}</td><td>{{yuan .Fees}}</td><td>{{yuan .Net}}</td>
<td id="held-{{.Window}}">{{yuan .Held}}</td><td id="released-{{.Window}}">{{yuan .Released}}</td><td id="payable-{{.Window}}">{{yuan .Payable}}</td>
<td><a href="/m/dl/statements/{{.Window}}.csv">statement</a> <a href="/m/dl/settlement-file/{{.Window}}">settlement file</a></td></tr>
{{end}}</table>
<p id="held-note">Held: e-CNY offline payments whose payer's wallet has not gone online since; they are paid, as Released, with the first statement after it does. Payable is what the bank pays: net, less fees and the market management fee, less held, plus released.</p>
{{else}}<p id="no-statements">No statements yet.</p>{{end}}
{{end}}
</body></html>
`))

type todayTotals struct{ Payments, Gross, Refunds, Reversals, Net int64 }

type pageData struct {
	Login      bool
	Error      string
	Merchant   string
	CSRF       string
	Today      string
	Totals     todayTotals
	Statements []Statement
}

func (h *Handler) render(ctx *fasthttp.RequestCtx, status int, d pageData) {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		h.cfg.Logger.Error("merchant page: template", "err", err)
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetBodyString("internal error\n")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Content-Security-Policy", pageCSP)
	ctx.Response.Header.Set("X-Frame-Options", "DENY")
	ctx.Response.Header.Set("Referrer-Policy", "no-referrer")
	ctx.SetBody(buf.Bytes())
}

// sameOrigin refuses a state-changing form post from another site. A
// missing Origin (old clients, curl) is allowed: SameSite=Strict and the
// CSRF token carry the rest.
func sameOrigin(ctx *fasthttp.RequestCtx) bool {
	o := ctx.Request.Header.Peek("Origin")
	if len(o) == 0 {
		return true
	}
	host := ctx.Host()
	return bytes.Equal(o, append([]byte("http://"), host...)) || bytes.Equal(o, append([]byte("https://"), host...))
}

// cookie authenticates /m/dl/ by the session cookie; the key behind the
// session must still be active, so revoking a key ends its sessions.
func (h *Handler) cookie(ctx *fasthttp.RequestCtx, c context.Context) (Principal, bool) {
	s, ok := h.session(ctx, c)
	if !ok {
		fail(ctx, fasthttp.StatusUnauthorized, "UNAUTHORIZED", "log in first")
		return Principal{}, false
	}
	return Principal{Merchant: s.merchant, KeyID: s.keyID}, true
}

// session returns the caller's live session; a fault while checking the
// key counts as no session (the page then asks to log in again).
func (h *Handler) session(ctx *fasthttp.RequestCtx, c context.Context) (session, bool) {
	id := string(ctx.Request.Header.Cookie(SessionCookie))
	s, ok := h.sessions.get(h.cfg.Clock(), id)
	if !ok {
		return session{}, false
	}
	active, err := h.cfg.Keys.Active(c, s.keyID)
	if err != nil {
		h.cfg.Logger.Error("merchant page: key check", "err", err)
		return session{}, false
	}
	if !active {
		h.sessions.drop(id)
		return session{}, false
	}
	return s, true
}

func (h *Handler) setCookie(ctx *fasthttp.RequestCtx, value string, maxAge int) {
	var ck fasthttp.Cookie
	ck.SetKey(SessionCookie)
	ck.SetValue(value)
	ck.SetPath("/m/")
	ck.SetHTTPOnly(true)
	ck.SetSecure(h.cfg.SecureCookie)
	ck.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	ck.SetMaxAge(maxAge)
	ctx.Response.Header.SetCookie(&ck)
}

func (h *Handler) page(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	c, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	s, ok := h.session(ctx, c)
	if !ok {
		seeOther(ctx, "/m/login")
		return
	}
	now := h.cfg.Clock().In(Shanghai)
	y, m, d := now.Date()
	from := time.Date(y, m, d, 0, 0, 0, 0, Shanghai)
	to := time.Date(y, m, d+1, 0, 0, 0, 0, Shanghai)
	t, err := h.cfg.Store.Totals(c, s.merchant, from, to)
	if err != nil {
		h.internal(ctx, err)
		return
	}
	list, err := h.cfg.Statements.List(c, s.merchant)
	if err != nil {
		h.internal(ctx, err)
		return
	}
	h.render(ctx, fasthttp.StatusOK, pageData{Merchant: s.merchant, CSRF: s.csrf, Today: from.Format("2006-01-02"),
		Totals:     todayTotals{Payments: t.Payments, Gross: t.Gross, Refunds: t.Refunds, Reversals: t.Reversals, Net: t.Net},
		Statements: list})
}

func (h *Handler) login(ctx *fasthttp.RequestCtx) {
	if ctx.IsGet() || ctx.IsHead() {
		h.render(ctx, fasthttp.StatusOK, pageData{Login: true})
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST")
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	if !sameOrigin(ctx) {
		ctx.SetStatusCode(fasthttp.StatusForbidden)
		ctx.SetBodyString("cross-site form refused\n")
		return
	}
	c, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	key := ctx.PostArgs().Peek("key")
	if len(key) == 0 || len(key) > loginKeyLenMax {
		h.render(ctx, fasthttp.StatusUnauthorized, pageData{Login: true, Error: "Invalid or revoked key."})
		return
	}
	p, err := h.cfg.Keys.Authenticate(c, string(key))
	if errors.Is(err, ErrKeyInvalid) {
		h.render(ctx, fasthttp.StatusUnauthorized, pageData{Login: true, Error: "Invalid or revoked key."})
		return
	}
	if err != nil {
		h.internal(ctx, err)
		return
	}
	id, ok := h.sessions.create(h.cfg.Clock(), p)
	if !ok {
		ctx.Response.Header.Set("Retry-After", "60")
		h.render(ctx, fasthttp.StatusServiceUnavailable, pageData{Login: true, Error: "Too many sessions; try again later."})
		return
	}
	h.setCookie(ctx, id, int(h.sessions.ttl/time.Second))
	seeOther(ctx, "/m/")
}

func (h *Handler) logout(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	if !sameOrigin(ctx) {
		ctx.SetStatusCode(fasthttp.StatusForbidden)
		ctx.SetBodyString("cross-site form refused\n")
		return
	}
	id := string(ctx.Request.Header.Cookie(SessionCookie))
	if !h.sessions.end(id, string(ctx.PostArgs().Peek("csrf"))) {
		ctx.SetStatusCode(fasthttp.StatusForbidden)
		ctx.SetBodyString("logout refused: missing or wrong form token\n")
		return
	}
	h.setCookie(ctx, "", -1)
	seeOther(ctx, "/m/login")
}

// seeOther redirects to a path on this host. The Location stays relative:
// an absolute one would be built from the request's Host header.
func seeOther(ctx *fasthttp.RequestCtx, path string) {
	ctx.Response.Header.Set("Location", path)
	ctx.SetStatusCode(fasthttp.StatusSeeOther)
}
