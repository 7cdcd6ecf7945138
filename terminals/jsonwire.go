package terminals

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The v1 bodies are flat JSON objects with a fixed set of keys, so they are
// read by the small strict scanner below instead of encoding/json:
//
//   - encoding/json matches keys case-insensitively ("AMT" fills amt) and lets
//     the last of two duplicate keys win. A signed body that means one amount
//     to a terminal's display and another to the gateway is exactly what a
//     payment protocol must not allow, so v1 requires exact, unique keys and
//     refuses unknown ones.
//   - integers must be plain JSON integers (no fraction, no exponent, no
//     leading zeros) that fit the field; encoding/json would accept 1e2 for an
//     int64 in some paths and silently accept null.
//   - it allocates only for the strings it keeps, which matters on the
//     gateway's hot path.
//
// FuzzDecodeRequest checks it against encoding/json: whatever this scanner
// accepts, encoding/json decodes to the same value.

// jsonMaxStringBytes bounds one decoded string; the payload bound (4096 bytes)
// already bounds it, this names the scratch buffer's growth limit.
const jsonMaxStringBytes = MaxPayload

type scanner struct {
	b   []byte
	i   int
	buf []byte // scratch for strings with escapes
}

func (s *scanner) errAt(field, msg string) error {
	return bad(field, msg+" at byte "+strconv.Itoa(s.i))
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// objectStart consumes '{' and reports whether the object is empty (and
// consumed whole).
func (s *scanner) objectStart(field string) (empty bool, err error) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false, s.errAt(field, "expected a JSON object")
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true, nil
	}
	return false, nil
}

// key reads `"name" :` and returns name. The bytes are valid until the next
// string read.
func (s *scanner) key(field string) ([]byte, error) {
	s.ws()
	k, err := s.str(field)
	if err != nil {
		return nil, err
	}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		return nil, s.errAt(field, "expected ':' after a key")
	}
	s.i++
	s.ws()
	return k, nil
}

// after reads the ',' or '}' that follows a member value and reports whether
// another member follows.
func (s *scanner) after(field string) (more bool, err error) {
	s.ws()
	if s.i >= len(s.b) {
		return false, s.errAt(field, "unterminated object")
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return true, nil
	case '}':
		s.i++
		return false, nil
	}
	return false, s.errAt(field, "expected ',' or '}'")
}

// end checks that only whitespace follows the top-level value.
func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return s.errAt("", "trailing data after body")
	}
	return nil
}

// digits reads a JSON integer (no fraction or exponent) and returns its sign
// and digit bytes.
func (s *scanner) digits(field string) (neg bool, d []byte, err error) {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		neg = true
		s.i++
	}
	ds := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	d = s.b[ds:s.i]
	if len(d) == 0 {
		s.i = start
		if s.i < len(s.b) && s.b[s.i] == 'n' {
			return false, nil, s.errAt(field, "null is not allowed; omit the field")
		}
		return false, nil, s.errAt(field, "expected an integer")
	}
	if len(d) > 1 && d[0] == '0' {
		return false, nil, s.errAt(field, "leading zero in an integer")
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return false, nil, s.errAt(field, "expected an integer, not a fraction or exponent")
	}
	return neg, d, nil
}

// uint reads a non-negative integer that fits in max.
func (s *scanner) uint(field string, max uint64) (uint64, error) {
	neg, d, err := s.digits(field)
	if err != nil {
		return 0, err
	}
	if neg {
		return 0, s.errAt(field, "must not be negative")
	}
	var v uint64
	for _, c := range d {
		n := uint64(c - '0')
		if v > (max-n)/10 {
			return 0, s.errAt(field, "integer out of range")
		}
		v = v*10 + n
	}
	return v, nil
}

// int reads an integer in [-max-1, max] (max is a positive int64 bound).
func (s *scanner) int(field string, max int64) (int64, error) {
	neg, d, err := s.digits(field)
	if err != nil {
		return 0, err
	}
	lim := uint64(max)
	if neg {
		lim++
	}
	var v uint64
	for _, c := range d {
		n := uint64(c - '0')
		if v > (lim-n)/10 {
			return 0, s.errAt(field, "integer out of range")
		}
		v = v*10 + n
	}
	if neg {
		if v == 1<<63 {
			return -1 << 63, nil
		}
		return -int64(v), nil
	}
	return int64(v), nil
}

// str reads a JSON string and returns its decoded bytes: a sub-slice of the
// input when it has no escapes, else the scratch buffer. Control characters,
// invalid UTF-8 and lone surrogates are refused.
func (s *scanner) str(field string) ([]byte, error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		if s.i < len(s.b) && s.b[s.i] == 'n' {
			return nil, s.errAt(field, "null is not allowed; omit the field")
		}
		return nil, s.errAt(field, "expected a string")
	}
	s.i++
	start := s.i
	// Fast path: no escapes.
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			out := s.b[start:s.i]
			s.i++
			if !utf8.Valid(out) {
				return nil, s.errAt(field, "string is not valid UTF-8")
			}
			return out, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, s.errAt(field, "control character in string")
		}
		s.i++
	}
	s.buf = append(s.buf[:0], s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if !utf8.Valid(s.buf) {
				return nil, s.errAt(field, "string is not valid UTF-8")
			}
			return s.buf, nil
		case c < 0x20:
			return nil, s.errAt(field, "control character in string")
		case c != '\\':
			s.buf = append(s.buf, c)
			s.i++
		default:
			if s.i+1 >= len(s.b) {
				return nil, s.errAt(field, "unterminated escape")
			}
			e := s.b[s.i+1]
			s.i += 2
			switch e {
			case '"', '\\', '/':
				s.buf = append(s.buf, e)
			case 'b':
				s.buf = append(s.buf, '\b')
			case 'f':
				s.buf = append(s.buf, '\f')
			case 'n':
				s.buf = append(s.buf, '\n')
			case 'r':
				s.buf = append(s.buf, '\r')
			case 't':
				s.buf = append(s.buf, '\t')
			case 'u':
				r, ok := s.hex4()
				if !ok {
					return nil, s.errAt(field, "bad \\u escape")
				}
				if utf16.IsSurrogate(r) {
					if s.i+1 >= len(s.b) || s.b[s.i] != '\\' || s.b[s.i+1] != 'u' {
						return nil, s.errAt(field, "lone surrogate in \\u escape")
					}
					s.i += 2
					r2, ok := s.hex4()
					if !ok {
						return nil, s.errAt(field, "bad \\u escape")
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return nil, s.errAt(field, "lone surrogate in \\u escape")
					}
				}
				s.buf = utf8.AppendRune(s.buf, r)
			default:
				return nil, s.errAt(field, "bad escape")
			}
		}
		if len(s.buf) > jsonMaxStringBytes {
			return nil, s.errAt(field, "string too long")
		}
	}
	return nil, s.errAt(field, "unterminated string")
}

func (s *scanner) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	s.i += 4
	return r, true
}

// keep returns b as a string, reusing prev (no allocation) when it already
// holds the same bytes: a terminal sends the same tid and often the same
// instrument message after message.
func keep(b []byte, prev string) string {
	if string(b) == prev {
		return prev
	}
	return string(b)
}

// appendJSONString appends s as a JSON string. strconv.Quote is not JSON
// (it writes \x7f and \a); this writes only RFC 8259 escapes, replaces
// invalid UTF-8 with U+FFFD, and escapes U+2028/U+2029 for JavaScript readers.
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028':
			dst = append(dst, `\u2028`...)
		case r == '\u2029':
			dst = append(dst, `\u2029`...)
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
