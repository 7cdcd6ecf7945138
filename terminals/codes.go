package terminals

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// Code is a two-character result code carried in every reply ("code" field).
// The catalogue in codes.json is the single source of meaning, class and
// HTTP status; the constants below must match it (see codes_test.go).
type Code string

// Result codes. Keep in step with codes.json and docs/protocol.md.
const (
	CodeApproved             Code = "00"
	CodeInvalidAmount        Code = "13"
	CodeUnknownInstrument    Code = "14"
	CodeOriginalNotFound     Code = "25"
	CodeInsufficientFunds    Code = "51"
	CodeLimitSingle          Code = "61"
	CodeInstrumentBlocked    Code = "62"
	CodeLimitDaily           Code = "65"
	CodeLimitAnnual          Code = "66"
	CodeLimitBalance         Code = "67"
	CodePayCodeInvalid       Code = "C1"
	CodePayCodeExpired       Code = "C2"
	CodePayCodeReused        Code = "C3"
	CodeRemoteStatic         Code = "C4"
	CodeRefundExceeds        Code = "C5"
	CodeStallCodeRevoked     Code = "C6"
	CodeOfflineCountExceeded Code = "E1"
	CodeDepositPaused        Code = "H1"
	CodeDepositClosed        Code = "H2"
	CodeIDConflict           Code = "94"
	CodeAlreadyReversed      Code = "95"
	CodeBadMAC               Code = "A1"
	CodeMalformed            Code = "A2"
	CodeOversize             Code = "A3"
	CodeReplay               Code = "A4"
	CodeClockSkew            Code = "A5"
	CodeUnknownTerminal      Code = "A6"
	CodeTerminalBlocked      Code = "A7"
	CodeIDMismatch           Code = "A8"
	CodeUnsupported          Code = "A9"
	CodeBusy                 Code = "91"
	CodeSystemError          Code = "96"
)

// Class groups codes by what happened.
//   - approved: the request took effect.
//   - decline: the authorization core refused it; the decision is journaled
//     and a duplicate gets the same reply, but a corrected retry may reuse the id.
//   - refusal: refused before the ledger (frame, MAC, replay, id conflict).
//   - fault: the gateway could not decide now; retry with the same id.
type Class string

const (
	ClassApproved Class = "approved"
	ClassDecline  Class = "decline"
	ClassRefusal  Class = "refusal"
	ClassFault    Class = "fault"
)

// CodeInfo is one catalogue entry.
type CodeInfo struct {
	Code    Code   `json:"code"`
	Name    string `json:"name"`
	Class   Class  `json:"class"`
	HTTP    int    `json:"http"`
	Retry   bool   `json:"retry"`
	Meaning string `json:"meaning"`
}

//go:embed codes.json
var codesJSON []byte

var (
	catalogue []CodeInfo
	byCode    = map[Code]*CodeInfo{}
)

func init() {
	if err := json.Unmarshal(codesJSON, &catalogue); err != nil {
		panic(fmt.Sprintf("terminals: codes.json: %v", err)) // programmer error: embedded data
	}
	for i := range catalogue {
		c := &catalogue[i]
		if _, dup := byCode[c.Code]; dup {
			panic(fmt.Sprintf("terminals: codes.json: duplicate code %q", c.Code))
		}
		byCode[c.Code] = c
	}
}

// Catalogue returns a copy of every code in catalogue order.
func Catalogue() []CodeInfo { return append([]CodeInfo(nil), catalogue...) }

// Info returns the catalogue entry of c.
func (c Code) Info() (CodeInfo, bool) {
	p, ok := byCode[c]
	if !ok {
		return CodeInfo{}, false
	}
	return *p, true
}

// Name is the catalogue name of c, or "UNKNOWN".
func (c Code) Name() string {
	if p, ok := byCode[c]; ok {
		return p.Name
	}
	return "UNKNOWN"
}

// Class is the catalogue class of c; unknown codes are faults.
func (c Code) Class() Class {
	if p, ok := byCode[c]; ok {
		return p.Class
	}
	return ClassFault
}

// HTTPStatus is the HTTP status that an API answering with c uses.
func (c Code) HTTPStatus() int {
	if p, ok := byCode[c]; ok {
		return p.HTTP
	}
	return 500
}

// Approved reports whether c is the approval code.
func (c Code) Approved() bool { return c == CodeApproved }
