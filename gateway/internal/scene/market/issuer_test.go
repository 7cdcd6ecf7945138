package market

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestIssuerKeyAndCodeAccount(t *testing.T) {
	m := []byte("0123456789abcdef0123456789abcdef")
	k1, k2 := IssuerKey(m, 1), IssuerKey(m, 2)
	if bytes.Equal(k1, k2) || bytes.Equal(k1, IssuerKey([]byte("another master"), 1)) || len(k1) != 32 {
		t.Fatal("issuer keys must differ by version and master")
	}
	at := time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC)
	c, err := Issue(k1, 1, "ecny:w-1", ClassB, at, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) > MaxCodeLen {
		t.Errorf("code of %d chars over MaxCodeLen %d", len(c), MaxCodeLen)
	}
	if a, ok := CodeAccount(c); !ok || a != "ecny:w-1" {
		t.Errorf("CodeAccount = %q, %t", a, ok)
	}
	for _, bad := range []string{"", "SPC1", "SPC2" + c[4:], c[:len(c)-3], c + "A"} {
		if _, ok := CodeAccount(bad); ok {
			t.Errorf("CodeAccount(%q) accepted", bad)
		}
	}
	r, _ := NewRules(DefaultConfig())
	u := NewUsedCodes(2)
	pc, err := NewVerifier(map[uint8][]byte{1: k1}).Verify(r, u, c, at)
	if err != nil {
		t.Fatal(err)
	}
	now := at.Unix()
	if err := u.Mark(pc.Tag, r.Expiry(&pc), now); err != nil {
		t.Fatal(err)
	}
	if err := u.Mark(pc.Tag, r.Expiry(&pc), now); !errors.Is(err, ErrCodeReused) {
		t.Errorf("second Mark: %v", err)
	}
	if err := u.Mark([TagLen]byte{1}, now+60, now); err != nil {
		t.Fatal(err)
	}
	if err := u.Mark([TagLen]byte{2}, now+60, now); !errors.Is(err, ErrUsedFull) {
		t.Errorf("Mark into a full set: %v", err)
	}
	if err := u.Mark([TagLen]byte{2}, now+120, now+60); err != nil {
		t.Errorf("Mark after expiry frees room: %v", err)
	}
}
