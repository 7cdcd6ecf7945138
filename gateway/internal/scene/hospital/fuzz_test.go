package hospital

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func FuzzDecodeConfig(f *testing.F) {
	def := DefaultConfig()
	b, _ := def.EncodeJSON()
	f.Add(b)
	f.Add([]byte(`{"version":1,"items":[]}`))
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
		b2, _ := c.EncodeJSON()
		c2, err := DecodeConfig(b2)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if b3, _ := c2.EncodeJSON(); !bytes.Equal(b2, b3) {
			t.Fatalf("not stable")
		}
	})
}

// FuzzDecodeDeposit: damaged state is a typed error; accepted state
// re-encodes identically and survives every operation without a panic or
// a broken invariant.
func FuzzDecodeDeposit(f *testing.F) {
	r, _ := NewRules(DefaultConfig())
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	var d Deposit
	var p Plan
	f.Add(d.AppendBinary(nil))
	_ = r.Open(&d, "D", "a", 1, 100000, now, &p)
	_ = r.Commit(&d, &p)
	_ = r.TopUp(&d, 2, 50000, now, &p)
	_ = r.Commit(&d, &p)
	_ = r.Capture(&d, "o1", 120000, false, now, &p)
	_ = r.Commit(&d, &p)
	f.Add(d.AppendBinary(nil))
	_ = r.Discharge(&d, "o2", 10, now, &p)
	_ = r.Commit(&d, &p)
	f.Add(d.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Deposit
		if err := d.DecodeBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := d.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encode differs")
		}
		var p Plan
		for _, step := range []func() error{
			func() error { return r.TopUp(&d, 99, 10000, now, &p) },
			func() error { return r.Capture(&d, "fz", 1, true, now, &p) },
			func() error { return r.Discharge(&d, "", 0, now, &p) },
		} {
			if step() == nil {
				if err := r.Commit(&d, &p); err != nil {
					t.Fatalf("commit of a fresh plan: %v", err)
				}
				if d.Remaining() < 0 {
					t.Fatalf("negative remaining")
				}
			}
		}
	})
}
