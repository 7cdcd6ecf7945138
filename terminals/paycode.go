package terminals

// Consumer payment codes (docs/protocol.md section 15): what the bank's
// wallet app shows and a stall terminal scans and sends as the "code" of a
// qr_pay. The format belongs to the wire contract: the gateway verifies
// codes (its market scene adds the issuer keys, lifetime and single use),
// the emulator's wallets issue them, and a wallet vendor can implement it
// from this file.
//
// Format, version 1 ("SPC1"):
//
//	"SPC1" + base32(payload)    RFC 4648 alphabet, upper case, no padding:
//	                            QR alphanumeric mode encodes it densely
//	payload:
//	  off size field
//	    0    1 issuer key id (the wallet app's key version)
//	    1    1 class: verification the app performed (1 A, 2 B, 3 C)
//	    2    8 issue time, Unix seconds, big endian
//	   10    8 nonce, big endian (random per code, chosen by the app)
//	   18    1 length of the account key (1..PayCodeAccountMax)
//	   19    n account key (card token or wallet id, "kind:id")
//	 19+n   16 tag = HMAC-SHA256(issuer key, "scenepay/paycode/v1|" + bytes 0..19+n)[:16]
//
// The issuer key of version id is PayCodeIssuerKey(master, id). The 128-bit
// tag authenticates the code and is its identity in the gateway's used-code
// set. A code is at most MaxPayCodeLen (112) characters.
//
// Decoding is strict and reads the form only: the prefix, canonical base32
// (no other characters, no padding, no line breaks, zero pad bits) and
// lengths that agree. It does not check the tag, the key or the class:
// that is verification, which needs the issuer key.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"strconv"
	"time"
)

// Payment code format constants (version 1).
const (
	PayCodePrefix = "SPC1"
	// PayCodeAccountMax is the longest account key a code may carry.
	PayCodeAccountMax = 32
	// PayCodeTagLen is the length of a code's tag in bytes.
	PayCodeTagLen = 16
	// PayCodePayloadMax is the longest payload in bytes.
	PayCodePayloadMax = payCodeHead + PayCodeAccountMax + PayCodeTagLen
	payCodeHead       = 19
	payCodeMACDomain  = "scenepay/paycode/v1|"
)

// PayClass is a PBoC barcode payment risk class (A strongest .. D static):
// the verification the wallet app performed before showing the code.
// Consumer codes carry A, B or C.
type PayClass uint8

// Payment risk classes.
const (
	PayClassA PayClass = 1 // certificate or e-signature plus another factor
	PayClassB PayClass = 2 // two or more factors
	PayClassC PayClass = 3 // single factor
	PayClassD PayClass = 4 // static code, whatever the verification
)

func (c PayClass) String() string {
	if c >= PayClassA && c <= PayClassD {
		return string(rune('A' + c - 1))
	}
	return "?"
}

// ParsePayClass reads "A".."D".
func ParsePayClass(s string) (PayClass, bool) {
	if len(s) == 1 && s[0] >= 'A' && s[0] <= 'D' {
		return PayClass(s[0]-'A') + 1, true
	}
	return 0, false
}

// Errors of IssuePayCode.
var (
	ErrPayCodeAccount = errors.New("terminals: payment code account key must be 1..32 bytes")
	ErrPayCodeClass   = errors.New("terminals: payment code class must be A, B or C")
)

// PayCodeIssuerKey derives the issuer key of version keyID from the bank's
// master key, as DeriveKey derives terminal keys:
//
//	K = HMAC-SHA256(master, "scenepay/paycode-issuer/v1|" + decimal(keyID))
//
// The wallet app's backend holds the same derivation, so the gateway needs
// no second secret, and a separate domain keeps the issuer key distinct
// from terminal and config keys.
func PayCodeIssuerKey(master []byte, keyID uint8) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("scenepay/paycode-issuer/v1|"))
	var d [3]byte
	m.Write(strconv.AppendUint(d[:0], uint64(keyID), 10))
	return m.Sum(nil)
}

// PayCode is the content of a consumer payment code. Decoded, it is not
// verified: a verifier checks the tag under the issuer key.
type PayCode struct {
	KeyID    uint8
	Class    PayClass
	IssuedAt int64 // Unix seconds
	Nonce    uint64
	Tag      [PayCodeTagLen]byte
	// The account key is kept inline so that decoding does not allocate.
	acct    [PayCodeAccountMax]byte
	acctLen uint8
}

// Account is the account key (card token or wallet id) the code is bound to.
func (p *PayCode) Account() string { return string(p.acct[:p.acctLen]) }

// AccountIs reports whether the code is bound to account, without allocating.
func (p *PayCode) AccountIs(account string) bool { return string(p.acct[:p.acctLen]) == account }

// IssuePayCode makes a consumer payment code, as the bank's wallet app
// does: class A, B or C, an account key of 1..PayCodeAccountMax bytes.
func IssuePayCode(key []byte, keyID uint8, account string, class PayClass, issuedAt time.Time, nonce uint64) (string, error) {
	if len(account) == 0 || len(account) > PayCodeAccountMax {
		return "", ErrPayCodeAccount
	}
	if class < PayClassA || class > PayClassC {
		return "", ErrPayCodeClass
	}
	p := make([]byte, 0, PayCodePayloadMax)
	p = append(p, keyID, byte(class))
	p = binary.BigEndian.AppendUint64(p, uint64(issuedAt.Unix()))
	p = binary.BigEndian.AppendUint64(p, nonce)
	p = append(p, byte(len(account)))
	p = append(p, account...)
	var sum [sha256.Size]byte
	p = append(p, PayCodeTag(hmac.New(sha256.New, key), p, &sum)...)
	return string(appendB32([]byte(PayCodePrefix), p)), nil
}

// payCodeMACDomain as bytes, converted once.
var payCodeMACDomainBytes = []byte(payCodeMACDomain)

// PayCodeTag computes the tag of signed (the payload before the tag) with
// m, an HMAC-SHA256 under the issuer key, which it resets first; the tag is
// the first PayCodeTagLen bytes of sum. A verifier keeps m and sum to
// check codes without allocating.
func PayCodeTag(m hash.Hash, signed []byte, sum *[sha256.Size]byte) []byte {
	m.Reset()
	m.Write(payCodeMACDomainBytes)
	m.Write(signed)
	return m.Sum(sum[:0])[:PayCodeTagLen]
}

// PayCodePayload is a decoded payment code payload: the signed part, then
// the tag. Decode fills it; the other methods read a payload Decode
// accepted.
type PayCodePayload struct {
	b [PayCodePayloadMax]byte
	n uint8
}

// Decode reads code's payload, strictly (see the file comment), without
// verifying the tag; ok is false for anything that is not a well-formed
// SPC1 code.
func (p *PayCodePayload) Decode(code string) bool {
	p.n = 0
	if len(code) <= len(PayCodePrefix) || code[:len(PayCodePrefix)] != PayCodePrefix {
		return false
	}
	n := decodeB32(p.b[:], code[len(PayCodePrefix):])
	if n < payCodeHead+1+PayCodeTagLen {
		return false
	}
	alen := int(p.b[payCodeHead-1])
	if alen == 0 || alen > PayCodeAccountMax || n != payCodeHead+alen+PayCodeTagLen {
		return false
	}
	p.n = uint8(n)
	return true
}

// Signed is the part of the payload the tag covers.
func (p *PayCodePayload) Signed() []byte { return p.b[:int(p.n)-PayCodeTagLen] }

// Tag is the payload's tag as sent.
func (p *PayCodePayload) Tag() []byte { return p.b[int(p.n)-PayCodeTagLen : p.n] }

// KeyID is the issuer key id the code claims.
func (p *PayCodePayload) KeyID() uint8 { return p.b[0] }

// Code returns the payload's fields.
func (p *PayCodePayload) Code() PayCode {
	alen := int(p.b[payCodeHead-1])
	pc := PayCode{KeyID: p.b[0], Class: PayClass(p.b[1]),
		IssuedAt: int64(binary.BigEndian.Uint64(p.b[2:10])), Nonce: binary.BigEndian.Uint64(p.b[10:18])}
	copy(pc.Tag[:], p.Tag())
	pc.acctLen = uint8(copy(pc.acct[:], p.b[payCodeHead:payCodeHead+alen]))
	return pc
}

// DecodePayCode reads a code's fields WITHOUT verifying its tag (see
// PayCodePayload.Decode); ok is false for anything that is not a
// well-formed SPC1 code. It does not allocate.
func DecodePayCode(code string) (pc PayCode, ok bool) {
	var p PayCodePayload
	if !p.Decode(code) {
		return PayCode{}, false
	}
	return p.Code(), true
}

const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

var b32dec = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(b32); i++ {
		t[b32[i]] = byte(i)
	}
	return
}()

func appendB32(dst, src []byte) []byte {
	var acc uint32
	bits := 0
	for _, c := range src {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			dst = append(dst, b32[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		dst = append(dst, b32[(acc<<(5-bits))&31])
	}
	return dst
}

// decodeB32 decodes s into dst and returns the byte count, or -1 for a bad
// character, an impossible length, non-zero pad bits or overflow of dst.
func decodeB32(dst []byte, s string) int {
	var acc uint32
	bits, n := 0, 0
	for i := 0; i < len(s); i++ {
		v := b32dec[s[i]]
		if v == 0xff {
			return -1
		}
		acc = acc<<5 | uint32(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			if n == len(dst) {
				return -1
			}
			dst[n] = byte(acc >> bits)
			n++
		}
	}
	if bits >= 5 || acc&(1<<bits-1) != 0 { // canonical form only
		return -1
	}
	return n
}
