package market

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"time"

	"scenepay/terminals"
)

// Consumer payment codes: the format (version 1, "SPC1") is part of the
// wire contract, terminals/paycode.go, which the emulator's wallets use
// too. This file keeps what only the gateway does: verification under the
// issuer keys, lifetime and single use.
const (
	CodePrefix       = terminals.PayCodePrefix
	MaxAccountKeyLen = terminals.PayCodeAccountMax
	tagLen           = terminals.PayCodeTagLen
)

// Class is a PBoC barcode payment risk class (A strongest .. D static).
type Class = terminals.PayClass

// Payment risk classes.
const (
	ClassA = terminals.PayClassA // certificate or e-signature plus another factor
	ClassB = terminals.PayClassB // two or more factors
	ClassC = terminals.PayClassC // single factor
	ClassD = terminals.PayClassD // static code, whatever the verification
)

// ParseClass reads "A".."D".
func ParseClass(s string) (Class, bool) { return terminals.ParsePayClass(s) }

// PayCode is a decoded, verified consumer payment code.
type PayCode = terminals.PayCode

// Issue makes a consumer payment code, as the bank's wallet app does. It is
// used by the tests; the gateway only verifies.
func Issue(key []byte, keyID uint8, account string, class Class, issuedAt time.Time, nonce uint64) (string, error) {
	code, err := terminals.IssuePayCode(key, keyID, account, class, issuedAt, nonce)
	switch err {
	case terminals.ErrPayCodeAccount:
		return "", ErrFieldTooLong
	case terminals.ErrPayCodeClass:
		return "", ErrBadClass
	}
	return code, err
}

// Verifier checks consumer payment codes under the issuer keys. It keeps
// one reusable HMAC per key so that verification does not allocate; it is
// owned by one shard writer and is not safe for concurrent use.
type Verifier struct {
	macs [256]hash.Hash
	sum  [sha256.Size]byte
	buf  terminals.PayCodePayload // decoded payload; here, not on the stack, because the MAC interface makes it escape
}

// NewVerifier builds a Verifier from issuer keys by key id.
func NewVerifier(keys map[uint8][]byte) *Verifier {
	v := &Verifier{}
	for id, k := range keys {
		v.macs[id] = hmac.New(sha256.New, k)
	}
	return v
}

// Verify decodes code and checks, in this order: form (ErrCodeMalformed),
// issuer key (ErrCodeUnknownKey), MAC (ErrCodeBadMAC), issue time not
// ahead of now by more than the skew (ErrCodeFuture), lifetime
// (ErrCodeExpired), single use (ErrCodeReused), and room in the used set
// (ErrUsedFull). It does not mark the code used: the caller calls
// used.Add(pc, ...) in the same step as the debit, once every other check
// has passed, so a decline (say a limit) does not burn the customer's code.
func (v *Verifier) Verify(r *Rules, used *UsedCodes, code string, now time.Time) (PayCode, error) {
	pl := &v.buf
	if !pl.Decode(code) {
		return PayCode{}, ErrCodeMalformed
	}
	pc := pl.Code()
	if pc.Class < ClassA || pc.Class > ClassC {
		return PayCode{}, ErrCodeMalformed
	}
	m := v.macs[pc.KeyID]
	if m == nil {
		return PayCode{}, ErrCodeUnknownKey
	}
	if !hmac.Equal(terminals.PayCodeTag(m, pl.Signed(), &v.sum), pl.Tag()) {
		return PayCode{}, ErrCodeBadMAC
	}
	t := now.Unix()
	switch {
	case pc.IssuedAt > t+r.skew:
		return PayCode{}, ErrCodeFuture
	case t-pc.IssuedAt >= r.lifetime:
		return PayCode{}, ErrCodeExpired
	}
	if used.Seen(pc.Tag) {
		return PayCode{}, ErrCodeReused
	}
	if !used.Room(t) {
		return PayCode{}, ErrUsedFull
	}
	return pc, nil
}

// Expiry is the Unix second after which pc can no longer verify, and so
// after which the used set may forget it.
func (r *Rules) Expiry(pc *PayCode) int64 { return pc.IssuedAt + r.lifetime }
