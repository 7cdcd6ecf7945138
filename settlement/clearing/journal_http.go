package clearing

// The journal side of reconciliation over HTTP. Each gateway serves its
// own journal totals of a period on its operator API
// (GET /v1/journal/totals?from=&to=, docs/operations.md); HTTPJournal asks
// every configured gateway for a window and sums their answers per
// merchant. A gateway that does not answer, answers with an error or
// answers something that does not verify makes the whole answer an error:
// a missing gateway means "not reconciled", never "this gateway took
// nothing", which would report every row it handed off as a difference
// (or, worse, hide a lost one).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"scenepay/internal/strictjson"
	"scenepay/settlement/store"
)

// JournalTotalsPath is the gateway operator API route of the journal totals.
const JournalTotalsPath = "/v1/journal/totals"

// JournalTotalsBytesMax bounds one gateway's answer (merchants are bounded
// by store.SettlementsPerWindowMax; a merchant line is under 300 bytes).
const JournalTotalsBytesMax = 32 << 20

// JournalMerchantsMax bounds the merchants in one gateway's answer.
const JournalMerchantsMax = store.SettlementsPerWindowMax

// WireTotals is store.Totals on the wire (fen and counts).
type WireTotals struct {
	Count         int64 `json:"count"`
	Gross         int64 `json:"gross_fen"`
	Payments      int64 `json:"payments"`
	Reversals     int64 `json:"reversals_fen"`
	ReversalCount int64 `json:"reversal_count"`
	Refunds       int64 `json:"refunds_fen"`
	RefundCount   int64 `json:"refund_count"`
	Net           int64 `json:"net_fen"`
}

// JournalTotalsBody is the JSON answer of GET /v1/journal/totals: the
// gateway's instance (the handoff's source), the period [from, to) as
// asked (RFC 3339, UTC) and the totals per merchant.
type JournalTotalsBody struct {
	Source    string                `json:"source"`
	From      time.Time             `json:"from"`
	To        time.Time             `json:"to"`
	Merchants map[string]WireTotals `json:"merchants"`
}

// WireOf converts store totals for the wire.
func WireOf(t store.Totals) WireTotals {
	return WireTotals{Count: t.Count, Gross: t.Gross, Payments: t.Payments, Reversals: t.Reversals,
		ReversalCount: t.ReversalCount, Refunds: t.Refunds, RefundCount: t.RefundCount, Net: t.Net}
}

// Totals converts wire totals back.
func (w WireTotals) Totals() store.Totals {
	return store.Totals{Count: w.Count, Gross: w.Gross, Payments: w.Payments, Reversals: w.Reversals,
		ReversalCount: w.ReversalCount, Refunds: w.Refunds, RefundCount: w.RefundCount, Net: w.Net}
}

// check verifies the invariants every honest answer keeps: signs, counts
// at least the rows they count, and net = gross + reversals + refunds.
func (w WireTotals) check() error {
	switch {
	case w.Count < 0 || w.Payments < 0 || w.ReversalCount < 0 || w.RefundCount < 0:
		return errors.New("negative count")
	case w.Gross < 0 || w.Reversals > 0 || w.Refunds > 0:
		return errors.New("gross negative or reversals/refunds positive")
	case w.Payments > w.Count || w.ReversalCount > w.Count || w.RefundCount > w.Count:
		return errors.New("a count above the row count")
	}
	n, err := add(w.Gross, w.Reversals)
	if err == nil {
		n, err = add(n, w.Refunds)
	}
	if err != nil || n != w.Net {
		return errors.New("net is not gross + reversals + refunds")
	}
	return nil
}

// DecodeJournalTotals decodes and checks one gateway's answer: strict JSON
// (unknown fields refused), a source, at most JournalMerchantsMax
// merchants with non-empty ids, and totals that add up.
func DecodeJournalTotals(b []byte) (JournalTotalsBody, error) {
	var body JournalTotalsBody
	if err := strictjson.Decode(b, &body); err != nil {
		return JournalTotalsBody{}, fmt.Errorf("journal totals: %w", err)
	}
	switch {
	case body.Source == "":
		return JournalTotalsBody{}, errors.New("journal totals: no source")
	case body.Merchants == nil:
		return JournalTotalsBody{}, errors.New("journal totals: no merchants object")
	case len(body.Merchants) > JournalMerchantsMax:
		return JournalTotalsBody{}, fmt.Errorf("journal totals: %d merchants, more than %d", len(body.Merchants), JournalMerchantsMax)
	}
	for m, t := range body.Merchants {
		if m == "" {
			return JournalTotalsBody{}, errors.New("journal totals: empty merchant id")
		}
		if err := t.check(); err != nil {
			return JournalTotalsBody{}, fmt.Errorf("journal totals: merchant %q: %w", m, err)
		}
	}
	return body, nil
}

// ErrJournalNotCovered is matched (errors.Is) by a GatewayError whose
// gateway no longer holds the whole window in its journal: reconciliation
// of that window against the journal is impossible, and retrying will not
// change that.
var ErrJournalNotCovered = errors.New("journal no longer covers the window")

// GatewayError is one gateway's failure to give its totals.
type GatewayError struct {
	Gateway string // base URL
	Status  int    // HTTP status; 0 when there was no answer
	Msg     string
	Err     error // transport or decode error
}

func (e *GatewayError) Error() string {
	s := "gateway " + e.Gateway + ": journal totals: "
	switch {
	case e.Err != nil:
		s += e.Err.Error()
	default:
		s += fmt.Sprintf("HTTP %d", e.Status)
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

func (e *GatewayError) Unwrap() error { return e.Err }

// Is matches ErrJournalNotCovered for a 410 Gone answer.
func (e *GatewayError) Is(target error) bool {
	return target == ErrJournalNotCovered && e.Status == http.StatusGone
}

// HTTPJournalConfig configures an HTTPJournal.
type HTTPJournalConfig struct {
	Gateways []string // base URLs of the gateways' operator APIs, e.g. http://gw1:18080
	Token    string   // operator bearer token (the same on every gateway)
	// Timeout bounds one gateway's answer (default 2 min: the gateway
	// reads its whole retained journal).
	Timeout time.Duration
	Client  *http.Client // nil: a client of its own
}

// HTTPJournal implements Journal by asking gateways over HTTP.
type HTTPJournal struct {
	cfg HTTPJournalConfig
}

// NewHTTPJournal checks cfg.
func NewHTTPJournal(cfg HTTPJournalConfig) (*HTTPJournal, error) {
	if len(cfg.Gateways) == 0 {
		return nil, errors.New("clearing: journal: no gateway configured")
	}
	if cfg.Token == "" {
		return nil, errors.New("clearing: journal: no operator token")
	}
	seen := map[string]bool{}
	for i, g := range cfg.Gateways {
		g = strings.TrimRight(strings.TrimSpace(g), "/")
		u, err := url.Parse(g)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("clearing: journal: gateway %q: want http(s)://host:port", cfg.Gateways[i])
		}
		if seen[g] {
			return nil, fmt.Errorf("clearing: journal: gateway %q named twice (its totals would count twice)", g)
		}
		seen[g] = true
		cfg.Gateways[i] = g
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	return &HTTPJournal{cfg: cfg}, nil
}

// Gateways returns the configured base URLs.
func (h *HTTPJournal) Gateways() []string { return append([]string(nil), h.cfg.Gateways...) }

// JournalTotals asks every gateway, concurrently, for its totals of
// [w.Start, w.CutOff) and sums them per merchant. Any failure fails the
// whole call (errors joined, one *GatewayError per failed gateway).
func (h *HTTPJournal) JournalTotals(ctx context.Context, w store.Window) (map[string]store.Totals, error) {
	bodies := make([]JournalTotalsBody, len(h.cfg.Gateways))
	errs := make([]error, len(h.cfg.Gateways))
	var wg sync.WaitGroup
	for i, g := range h.cfg.Gateways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i], errs[i] = h.ask(ctx, g, w.Start, w.CutOff)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := map[string]store.Totals{}
	sources := map[string]string{}
	for i, b := range bodies {
		if prev, dup := sources[b.Source]; dup {
			return nil, fmt.Errorf("clearing: journal: gateways %s and %s both answer as source %q", prev, h.cfg.Gateways[i], b.Source)
		}
		sources[b.Source] = h.cfg.Gateways[i]
		ids := make([]string, 0, len(b.Merchants))
		for m := range b.Merchants {
			ids = append(ids, m)
		}
		sort.Strings(ids)
		for _, m := range ids {
			t := out[m]
			if err := addTotals(&t, b.Merchants[m].Totals()); err != nil {
				return nil, fmt.Errorf("clearing: journal: merchant %s: %w", m, err)
			}
			out[m] = t
		}
	}
	return out, nil
}

// ask gets one gateway's totals of [from, to).
func (h *HTTPJournal) ask(ctx context.Context, gw string, from, to time.Time) (JournalTotalsBody, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	q := url.Values{"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, gw+JournalTotalsPath+"?"+q.Encode(), nil)
	if err != nil {
		return JournalTotalsBody{}, &GatewayError{Gateway: gw, Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+h.cfg.Token)
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return JournalTotalsBody{}, &GatewayError{Gateway: gw, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, JournalTotalsBytesMax+1))
	if err != nil {
		return JournalTotalsBody{}, &GatewayError{Gateway: gw, Status: resp.StatusCode, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := ""
		if json.Unmarshal(b, &e) == nil {
			msg = e.Error
		}
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return JournalTotalsBody{}, &GatewayError{Gateway: gw, Status: resp.StatusCode, Msg: msg}
	}
	if len(b) > JournalTotalsBytesMax {
		return JournalTotalsBody{}, &GatewayError{Gateway: gw, Status: resp.StatusCode, Err: fmt.Errorf("answer over %d bytes", JournalTotalsBytesMax)}
	}
	body, err := DecodeJournalTotals(b)
	if err != nil {
		return JournalTotalsBody{}, &GatewayError{Gateway: gw, Status: resp.StatusCode, Err: err}
	}
	if !body.From.Equal(from) || !body.To.Equal(to) {
		return JournalTotalsBody{}, &GatewayError{Gateway: gw, Status: resp.StatusCode,
			Err: fmt.Errorf("answered for [%s, %s), asked [%s, %s)", body.From, body.To, from, to)}
	}
	return body, nil
}
