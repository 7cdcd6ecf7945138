package hospital

import (
	"errors"

	"scenepay/terminals"
)

// Result codes of this scene, from the catalogue (terminals/codes.json).
const (
	CodeDepositPaused = terminals.CodeDepositPaused
	CodeDepositClosed = terminals.CodeDepositClosed
)

// Decline is a coded refusal returned as an error value; the package
// declines are preallocated (no allocation on the hot path).
type Decline struct {
	Code   terminals.Code
	Reason string
}

func (d *Decline) Error() string { return "hospital: " + string(d.Code) + ": " + d.Reason }

// CodeOf returns the code of a Decline, CodeApproved for nil and
// CodeSystemError for any other error.
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
	ErrInvalidAmount   = &Decline{terminals.CodeInvalidAmount, "amount is zero, negative or would overflow"}
	ErrUnknownItem     = &Decline{terminals.CodeMalformed, "unknown pay-first item type"}
	ErrItemAmount      = &Decline{terminals.CodeInvalidAmount, "amount outside the item type's price"}
	ErrSplitNegative   = &Decline{terminals.CodeInvalidAmount, "insurance split has a negative leg"}
	ErrSplitSum        = &Decline{terminals.CodeInvalidAmount, "insurance split does not sum to the bill"}
	ErrFieldTooLong    = &Decline{terminals.CodeMalformed, "identifier empty or longer than MaxIDLen"}
	ErrDepositExists   = &Decline{terminals.CodeIDConflict, "deposit already open"}
	ErrDepositClosed   = &Decline{CodeDepositClosed, "deposit discharged or expired"}
	ErrDepositNotOpen  = &Decline{terminals.CodeOriginalNotFound, "no open deposit"}
	ErrDepositBelowMin = &Decline{terminals.CodeInvalidAmount, "deposit or top-up below the minimum"}
	ErrDepositAboveMax = &Decline{terminals.CodeInvalidAmount, "deposit would exceed its maximum"}
	ErrLegsFull        = &Decline{terminals.CodeBusy, "deposit already has LegsMax holds"}
	ErrLegConflict     = &Decline{terminals.CodeIDConflict, "hold txn already used with another amount"}
	ErrOrderConflict   = &Decline{terminals.CodeIDConflict, "service order id reused with another amount"}
	ErrPaused          = &Decline{CodeDepositPaused, "deposit below the pause threshold: non-emergency orders paused"}
	ErrInsufficient    = &Decline{terminals.CodeInsufficientFunds, "order exceeds the remaining deposit"}
	ErrStalePlan       = &Decline{terminals.CodeSystemError, "plan was made for another state of the deposit"}
)
