package terminals

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// The vector below was computed independently of this package with
// `printf 'scenepay/terminal-key/v1|BUS-0001|1' | openssl dgst -sha256 -mac HMAC -macopt hexkey:<master>`.
func TestDeriveKeyKnownVector(t *testing.T) {
	master, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	got := hex.EncodeToString(DeriveKey(master, "BUS-0001", 1))
	const want = "7423b7869e5007166d6c9948ab28aeabb53aae7cb348945953220aeba0e1ef66"
	if got != want {
		t.Fatalf("DeriveKey = %s, want %s", got, want)
	}
	if n := len(DeriveKey(master, "BUS-0001", 1)); n != KeyLen {
		t.Fatalf("key length = %d, want %d", n, KeyLen)
	}
}

func TestDeriveKeyVaries(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	base := DeriveKey(master, "BUS-0001", 1)
	if !bytes.Equal(base, DeriveKey(master, "BUS-0001", 1)) {
		t.Fatal("DeriveKey is not stable")
	}
	others := map[string][]byte{
		"tid":            DeriveKey(master, "BUS-0002", 1),
		"version":        DeriveKey(master, "BUS-0001", 2),
		"version 0":      DeriveKey(master, "BUS-0001", 0),
		"master":         DeriveKey(bytes.Repeat([]byte{8}, 32), "BUS-0001", 1),
		"tid prefix":     DeriveKey(master, "BUS-000", 1),
		"tid/ver splice": DeriveKey(master, "BUS-00011", 1), // "BUS-0001|11" vs "BUS-00011|1"
	}
	for name, k := range others {
		if bytes.Equal(k, base) {
			t.Errorf("changing %s did not change the key", name)
		}
	}
	if bytes.Equal(DeriveKey(master, "BUS-0001", 11), DeriveKey(master, "BUS-00011", 1)) {
		t.Error("tid and version are not separated")
	}
}
