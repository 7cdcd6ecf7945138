package market

import (
	"errors"

	"scenepay/terminals"
)

// Result codes of this scene, from the catalogue (terminals/codes.json).
const (
	CodePayCodeInvalid = terminals.CodePayCodeInvalid
	CodePayCodeExpired = terminals.CodePayCodeExpired
	CodePayCodeReused  = terminals.CodePayCodeReused
	CodeRemoteStatic   = terminals.CodeRemoteStatic
	CodeRefundExceeds  = terminals.CodeRefundExceeds
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
