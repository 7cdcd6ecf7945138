package hospital

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by every decode error of this package's state.
var ErrCorrupt = errors.New("hospital: corrupt state")

// stateVersion is the first byte of every binary state encoding.
const stateVersion = 1

func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

// appendStr writes a one-byte length and the bytes; callers keep strings
// within MaxIDLen (< 256).
func appendStr(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

// reader decodes little-endian fields and remembers the first failure, so
// decoders read straight through and check once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: offset %d: %s", ErrCorrupt, r.off, fmt.Sprintf(format, a...))
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.fail("truncated: need %d bytes, have %d", n, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *reader) u32() uint32 {
	p := r.take(4)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

func (r *reader) u64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

func (r *reader) i64() int64 { return int64(r.u64()) }

// fen reads a non-negative amount.
func (r *reader) fen(field string) int64 {
	v := r.i64()
	if v < 0 {
		r.fail("%s is negative (%d)", field, v)
	}
	return v
}

func (r *reader) str(field string) string {
	n := int(r.u8())
	p := r.take(n)
	if r.err == nil && n > MaxIDLen {
		r.fail("%s longer than %d", field, MaxIDLen)
	}
	return string(p)
}

// version checks the leading version byte.
func (r *reader) version(what string) {
	if v := r.u8(); r.err == nil && v != stateVersion {
		r.fail("%s version %d, want %d", what, v, stateVersion)
	}
}

// done reports trailing bytes as corruption and returns the first error.
func (r *reader) done() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}
