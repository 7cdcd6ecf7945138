// Package wallet owns the consumer side of the market scene's dynamic
// payment codes: what the bank's wallet app on a customer's phone does when
// it shows a code for a stall terminal to scan (docs/protocol.md section 15).
//
// A code binds one ledger account ("kind:id") to an issue time and a nonce
// under the issuer key (terminals.PayCodeIssuerKey of the bank's master
// key), so the gateway verifies what the emulator issues with no second
// secret. The format ("SPC1" + unpadded RFC 4648 base32 of the payload) is
// the wire contract's, terminals/paycode.go, which the gateway's verifier
// uses too.
package wallet

import (
	"time"

	"scenepay/terminals"
)

// Code format constants (version 1).
const (
	Prefix = terminals.PayCodePrefix
	// AccountKeyMax is the longest account key a code may carry.
	AccountKeyMax = terminals.PayCodeAccountMax
)

// Class is the verification the app performed before showing the code
// (PBoC barcode payment risk classes; D, static codes, is not issued here).
type Class = terminals.PayClass

// Classes of dynamic codes.
const (
	ClassA = terminals.PayClassA
	ClassB = terminals.PayClassB
	ClassC = terminals.PayClassC
)

// Errors of Issue.
var (
	ErrAccount = terminals.ErrPayCodeAccount
	ErrClass   = terminals.ErrPayCodeClass
)

// IssuerKey derives the issuer key of version keyID from the master key.
func IssuerKey(master []byte, keyID uint8) []byte { return terminals.PayCodeIssuerKey(master, keyID) }

// Issue makes the code for account, as the wallet app shows it.
func Issue(key []byte, keyID uint8, account string, class Class, at time.Time, nonce uint64) (string, error) {
	return terminals.IssuePayCode(key, keyID, account, class, at, nonce)
}

// Info is what a code says about itself, read without verifying it.
type Info struct {
	KeyID   uint8
	Class   Class
	At      int64 // issue time, Unix seconds
	Nonce   uint64
	Account string
}

// Decode reads a code's fields WITHOUT verifying its tag: the emulator's
// ledger uses it to learn which account a qr_pay the stall sent without
// "inst" was drawn on. ok is false for anything that is not a well-formed
// SPC1 code (terminals.DecodePayCode).
func Decode(code string) (Info, bool) {
	pc, ok := terminals.DecodePayCode(code)
	if !ok {
		return Info{}, false
	}
	return Info{KeyID: pc.KeyID, Class: pc.Class, At: pc.IssuedAt, Nonce: pc.Nonce, Account: pc.Account()}, true
}
