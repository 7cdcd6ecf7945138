package market

import "scenepay/terminals"

// IssuerKey derives the consumer payment code issuer key of version keyID
// from the bank's master key (terminals.PayCodeIssuerKey), the way
// confstore.SigningKey derives the config-signing key:
// HMAC-SHA256(master, "scenepay/paycode-issuer/v1|" + decimal keyID).
func IssuerKey(master []byte, keyID uint8) []byte { return terminals.PayCodeIssuerKey(master, keyID) }

// CodeAccount reads the account key a consumer code claims to be bound to,
// WITHOUT verifying it. The gateway uses it only to route the code to the
// shard that owns the account; the shard then verifies the MAC before
// anything touches the ledger, so a forged code routed anywhere is refused
// there. ok is false for anything that is not an SPC1 code.
func CodeAccount(code string) (account string, ok bool) {
	pc, ok := terminals.DecodePayCode(code)
	if !ok {
		return "", false
	}
	return pc.Account(), true
}

// MaxCodeLen is the longest consumer code: the prefix and base32 of the
// longest payload.
const MaxCodeLen = len(CodePrefix) + (terminals.PayCodePayloadMax*8+4)/5

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
