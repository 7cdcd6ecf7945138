package market

import (
	"crypto/hmac"
	"crypto/sha256"
)

// IssuerKey derives the consumer payment code issuer key of version keyID
// from the bank's master key, the way confstore.SigningKey derives the
// config-signing key: HMAC-SHA256(master, "scenepay/paycode-issuer/v1|" +
// decimal keyID). The wallet app's backend holds the same derivation, so
// the gateway needs no second secret, and a separate domain keeps the
// issuer key distinct from terminal and config keys.
func IssuerKey(master []byte, keyID uint8) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("scenepay/paycode-issuer/v1|"))
	var d [3]byte
	n := len(appendDec(d[:0], keyID))
	m.Write(d[:n])
	return m.Sum(nil)
}

func appendDec(b []byte, v uint8) []byte {
	if v >= 100 {
		b = append(b, '0'+v/100)
	}
	if v >= 10 {
		b = append(b, '0'+v/10%10)
	}
	return append(b, '0'+v%10)
}

// CodeAccount reads the account key a consumer code claims to be bound to,
// WITHOUT verifying it. The gateway uses it only to route the code to the
// shard that owns the account; the shard then verifies the MAC before
// anything touches the ledger, so a forged code routed anywhere is refused
// there. ok is false for anything that is not an SPC1 code.
func CodeAccount(code string) (account string, ok bool) {
	if len(code) <= len(CodePrefix) || code[:len(CodePrefix)] != CodePrefix {
		return "", false
	}
	var buf [maxPayload]byte
	n := decodeB32(buf[:], code[len(CodePrefix):])
	if n < payloadHead+1+tagLen {
		return "", false
	}
	alen := int(buf[18])
	if alen == 0 || alen > MaxAccountKeyLen || n != payloadHead+alen+tagLen {
		return "", false
	}
	return string(buf[payloadHead : payloadHead+alen]), true
}

// MaxCodeLen is the longest consumer code: the prefix and base32 of the
// longest payload.
const MaxCodeLen = len(CodePrefix) + (maxPayload*8+4)/5

// TagLen is the length of a code's tag, its identity in the used set.
const TagLen = tagLen

// Mark records a used code by its tag and expiry (Unix seconds) at now:
// replay of a journaled payment, which carries the tag and expiry rather
// than the code. It refuses a tag already present (ErrCodeReused) and a
// set full of live codes (ErrUsedFull), like Add.
func (u *UsedCodes) Mark(tag [tagLen]byte, exp, now int64) error {
	if u.Seen(tag) {
		return ErrCodeReused
	}
	if !u.Room(now) {
		return ErrUsedFull
	}
	u.ring[(u.head+u.n)%len(u.ring)] = usedEntry{tag: tag, exp: exp}
	u.n++
	u.idx[tag] = struct{}{}
	return nil
}
