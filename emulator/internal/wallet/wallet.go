// Package wallet owns the consumer side of the market scene's dynamic
// payment codes: what the bank's wallet app on a customer's phone does when
// it shows a code for a stall terminal to scan (docs/protocol.md section 15).
//
// A code binds one ledger account ("kind:id") to an issue time and a nonce
// under the issuer key, which is derived from the bank's master key the way
// the gateway derives it (HMAC-SHA256(master, "scenepay/paycode-issuer/v1|"
// + decimal key id)), so the gateway verifies what the emulator issues with
// no second secret. The format ("SPC1" + unpadded RFC 4648 base32 of the
// payload) is the gateway's; this package cannot import the gateway, so its
// test recomputes the worked example of the protocol document.
package wallet

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"strconv"
	"time"
)

// Code format constants (version 1).
const (
	Prefix = "SPC1"
	// AccountKeyMax is the longest account key a code may carry.
	AccountKeyMax = 32
	tagLen        = 16
	payloadHead   = 19
	macDomain     = "scenepay/paycode/v1|"
)

// Class is the verification the app performed before showing the code
// (PBoC barcode payment risk classes; D, static codes, is not issued here).
type Class uint8

// Classes of dynamic codes.
const (
	ClassA Class = 1
	ClassB Class = 2
	ClassC Class = 3
)

// Errors of Issue.
var (
	ErrAccount = errors.New("wallet: account key must be 1..32 bytes")
	ErrClass   = errors.New("wallet: class must be A, B or C")
)

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// IssuerKey derives the issuer key of version keyID from the master key.
func IssuerKey(master []byte, keyID uint8) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("scenepay/paycode-issuer/v1|"))
	m.Write(strconv.AppendUint(nil, uint64(keyID), 10))
	return m.Sum(nil)
}

// Issue makes the code for account, as the wallet app shows it.
func Issue(key []byte, keyID uint8, account string, class Class, at time.Time, nonce uint64) (string, error) {
	if len(account) == 0 || len(account) > AccountKeyMax {
		return "", ErrAccount
	}
	if class < ClassA || class > ClassC {
		return "", ErrClass
	}
	p := make([]byte, 0, payloadHead+AccountKeyMax+tagLen)
	p = append(p, keyID, byte(class))
	p = binary.BigEndian.AppendUint64(p, uint64(at.Unix()))
	p = binary.BigEndian.AppendUint64(p, nonce)
	p = append(p, byte(len(account)))
	p = append(p, account...)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macDomain))
	m.Write(p)
	p = append(p, m.Sum(nil)[:tagLen]...)
	return Prefix + enc.EncodeToString(p), nil
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
// SPC1 code (wrong prefix, bad base32, impossible lengths).
func Decode(code string) (Info, bool) {
	if len(code) <= len(Prefix) || len(code) > len(Prefix)+enc.EncodedLen(payloadHead+AccountKeyMax+tagLen) ||
		code[:len(Prefix)] != Prefix {
		return Info{}, false
	}
	p, err := enc.DecodeString(code[len(Prefix):])
	if err != nil || len(p) < payloadHead+1+tagLen {
		return Info{}, false
	}
	n := int(p[18])
	if n == 0 || n > AccountKeyMax || len(p) != payloadHead+n+tagLen {
		return Info{}, false
	}
	// Canonical form only: re-encoding must give the same text (no
	// non-zero pad bits), as the gateway's decoder requires.
	if Prefix+enc.EncodeToString(p) != code {
		return Info{}, false
	}
	return Info{KeyID: p[0], Class: Class(p[1]), At: int64(binary.BigEndian.Uint64(p[2:10])),
		Nonce: binary.BigEndian.Uint64(p[10:18]), Account: string(p[payloadHead : payloadHead+n])}, true
}
