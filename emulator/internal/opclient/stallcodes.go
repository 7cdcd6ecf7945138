package opclient

// The wallet backend's side of merchant-presented stall codes
// (docs/operations.md "Stall codes", docs/protocol.md section 18): the
// operator registers a code for a stall terminal; the bank's wallet
// backend reports a customer's payment through it, and refunds it, each
// under its own idempotency id, over HTTP.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// StallCodeSpec is the body of POST /v1/stall-codes. A static code has no
// Amount or TTLSeconds; a dynamic one has both. Money in fen.
type StallCodeSpec struct {
	TID           string `json:"tid"`
	Merchant      string `json:"merchant,omitempty"`
	Dynamic       bool   `json:"dynamic"`
	Business      bool   `json:"business"`
	StallBusiness bool   `json:"stall_business,omitempty"`
	Amount        int64  `json:"amount,omitempty"`
	TTLSeconds    int64  `json:"ttl_seconds,omitempty"`
}

// StallCode is the operator view of a registered stall code (the
// gateway's own shape, opwire.StallCode).
type StallCode = opwire.StallCode

// StallPayment is a wallet's report of a payment through a stall code.
// Amount 0 on a dynamic code pays the code's own amount; Verified is the
// payer's class in the wallet (A, B or C; "" = C).
type StallPayment struct {
	Account  string `json:"account"`
	Amount   int64  `json:"amount"`
	ID       string `json:"id"`
	Verified string `json:"verified,omitempty"`
	Remote   bool   `json:"remote,omitempty"`
}

// StallDecision is the gateway's stored answer to a payment or a refund
// (opwire.StallDecision; Payment names the payment a refund is of). Replay
// is set when the answer came with X-Idempotent-Replay: the stored bytes of
// an earlier call under the same id; Raw holds the body as received.
type StallDecision struct {
	opwire.StallDecision
	Replay bool   `json:"-"`
	Raw    []byte `json:"-"`
}

// RegisterStallCode registers a stall code (201).
func (c *Client) RegisterStallCode(ctx context.Context, s StallCodeSpec) (StallCode, error) {
	var out StallCode
	err := c.do(ctx, http.MethodPost, "/v1/stall-codes", s, &out)
	return out, err
}

// StallCode reads one stall code.
func (c *Client) StallCode(ctx context.Context, code string) (StallCode, error) {
	var out StallCode
	err := c.do(ctx, http.MethodGet, "/v1/stall-codes/"+url.PathEscape(code), nil, &out)
	return out, err
}

// PayStallCode reports a wallet payment through code. A decision the
// gateway stored (an approval or a ledger decline, whatever its HTTP
// status) is returned with a nil error; a refusal found before the ledger
// (unknown, revoked, used or expired code, wrong amount, ID_CONFLICT) is an
// *APIError; a transport failure is any other error, after which the
// caller retries under the same id.
func (c *Client) PayStallCode(ctx context.Context, code string, p StallPayment) (StallDecision, error) {
	return c.stallDecision(ctx, "/v1/stall-codes/"+url.PathEscape(code)+"/payments", p)
}

// RefundStallPayment refunds amount fen of the approved payment with the
// wallet id payment through code, under the refund's own id; answered as
// PayStallCode.
func (c *Client) RefundStallPayment(ctx context.Context, code, payment string, amount int64, id string) (StallDecision, error) {
	body := opwire.StallRefund{Amount: amount, ID: id}
	return c.stallDecision(ctx, "/v1/stall-codes/"+url.PathEscape(code)+"/payments/"+url.PathEscape(payment)+"/refunds", body)
}

// stallDecision posts in to path and reads a stored decision (any status
// whose body is one) or a coded refusal.
func (c *Client) stallDecision(ctx context.Context, path string, in any) (StallDecision, error) {
	var out StallDecision
	b, err := json.Marshal(in)
	if err != nil {
		return out, fmt.Errorf("POST %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, ResponseBytesMax+1))
	if err != nil {
		return out, fmt.Errorf("POST %s: read: %w", path, err)
	}
	if len(raw) > ResponseBytesMax {
		return out, fmt.Errorf("POST %s: response larger than %d bytes", path, ResponseBytesMax)
	}
	var probe struct {
		ID    string         `json:"id"`
		Code  terminals.Code `json:"code"`
		Name  string         `json:"name"`
		Error string         `json:"error"`
	}
	if json.Unmarshal(raw, &probe) != nil || probe.ID == "" {
		// Not a stored decision: a coded refusal or a bare error.
		e := &APIError{Method: http.MethodPost, Path: path, Status: resp.StatusCode}
		if probe.Code != "" || probe.Error != "" {
			e.Code, e.Name, e.Msg = probe.Code, probe.Name, probe.Error
		} else {
			e.Msg = strings.TrimSpace(string(raw))
		}
		if resp.StatusCode/100 == 2 {
			e.Msg = "a success without a decision: " + e.Msg
		}
		return out, e
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("POST %s: decode: %w", path, err)
	}
	if want := out.Code.HTTPStatus(); want != resp.StatusCode {
		return out, fmt.Errorf("POST %s: decision %s came with HTTP %d, not %d", path, out.Code, resp.StatusCode, want)
	}
	out.Replay = resp.Header.Get("X-Idempotent-Replay") == "true"
	out.Raw = bytes.TrimRight(raw, "\n")
	return out, nil
}

// IsTransport reports whether err is a failure to get any answer (the call
// may or may not have been applied), as opposed to an answer from the API.
func IsTransport(err error) bool {
	var e *APIError
	return err != nil && !errors.As(err, &e)
}
