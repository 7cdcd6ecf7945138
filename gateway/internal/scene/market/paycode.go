package market

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"
)

// Consumer payment code format (version 1, "SPC1").
//
//	"SPC1" + base32(payload)    RFC 4648 alphabet, upper case, no padding:
//	                            QR alphanumeric mode encodes it densely
//	payload:
//	  off size field
//	    0    1 issuer key id (the wallet app's key version)
//	    1    1 class: verification the app performed (1 A, 2 B, 3 C)
//	    2    8 issue time, Unix seconds, big endian
//	   10    8 nonce, big endian (random per code, chosen by the app)
//	   18    1 length of the account key (1..MaxAccountKeyLen)
//	   19    n account key (card token or wallet id)
//	 19+n   16 tag = HMAC-SHA256(issuer key, "scenepay/paycode/v1|" + bytes 0..19+n)[:16]
//
// The 128-bit tag authenticates the code and is its identity in the
// used-code set. A code is at most 112 characters.
const (
	CodePrefix       = "SPC1"
	MaxAccountKeyLen = 32
	tagLen           = 16
	payloadHead      = 19
	maxPayload       = payloadHead + MaxAccountKeyLen + tagLen
	macDomain        = "scenepay/paycode/v1|"
)

// Class is a PBoC barcode payment risk class (A strongest .. D static).
type Class uint8

const (
	ClassA Class = 1 // certificate or e-signature plus another factor
	ClassB Class = 2 // two or more factors
	ClassC Class = 3 // single factor
	ClassD Class = 4 // static code, whatever the verification
)

func (c Class) String() string {
	if c >= ClassA && c <= ClassD {
		return string(rune('A' + c - 1))
	}
	return "?"
}

// ParseClass reads "A".."D".
func ParseClass(s string) (Class, bool) {
	if len(s) == 1 && s[0] >= 'A' && s[0] <= 'D' {
		return Class(s[0]-'A') + 1, true
	}
	return 0, false
}

// PayCode is a decoded, verified consumer payment code.
type PayCode struct {
	KeyID    uint8
	Class    Class
	IssuedAt int64 // Unix seconds
	Nonce    uint64
	Tag      [tagLen]byte
	// The account key is kept inline so that Verify does not allocate.
	acct    [MaxAccountKeyLen]byte
	acctLen uint8
}

// Account is the account key (card token or wallet id) the code is bound to.
func (p *PayCode) Account() string { return string(p.acct[:p.acctLen]) }

// AccountIs reports whether the code is bound to account, without allocating.
func (p *PayCode) AccountIs(account string) bool { return string(p.acct[:p.acctLen]) == account }

// macDomainBytes is the MAC domain separator, converted once.
var macDomainBytes = []byte(macDomain)

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

// Issue makes a consumer payment code, as the bank's wallet app does. It is
// used by the emulator and the tests; the gateway only verifies.
func Issue(key []byte, keyID uint8, account string, class Class, issuedAt time.Time, nonce uint64) (string, error) {
	if len(account) == 0 || len(account) > MaxAccountKeyLen {
		return "", ErrFieldTooLong
	}
	if class < ClassA || class > ClassC {
		return "", ErrBadClass
	}
	p := make([]byte, 0, maxPayload)
	p = append(p, keyID, byte(class))
	p = binary.BigEndian.AppendUint64(p, uint64(issuedAt.Unix()))
	p = binary.BigEndian.AppendUint64(p, nonce)
	p = append(p, byte(len(account)))
	p = append(p, account...)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macDomain))
	m.Write(p)
	p = append(p, m.Sum(nil)[:tagLen]...)
	return string(appendB32([]byte(CodePrefix), p)), nil
}

// Verifier checks consumer payment codes under the issuer keys. It keeps
// one reusable HMAC per key so that verification does not allocate; it is
// owned by one shard writer and is not safe for concurrent use.
type Verifier struct {
	macs [256]hash.Hash
	sum  [sha256.Size]byte
	buf  [maxPayload]byte // decoded payload; here, not on the stack, because the MAC interface makes it escape
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
	var pc PayCode
	if len(code) <= len(CodePrefix) || code[:len(CodePrefix)] != CodePrefix {
		return pc, ErrCodeMalformed
	}
	buf := &v.buf
	n := decodeB32(buf[:], code[len(CodePrefix):])
	if n < payloadHead+1+tagLen {
		return pc, ErrCodeMalformed
	}
	alen := int(buf[18])
	if alen == 0 || alen > MaxAccountKeyLen || n != payloadHead+alen+tagLen {
		return pc, ErrCodeMalformed
	}
	pc.KeyID = buf[0]
	pc.Class = Class(buf[1])
	if pc.Class < ClassA || pc.Class > ClassC {
		return PayCode{}, ErrCodeMalformed
	}
	m := v.macs[pc.KeyID]
	if m == nil {
		return PayCode{}, ErrCodeUnknownKey
	}
	body := buf[:payloadHead+alen]
	m.Reset()
	m.Write(macDomainBytes)
	m.Write(body)
	sum := m.Sum(v.sum[:0])
	if !hmac.Equal(sum[:tagLen], buf[payloadHead+alen:n]) {
		return PayCode{}, ErrCodeBadMAC
	}
	pc.IssuedAt = int64(binary.BigEndian.Uint64(buf[2:10]))
	pc.Nonce = binary.BigEndian.Uint64(buf[10:18])
	copy(pc.Tag[:], buf[payloadHead+alen:n])
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
	pc.acctLen = uint8(copy(pc.acct[:], buf[payloadHead:payloadHead+alen]))
	return pc, nil
}

// Expiry is the Unix second after which pc can no longer verify, and so
// after which the used set may forget it.
func (r *Rules) Expiry(pc *PayCode) int64 { return pc.IssuedAt + r.lifetime }
