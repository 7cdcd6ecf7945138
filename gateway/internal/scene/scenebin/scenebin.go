// Package scenebin owns the binary state encoding helpers the pure scene
// packages share (market, hospital): little-endian appends and a reader that
// remembers the first failure, so each decoder reads straight through and
// checks once. Every failure wraps the owning package's corruption sentinel
// and names the byte offset.
package scenebin

import (
	"encoding/binary"
	"fmt"
)

// AppendU64 appends v little-endian.
func AppendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// AppendU32 appends v little-endian.
func AppendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

// AppendStr writes a one-byte length and the bytes; callers keep strings
// below 256 bytes (their package's id bound).
func AppendStr(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

// Reader decodes little-endian fields from B starting at Off; Err is the
// first failure.
type Reader struct {
	B       []byte
	Off     int
	Err     error
	corrupt error
	maxID   int
	version byte
}

// NewReader reads b. corrupt is the sentinel every error wraps, maxIDLen
// bounds Str, version is the expected leading version byte.
func NewReader(b []byte, corrupt error, maxIDLen int, version byte) *Reader {
	return &Reader{B: b, corrupt: corrupt, maxID: maxIDLen, version: version}
}

// Fail records the first failure.
func (r *Reader) Fail(format string, a ...any) {
	if r.Err == nil {
		r.Err = fmt.Errorf("%w: offset %d: %s", r.corrupt, r.Off, fmt.Sprintf(format, a...))
	}
}

// Take returns the next n bytes, or nil after a failure.
func (r *Reader) Take(n int) []byte {
	if r.Err != nil {
		return nil
	}
	if n < 0 || len(r.B)-r.Off < n {
		r.Fail("truncated: need %d bytes, have %d", n, len(r.B)-r.Off)
		return nil
	}
	p := r.B[r.Off : r.Off+n]
	r.Off += n
	return p
}

// U8 reads one byte.
func (r *Reader) U8() uint8 {
	p := r.Take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

// U32 reads a little-endian uint32.
func (r *Reader) U32() uint32 {
	p := r.Take(4)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

// U64 reads a little-endian uint64.
func (r *Reader) U64() uint64 {
	p := r.Take(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

// I64 reads a little-endian int64.
func (r *Reader) I64() int64 { return int64(r.U64()) }

// Fen reads a non-negative amount.
func (r *Reader) Fen(field string) int64 {
	v := r.I64()
	if v < 0 {
		r.Fail("%s is negative (%d)", field, v)
	}
	return v
}

// Str reads a length-prefixed string of at most the id bound.
func (r *Reader) Str(field string) string {
	n := int(r.U8())
	p := r.Take(n)
	if r.Err == nil && n > r.maxID {
		r.Fail("%s longer than %d", field, r.maxID)
	}
	return string(p)
}

// Version checks the leading version byte.
func (r *Reader) Version(what string) {
	if v := r.U8(); r.Err == nil && v != r.version {
		r.Fail("%s version %d, want %d", what, v, r.version)
	}
}

// Done reports trailing bytes as corruption and returns the first error.
func (r *Reader) Done() error {
	if r.Err == nil && r.Off != len(r.B) {
		r.Fail("%d trailing bytes", len(r.B)-r.Off)
	}
	return r.Err
}
