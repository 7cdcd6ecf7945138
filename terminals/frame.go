package terminals

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// Frame layout of every v1 payload, in both directions:
//
//	body '\n' mac
//
// body is a JSON object (UTF-8, no newline inside), mac is the lowercase hex
// HMAC-SHA256 of the exact body bytes under the terminal's key (64 chars).
// The MAC is checked before the body is parsed, so nothing an attacker writes
// reaches the JSON decoder, let alone the ledger, without the key.
const (
	// MaxPayload is the largest payload accepted, frame included.
	MaxPayload = 4096
	// MACHexLen is the length of the hex MAC trailer.
	MACHexLen  = 2 * sha256.Size
	trailerLen = 1 + MACHexLen
)

// Split separates a payload into body and hex MAC without checking the MAC.
func Split(payload []byte) (body, macHex []byte, err error) {
	if len(payload) > MaxPayload {
		return nil, nil, &Error{Code: CodeOversize, Msg: "payload exceeds 4096 bytes"}
	}
	if len(payload) < trailerLen+2 {
		return nil, nil, &Error{Code: CodeMalformed, Msg: "payload too short for a frame"}
	}
	sep := len(payload) - trailerLen
	if payload[sep] != '\n' {
		return nil, nil, &Error{Code: CodeMalformed, Msg: "missing MAC separator"}
	}
	return payload[:sep], payload[sep+1:], nil
}

// Signer computes frame MACs under one key. It is not safe for concurrent use;
// keep one per goroutine or per terminal under a lock.
type Signer struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// NewSigner returns a Signer for key.
func NewSigner(key []byte) *Signer { return &Signer{h: hmac.New(sha256.New, key)} }

func (s *Signer) mac(body []byte) []byte {
	s.h.Reset()
	s.h.Write(body)
	return s.h.Sum(s.sum[:0])
}

// Seal appends body '\n' hex(mac) to dst.
func (s *Signer) Seal(dst, body []byte) []byte {
	m := s.mac(body)
	dst = append(dst, body...)
	dst = append(dst, '\n')
	return hex.AppendEncode(dst, m)
}

// Verify reports whether macHex is the MAC of body, in constant time.
func (s *Signer) Verify(body, macHex []byte) bool {
	if len(macHex) != MACHexLen {
		return false
	}
	// Only lowercase hex: one body has exactly one valid frame, so logs,
	// broker-level deduplication and the byte-identical reply promise never
	// see two spellings of the same message. hex.Decode alone accepts A-F.
	for _, c := range macHex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], macHex); err != nil {
		return false
	}
	return hmac.Equal(s.mac(body), want[:])
}

// Open splits payload and verifies its MAC, returning the authenticated body.
func (s *Signer) Open(payload []byte) ([]byte, error) {
	body, m, err := Split(payload)
	if err != nil {
		return nil, err
	}
	if !s.Verify(body, m) {
		return nil, &Error{Code: CodeBadMAC, Msg: "MAC does not verify"}
	}
	return body, nil
}

// Seal is a convenience for one-off framing under key.
func Seal(key, body []byte) []byte { return NewSigner(key).Seal(nil, body) }

// Open is a convenience for one-off verification under key.
func Open(key, payload []byte) ([]byte, error) { return NewSigner(key).Open(payload) }
