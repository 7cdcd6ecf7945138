package market

import (
	"errors"

	"scenepay/terminals"
)

// Result codes that terminals/codes.json does not have yet. They are local
// constants so that this package compiles and is testable; the catalogue
// owner decides the final values.
const (
	// TODO(codes.json): PAYCODE_INVALID, decline, HTTP 422: the consumer
	// payment code does not verify (MAC under the issuer key, unknown key,
	// issue time in the future).
	CodePayCodeInvalid terminals.Code = "C1"
	// TODO(codes.json): PAYCODE_EXPIRED, decline, HTTP 422: the consumer
	// payment code is older than its lifetime; the customer refreshes it.
	CodePayCodeExpired terminals.Code = "C2"
	// TODO(codes.json): PAYCODE_REUSED, decline, HTTP 409: the consumer
	// payment code was already used for a payment (single use).
	CodePayCodeReused terminals.Code = "C3"
	// TODO(codes.json): QR_REMOTE_REFUSED, decline, HTTP 403: a static
	// personal code (or a screenshot of a dynamic one) may not collect a
	// remote, non-face-to-face payment (PBoC notice 259).
	CodeRemoteStatic terminals.Code = "C4"
	// TODO(codes.json): REFUND_EXCEEDS, decline, HTTP 422: the refund is
	// larger than what remains refundable on the original payment.
	CodeRefundExceeds terminals.Code = "C5"
)

// Decline is a coded refusal returned as an error value. Declines are
// preallocated package variables (no allocation on the hot path); compare
// them with errors.Is or read the code with CodeOf.
type Decline struct {
	Code   terminals.Code
	Reason string
}

func (d *Decline) Error() string {
	return "market: " + string(d.Code) + " " + d.Code.Name() + ": " + d.Reason
}

// CodeOf returns the result code of a Decline, CodeApproved for nil and
// CodeSystemError for any other error (a fault, not a decision).
func CodeOf(err error) terminals.Code {
	if err == nil {
		return terminals.CodeApproved
	}
	var d *Decline
	if errors.As(err, &d) {
		return d.Code
	}
	return terminals.CodeSystemError
}

// The declines of this package, one per reason.
var (
	ErrInvalidAmount    = &Decline{terminals.CodeInvalidAmount, "amount is zero, negative or would overflow"}
	ErrCodeMalformed    = &Decline{terminals.CodeMalformed, "payment code is not a SPC1 code"}
	ErrCodeBadMAC       = &Decline{CodePayCodeInvalid, "payment code MAC does not verify"}
	ErrCodeUnknownKey   = &Decline{CodePayCodeInvalid, "payment code names an unknown issuer key"}
	ErrCodeFuture       = &Decline{CodePayCodeInvalid, "payment code issued in the future"}
	ErrCodeExpired      = &Decline{CodePayCodeExpired, "payment code expired"}
	ErrCodeReused       = &Decline{CodePayCodeReused, "payment code already used"}
	ErrUsedFull         = &Decline{terminals.CodeBusy, "used-code set full of live codes"}
	ErrDailyLimit       = &Decline{terminals.CodeLimitDaily, "PBoC QR class daily limit"}
	ErrRemoteStatic     = &Decline{CodeRemoteStatic, "static personal code used for remote collection"}
	ErrUnknownStallCode = &Decline{terminals.CodeUnknownInstrument, "unknown stall code"}
	ErrBadClass         = &Decline{terminals.CodeMalformed, "verification class must be A, B or C"}
	ErrPaymentExists    = &Decline{terminals.CodeIDConflict, "payment id already recorded"}
	ErrPaymentUnknown   = &Decline{terminals.CodeOriginalNotFound, "original payment not found (unknown or evicted)"}
	ErrRefundExceeds    = &Decline{CodeRefundExceeds, "refund exceeds what remains refundable"}
	ErrRefundConflict   = &Decline{terminals.CodeIDConflict, "refund id reused with another amount"}
	ErrRefundsFull      = &Decline{terminals.CodeBusy, "too many refunds on one payment"}
	ErrFieldTooLong     = &Decline{terminals.CodeMalformed, "identifier empty or longer than MaxIDLen"}
)
