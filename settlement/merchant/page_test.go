package merchant

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// login posts the key and returns the session cookie value.
func (e *env) login(key string) (string, *http.Cookie) {
	e.t.Helper()
	r := e.do("POST", "/m/login", "", url.Values{"key": {key}}, "")
	if r.status != 303 || r.header.Get("Location") != "/m/" {
		e.t.Fatalf("login: %d %s %s", r.status, r.header.Get("Location"), r.body)
	}
	resp := http.Response{Header: r.header}
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c.Value, c
		}
	}
	e.t.Fatal("login set no session cookie")
	return "", nil
}

func TestPageLoginLogout(t *testing.T) {
	e := newEnv(t, backends()[0])
	if r := e.get("/m/", ""); r.status != 303 || r.header.Get("Location") != "/m/login" {
		t.Fatalf("page without session: %d %s", r.status, r.header.Get("Location"))
	}
	bad := e.do("POST", "/m/login", "", url.Values{"key": {e.keyA + "x"}}, "")
	if bad.status != 401 || len(bad.header.Values("Set-Cookie")) != 0 || !strings.Contains(string(bad.body), "Invalid or revoked key") {
		t.Fatalf("bad login: %d %v", bad.status, bad.header)
	}
	sid, c := e.login(e.keyA)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/m/" {
		t.Errorf("cookie attributes: %+v", c)
	}
	if strings.Contains(sid, e.keyA[4:20]) || strings.Contains(e.keyA, sid) {
		t.Error("the cookie carries the key")
	}
	page := e.do("GET", "/m/", "", nil, sid)
	body := string(page.body)
	if page.status != 200 || !strings.Contains(body, `id="today-net">26.00<`) || !strings.Contains(body, `id="today-gross">28.00<`) {
		t.Fatalf("page: %d\n%s", page.status, body)
	}
	if !strings.Contains(page.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Error("page without a CSP")
	}
	// Downloads through the cookie.
	dl := e.do("GET", "/m/dl/statements/2026-03-01.csv", "", nil, sid)
	if dl.status != 200 || !strings.Contains(string(dl.body), "2600") {
		t.Errorf("download by cookie: %d %s", dl.status, dl.body)
	}
	// Cross-site and token-less logouts are refused; the session lives on.
	req := e.do("POST", "/m/logout", "", url.Values{"csrf": {"wrong"}}, sid)
	if req.status != 403 {
		t.Errorf("logout without the token: %d", req.status)
	}
	if e.do("GET", "/m/", "", nil, sid).status != 200 {
		t.Fatal("refused logout ended the session")
	}
	csrf := between(body, `name="csrf" value="`, `"`)
	if csrf == "" {
		t.Fatal("no CSRF token in the page")
	}
	hreq, _ := http.NewRequest("POST", e.base+"/m/logout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Cookie", SessionCookie+"="+sid)
	hreq.Header.Set("Origin", "https://evil.example")
	resp, err := noRedirect.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("cross-origin logout: %d", resp.StatusCode)
	}
	out := e.do("POST", "/m/logout", "", url.Values{"csrf": {csrf}}, sid)
	if out.status != 303 {
		t.Fatalf("logout: %d %s", out.status, out.body)
	}
	if r := e.do("GET", "/m/", "", nil, sid); r.status != 303 {
		t.Errorf("page after logout: %d", r.status)
	}
	if r := e.do("GET", "/m/dl/transactions.csv", "", nil, sid); r.status != 401 {
		t.Errorf("download after logout: %d", r.status)
	}
	// Revoking the key ends its other sessions.
	sid2, _ := e.login(e.keyA)
	if err := e.keys.Revoke(context.Background(), e.idA); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/m/", "", nil, sid2); r.status != 303 {
		t.Errorf("page after revoke: %d", r.status)
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	j := strings.Index(s, b)
	if j < 0 {
		return ""
	}
	return s[:j]
}

func TestPageEscapes(t *testing.T) {
	e := newEnv(t, backends()[0])
	evil := `<script>x</script>&"'`
	k, err := e.keys.Issue(context.Background(), evil, "")
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := e.login(k.Key)
	body := string(e.do("GET", "/m/", "", nil, sid).body)
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;x&lt;/script&gt;&amp;") {
		t.Fatalf("merchant id not escaped:\n%s", body)
	}
}

// TestPageChromium renders the logged-in page in headless Chromium. The
// session comes from a real login POST; a test-only route hands its cookie
// to the browser (a browser cannot be given a cookie on the command line).
func TestPageChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is missing with CI set: run deploy/tools/ensure-chromium.sh")
		}
		t.Skip("chromium not installed (deploy/tools/ensure-chromium.sh); required when CI is set")
	}
	e := newEnv(t, backends()[0])
	// Clearing's statements, with held e-CNY receipts.
	heldFixture(t, e.st)
	h, err := New(Config{Store: e.st, Keys: e.keys, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	sid, _ := e.login(e.keyA)
	enter := func(ctx *fasthttp.RequestCtx) bool {
		if string(ctx.Path()) != "/test/enter" {
			return false
		}
		e.h.setCookie(ctx, string(ctx.QueryArgs().Peek("sid")), 600)
		seeOther(ctx, "/m/")
		return true
	}
	e.extra.Store(&enter)
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--dump-dom", e.base+"/test/enter?sid="+url.QueryEscape(sid))
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("chromium: %v\n%s", err, stderr)
	}
	dom := string(out)
	for _, want := range []string{`<span id="merchant">M-A</span>`, `id="today-payments">28<`, `id="today-net">26.00<`,
		`id="today-gross">28.00<`, `href="/m/dl/statements/2026-03-01.csv"`, `name="csrf"`,
		`id="held-2026-03-01">1.50<`, `id="released-2026-03-01">0.00<`, `id="payable-2026-03-01">27.83<`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %s:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "API key") {
		t.Error("chromium was shown the login form: the cookie did not reach the page")
	}
}
