package opwire

import "scenepay/terminals"

// StallCode is the operator view of a registered stall code: the answer of
// POST /v1/stall-codes (201), GET /v1/stall-codes/{code} and POST
// /v1/stall-codes/{code}/revoke, and an item of a merchant's listing.
// Times are RFC 3339 UTC; money in fen.
type StallCode struct {
	Code          string `json:"code"` // the code's id, "SC…"
	TID           string `json:"tid"`
	Merchant      string `json:"merchant"`
	Dynamic       bool   `json:"dynamic"`
	Business      bool   `json:"business"`
	StallBusiness bool   `json:"stall_business"`
	Amount        int64  `json:"amount,omitempty"`
	ShownAt       string `json:"shown_at"`
	ExpiresAt     string `json:"expires_at,omitempty"`
	RevokedAt     string `json:"revoked_at,omitempty"`
	PaidBy        string `json:"paid_by,omitempty"`
	// State is live, paid (a used dynamic code), expired or revoked.
	State string `json:"state"`
}

// StallRefund is the body of POST
// /v1/stall-codes/{code}/payments/{payment}/refunds: amount fen of the
// approved payment back to the paying account.
type StallRefund struct {
	Amount int64  `json:"amount"`
	ID     string `json:"id"` // the refund's own idempotency id
}

// StallDecision is the gateway's stored answer to a wallet's payment
// through a stall code or to a refund of one (Payment names the payment a
// refund is of): the engine journals these bytes and answers every repeat
// under the same id with them, with the HTTP status of Code.
type StallDecision struct {
	ID        string         `json:"id"`
	Payment   string         `json:"payment,omitempty"` // a refund: the wallet's id of the payment refunded
	StallCode string         `json:"stall_code"`
	Code      terminals.Code `json:"code"`
	Name      string         `json:"name"`
	Account   string         `json:"account"`
	Amount    int64          `json:"amount"`
	Class     string         `json:"class,omitempty"`
	Merchant  string         `json:"merchant"`
	TID       string         `json:"tid"`
	Txn       uint64         `json:"txn"`
	Auth      string         `json:"auth,omitempty"`
	At        string         `json:"at"`
}
