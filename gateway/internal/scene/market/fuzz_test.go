package market

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"scenepay/terminals"
)

// Each decoder either refuses input with a typed error or accepts it, and
// then re-encoding and decoding again is the identity (canonical form).

func FuzzDecodeConfig(f *testing.F) {
	def := DefaultConfig()
	b, _ := def.EncodeJSON()
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2,"fee_ratio":1e-7}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeConfig(b)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if _, err := NewRules(c); err != nil {
			t.Fatalf("decoded config does not compile: %v", err)
		}
		b2, err := c.EncodeJSON()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeConfig(b2)
		if err != nil {
			t.Fatalf("re-decode: %v\n%s", err, b2)
		}
		b3, _ := c2.EncodeJSON()
		if !bytes.Equal(b2, b3) {
			t.Fatalf("not stable:\n%s\n%s", b2, b3)
		}
	})
}

func FuzzDecodeCustomer(f *testing.F) {
	c := Customer{Day: 20514, Spent: [5]int64{1: 5, 4: 50000}, AgreedA: 100}
	f.Add(c.AppendBinary(nil))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Customer
		if err := c.DecodeBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := c.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encode differs")
		}
	})
}

func FuzzDecodeUsedCodes(f *testing.F) {
	r, _ := NewRules(DefaultConfig())
	u := NewUsedCodes(4)
	_ = u.Add(r, &PayCode{IssuedAt: 100, Tag: [16]byte{1}}, 90)
	_ = u.Add(r, &PayCode{IssuedAt: 101, Tag: [16]byte{2}}, 90)
	f.Add(u.AppendBinary(nil))
	f.Add(NewUsedCodes(1).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var u UsedCodes
		if err := u.DecodeBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := u.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encode differs")
		}
		// The decoded set keeps working: adding never panics.
		_ = u.Add(r, &PayCode{IssuedAt: 1, Tag: [16]byte{9, 9}}, 0)
	})
}

func FuzzDecodeLedger(f *testing.F) {
	r, _ := NewRules(DefaultConfig())
	l := newLedger(4, 3)
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	_ = l.Record(Payment{ID: "p1", Account: "a", StallMerchant: "m", Class: ClassC, Amount: 1000, Operator: 10, PaidAt: now})
	_ = l.Record(Payment{ID: "p2", Account: "a", StallMerchant: "m", Class: ClassD, Amount: 5, Operator: 0, PaidAt: now})
	rf, _ := l.CheckRefund(r, "p1", "r1", 400)
	_ = l.ApplyRefund(&rf)
	f.Add(l.AppendBinary(nil))
	f.Add(newLedger(1, 1).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l Ledger
		if err := l.DecodeBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := l.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encode differs")
		}
		// Refunds on a decoded ledger keep their invariants.
		for id, e := range l.byID {
			rf, err := l.CheckRefund(r, id, "fuzz-refund", e.Amount-e.refunded)
			if err != nil {
				continue
			}
			if rf.Stall.Amount < 0 || rf.Operator.Amount < 0 {
				t.Fatalf("negative leg %+v", rf)
			}
		}
	})
}

// FuzzVerify: any string is either a verified code or a coded decline.
func FuzzVerify(f *testing.F) {
	key := []byte("issuer")
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	code, _ := Issue(key, 1, "wallet-1", ClassB, now, 7)
	f.Add(code)
	f.Add("SPC1")
	f.Add("SPC1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	r, _ := NewRules(DefaultConfig())
	v := NewVerifier(map[uint8][]byte{1: key})
	f.Fuzz(func(t *testing.T, s string) {
		pc, err := v.Verify(r, NewUsedCodes(2), s, now)
		if err != nil {
			var d *Decline
			if !errors.As(err, &d) || d.Code == terminals.CodeApproved {
				t.Fatalf("not a decline: %v", err)
			}
			return
		}
		again, err := Issue(key, pc.KeyID, pc.Account(), pc.Class, time.Unix(pc.IssuedAt, 0), pc.Nonce)
		if err != nil || again != s {
			t.Fatalf("accepted a code that is not the canonical issue: %q vs %q (%v)", s, again, err)
		}
	})
}
