// Package bincur owns the small bounds-checked reader that the gateway's
// binary decoders (journal entries, idempotency snapshots) share: a cursor
// over a byte slice whose first failure sticks, so a decoder reads every
// field and checks one error at the end, and never indexes out of range.
package bincur

import "encoding/binary"

// Cursor reads from B. After the first failure every read returns zero
// values and Err stays the failure given to New.
type Cursor struct {
	B   []byte
	Err error
	bad error
}

// New returns a cursor over b that reports bad on a short or malformed read.
func New(b []byte, bad error) *Cursor { return &Cursor{B: b, bad: bad} }

// Uvarint reads an unsigned varint.
func (c *Cursor) Uvarint() uint64 {
	if c.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(c.B)
	if n <= 0 {
		c.Err = c.bad
		return 0
	}
	c.B = c.B[n:]
	return v
}

// Take returns the next n bytes (capacity-limited, aliasing the input).
func (c *Cursor) Take(n uint64) []byte {
	if c.Err != nil {
		return nil
	}
	if n > uint64(len(c.B)) {
		c.Err = c.bad
		return nil
	}
	v := c.B[:n:n]
	c.B = c.B[n:]
	return v
}

// Bytes reads a uvarint length and that many bytes.
func (c *Cursor) Bytes() []byte { return c.Take(c.Uvarint()) }
