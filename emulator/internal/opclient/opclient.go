// Package opclient owns the emulator's side of the gateway operator HTTP
// API: registering terminals, opening and topping up accounts, reading
// accounts, reading /metrics and /readyz, and, as the bank's wallet
// backend, registering stall codes and reporting and refunding payments
// through them (stallcodes.go). It speaks JSON over net/http with a
// bearer token (the operator's, or the wallet backend's own for the stall
// code payment calls), and turns the gateway's coded error
// bodies into typed *APIError values so that callers can branch on the
// result code instead of on message text.
package opclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// Bounds on what the client reads; a misbehaving server cannot make it
// buffer without limit.
const (
	// ResponseBytesMax bounds a JSON response body.
	ResponseBytesMax = 1 << 20
	// MetricsBytesMax bounds a /metrics scrape.
	MetricsBytesMax = 16 << 20
	// DefaultTimeout is the per-request timeout of the default HTTP client.
	DefaultTimeout = 10 * time.Second
)

// Terminal is the operator view of a terminal.
type Terminal struct {
	TID        string `json:"tid"`
	Kind       string `json:"kind"` // bus | stall | kiosk
	Merchant   string `json:"merchant"`
	KeyVersion uint32 `json:"key_version"`
	Blocked    bool   `json:"blocked"`
}

// OpenAccount is the body of POST /v1/accounts. Money in fen.
type OpenAccount struct {
	Inst    terminals.Instrument `json:"inst"`
	Class   int                  `json:"class,omitempty"` // e-CNY wallet class 1..4
	Floor   int64                `json:"floor"`
	Balance int64                `json:"balance"`
	Ref     string               `json:"ref"`
}

// Account is the operator view of an account. Money in fen.
type Account struct {
	Account   string `json:"account"` // kind:id
	Balance   int64  `json:"balance"`
	Held      int64  `json:"held"`
	Available int64  `json:"available"`
	Blocked   bool   `json:"blocked"`
	Class     int    `json:"class,omitempty"`
	// Debt is the transit debt a county card owes (offline taps its
	// balance could not cover); a top-up pays it first.
	Debt int64 `json:"debt"`
	// DebtPaid is, in a top-up's answer, the part of the top-up that paid
	// the card's debt (a retried ref answers the same); 0 in other answers.
	DebtPaid int64 `json:"debt_paid"`
}

// APIError is a non-2xx answer. Code is the catalogue code when the gateway
// sent one ("" otherwise).
type APIError struct {
	Method string
	Path   string
	Status int
	Code   terminals.Code
	Name   string
	Msg    string
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s %s: HTTP %d: %s %s: %s", e.Method, e.Path, e.Status, e.Code, e.Name, e.Msg)
	}
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Msg)
}

// IsStatus reports whether err is an *APIError with HTTP status code.
func IsStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}

// IsCode reports whether err is an *APIError carrying result code c.
func IsCode(err error, c terminals.Code) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == c
}

// Client talks to one gateway.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client for the API at base (e.g. http://127.0.0.1:18080).
// hc nil uses a client with DefaultTimeout.
func New(base, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, hc: hc}
}

// RegisterTerminal registers t. A terminal that already exists (HTTP 409)
// is read back instead, so that provisioning is idempotent across runs.
func (c *Client) RegisterTerminal(ctx context.Context, t Terminal) (Terminal, error) {
	var out Terminal
	err := c.do(ctx, http.MethodPost, "/v1/terminals", t, &out)
	if IsStatus(err, http.StatusConflict) {
		return c.Terminal(ctx, t.TID)
	}
	return out, err
}

// Terminal reads one terminal.
func (c *Client) Terminal(ctx context.Context, tid string) (Terminal, error) {
	var out Terminal
	err := c.do(ctx, http.MethodGet, "/v1/terminals/"+url.PathEscape(tid), nil, &out)
	return out, err
}

// OpenAccount opens an account. created is false when the account already
// existed (HTTP 409) and was read back; its balance is then whatever the
// gateway holds, not a.Balance.
func (c *Client) OpenAccount(ctx context.Context, a OpenAccount) (acct Account, created bool, err error) {
	err = c.do(ctx, http.MethodPost, "/v1/accounts", a, &acct)
	if IsStatus(err, http.StatusConflict) {
		acct, err = c.Account(ctx, a.Inst.Key())
		return acct, false, err
	}
	return acct, err == nil, err
}

// TopUp credits amt fen under the idempotency reference ref; the gateway
// pays a county card's transit debt first (the answer's DebtPaid) and
// credits the rest.
func (c *Client) TopUp(ctx context.Context, key string, amt int64, ref string) (Account, error) {
	var out Account
	body := struct {
		Amt int64  `json:"amt"`
		Ref string `json:"ref"`
	}{amt, ref}
	err := c.do(ctx, http.MethodPost, "/v1/accounts/"+url.PathEscape(key)+"/topup", body, &out)
	return out, err
}

// DenyLag is a bus reader whose reported deny-list version is behind
// (opwire.DenyLag).
type DenyLag = opwire.DenyLag

// DenyLagging is the answer of GET /v1/denylist/lagging (opwire.DenyLagging).
type DenyLagging = opwire.DenyLagging

// DenyLagging reads the registered bus readers behind the current deny-list version.
func (c *Client) DenyLagging(ctx context.Context) (DenyLagging, error) {
	var out DenyLagging
	err := c.do(ctx, http.MethodGet, "/v1/denylist/lagging", nil, &out)
	return out, err
}

// Block blocks or unblocks an account.
func (c *Client) Block(ctx context.Context, key string, blocked bool) (Account, error) {
	var out Account
	body := struct {
		Blocked bool `json:"blocked"`
	}{blocked}
	err := c.do(ctx, http.MethodPost, "/v1/accounts/"+url.PathEscape(key)+"/block", body, &out)
	return out, err
}

// Account reads one account by its key (kind:id).
func (c *Client) Account(ctx context.Context, key string) (Account, error) {
	var out Account
	err := c.do(ctx, http.MethodGet, "/v1/accounts/"+url.PathEscape(key), nil, &out)
	return out, err
}

// Ready reports nil when GET /readyz answers 2xx.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.raw(ctx, "/readyz", ResponseBytesMax)
	return err
}

// WaitReady polls /readyz every interval until it answers 2xx or ctx ends;
// the error then names the last failure so an operator sees why.
func (c *Client) WaitReady(ctx context.Context, interval time.Duration) error {
	var last error
	for {
		err := c.Ready(ctx)
		if err == nil {
			return nil
		}
		// Keep the last failure that says why, not the one the deadline
		// itself caused mid-request.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gateway at %s not ready: %w (last: %v)", c.base, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// Metrics reads /metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	return c.raw(ctx, "/metrics", MetricsBytesMax)
}

// ParseMetrics sums the samples of each metric family by name (labels
// dropped) from Prometheus text exposition; _bucket series are skipped.
// float64 is right here: these are counters and gauges, never money.
func ParseMetrics(text []byte) map[string]float64 {
	out := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasSuffix(name, "_bucket") {
			continue
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}

func (c *Client) raw(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &APIError{Method: http.MethodGet, Path: path, Status: resp.StatusCode, Msg: strings.TrimSpace(string(b))}
	}
	return b, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, ResponseBytesMax+1))
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if len(b) > ResponseBytesMax {
		return fmt.Errorf("%s %s: response larger than %d bytes", method, path, ResponseBytesMax)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		var coded struct {
			Code  terminals.Code `json:"code"`
			Name  string         `json:"name"`
			Error string         `json:"error"`
		}
		if json.Unmarshal(b, &coded) == nil && (coded.Code != "" || coded.Error != "") {
			e.Code, e.Name, e.Msg = coded.Code, coded.Name, coded.Error
		} else {
			e.Msg = strings.TrimSpace(string(b))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}
