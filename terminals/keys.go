package terminals

import (
	"crypto/hmac"
	"crypto/sha256"
	"strconv"
)

// KeyLen is the length of a terminal key in bytes.
const KeyLen = 32

// DeriveKey derives the MAC key of terminal tid at key version ver from the
// bank's master (base derivation) key:
//
//	K = HMAC-SHA256(master, "scenepay/terminal-key/v1|" + tid + "|" + decimal(ver))
//
// Keys are injected into a terminal at manufacture or provisioning; the gateway
// keeps only the master key and each terminal's current version, so a stolen
// terminal key exposes one terminal only, and rotation is a version bump.
func DeriveKey(master []byte, tid string, ver uint32) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("scenepay/terminal-key/v1|"))
	m.Write([]byte(tid))
	m.Write([]byte{'|'})
	m.Write(strconv.AppendUint(nil, uint64(ver), 10))
	return m.Sum(nil)
}
