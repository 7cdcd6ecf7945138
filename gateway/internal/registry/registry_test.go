package registry

import (
	"testing"

	"scenepay/terminals"
)

var master = []byte("0123456789abcdef0123456789abcdef")

func TestPutGetAndKeys(t *testing.T) {
	r := New(master, 2)
	if err := r.Put(Terminal{TID: "BUS-1", Kind: KindBus, Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	e, ok := r.Get("BUS-1")
	if !ok {
		t.Fatal("not found")
	}
	body := []byte(`{"v":1}`)
	sealed := terminals.Seal(terminals.DeriveKey(master, "BUS-1", 1), body)
	if got, err := e.Open(sealed); err != nil || string(got) != string(body) {
		t.Fatalf("open with the derived key: %v", err)
	}
	// Rotating the key version changes the key.
	if err := r.Put(Terminal{TID: "BUS-1", Kind: KindBus, Merchant: "M", KeyVersion: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Open(sealed); err == nil {
		t.Fatal("old key still accepted after rotation")
	}
	if _, err := e.Open(terminals.Seal(terminals.DeriveKey(master, "BUS-1", 2), body)); err != nil {
		t.Fatalf("new key refused: %v", err)
	}
	if err := r.Put(Terminal{TID: "BUS-2", Kind: KindBus, Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Terminal{TID: "BUS-3", Kind: KindBus, Merchant: "M", KeyVersion: 1}); err != ErrFull {
		t.Fatalf("third terminal: %v, want ErrFull", err)
	}
}

func TestValidateAndCodec(t *testing.T) {
	for _, bad := range []Terminal{
		{TID: "", Kind: KindBus, Merchant: "M", KeyVersion: 1},
		{TID: "a/b", Kind: KindBus, Merchant: "M", KeyVersion: 1},
		{TID: "T", Kind: "tram", Merchant: "M", KeyVersion: 1},
		{TID: "T", Kind: KindBus, Merchant: "", KeyVersion: 1},
		{TID: "T", Kind: KindBus, Merchant: "M", KeyVersion: 0},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
		if _, err := Decode(Encode(bad)); err == nil {
			t.Errorf("%+v decoded", bad)
		}
	}
	good := Terminal{TID: "K-1", Kind: KindKiosk, Merchant: "HOSP", KeyVersion: 3, Blocked: true}
	if got, err := Decode(Encode(good)); err != nil || got != good {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}
