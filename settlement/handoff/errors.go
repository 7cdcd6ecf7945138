package handoff

import "fmt"

// Code classifies a refused batch. Codes are stable strings so that the
// gateway can count refusals by code without parsing messages.
type Code string

const (
	// CodeMalformed: a field is missing, out of range or inconsistent.
	CodeMalformed Code = "MALFORMED"
	// CodePAN: an account or reference looks like a full card number.
	CodePAN Code = "PAN_REFUSED"
	// CodeOversize: the batch has more rows or bytes than the named bounds.
	CodeOversize Code = "OVERSIZE"
)

// Error is a coded refusal of a batch. Field names the offending field
// ("rows[3].amount"); the value itself is never echoed, because it may be
// a card number.
type Error struct {
	Code   Code
	Field  string
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("handoff: %s: %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("handoff: %s: %s: %s", e.Code, e.Field, e.Reason)
}

// Is matches any *Error with the same Code, so that callers can write
// errors.Is(err, handoff.ErrPAN).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrMalformed = &Error{Code: CodeMalformed, Reason: "malformed batch"}
	ErrPAN       = &Error{Code: CodePAN, Reason: "card number refused"}
	ErrOversize  = &Error{Code: CodeOversize, Reason: "batch too large"}
)

func malformed(field, reason string) error {
	return &Error{Code: CodeMalformed, Field: field, Reason: reason}
}
