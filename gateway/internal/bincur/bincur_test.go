package bincur

import (
	"encoding/binary"
	"errors"
	"testing"
)

var errBad = errors.New("bad")

func TestCursor(t *testing.T) {
	b := binary.AppendUvarint(nil, 3)
	b = append(b, "abc"...)
	b = binary.AppendUvarint(b, 300)
	c := New(b, errBad)
	if got := string(c.Bytes()); got != "abc" {
		t.Fatalf("bytes %q", got)
	}
	if got := c.Uvarint(); got != 300 || c.Err != nil || len(c.B) != 0 {
		t.Fatalf("uvarint %d err %v rest %d", got, c.Err, len(c.B))
	}
	if c.Uvarint(); c.Err != errBad {
		t.Fatalf("read past the end: %v", c.Err)
	}
	c = New([]byte{5, 'x'}, errBad)
	if c.Bytes() != nil || c.Err != errBad {
		t.Fatal("short take not detected")
	}
	if c.Take(0) != nil || c.Uvarint() != 0 {
		t.Fatal("reads after failure return values")
	}
}
