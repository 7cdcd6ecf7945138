package wallet

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// docCode is the worked example of docs/protocol.md section 15: a code for
// county:C-00012345 under issuer key 1 derived from the example master key
// of section 6.
const docCode = "SPC1AEBAAAAAABUVLOH3AAAAAAAAABPO2ELDN52W45DZHJBS2MBQGAYTEMZUGWY3EYYVQTZHFD6RLWSHTRBFG24A"

var docMaster, _ = hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")

// TestIssueReproducesTheProtocolExample: decoding the document's code and
// issuing again from its fields under the derived issuer key gives the same
// code, so the gateway's verifier accepts what the emulator's wallets issue.
func TestIssueReproducesTheProtocolExample(t *testing.T) {
	in, ok := Decode(docCode)
	if !ok {
		t.Fatal("the protocol example does not decode")
	}
	if in.Account != "county:C-00012345" || in.KeyID != 1 {
		t.Fatalf("decoded %+v", in)
	}
	got, err := Issue(IssuerKey(docMaster, in.KeyID), in.KeyID, in.Account, in.Class, time.Unix(in.At, 0), in.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if got != docCode {
		t.Fatalf("issued %s\nwant   %s", got, docCode)
	}
	// Another key, nonce or account gives another code.
	other, _ := Issue(IssuerKey(docMaster, 2), in.KeyID, in.Account, in.Class, time.Unix(in.At, 0), in.Nonce)
	if other == docCode {
		t.Fatal("issuer key does not change the code")
	}
	if len(docCode) > 112 {
		t.Fatalf("code of %d characters, the wire allows 112", len(docCode))
	}
}

func TestIssueBoundsAndDecodeRefusals(t *testing.T) {
	k := IssuerKey(docMaster, 1)
	if _, err := Issue(k, 1, "", ClassB, time.Now(), 1); err != ErrAccount {
		t.Errorf("empty account: %v", err)
	}
	if _, err := Issue(k, 1, strings.Repeat("x", 33), ClassB, time.Now(), 1); err != ErrAccount {
		t.Errorf("long account: %v", err)
	}
	if _, err := Issue(k, 1, "county:1", 4, time.Now(), 1); err != ErrClass {
		t.Errorf("class D: %v", err)
	}
	long, err := Issue(k, 1, "ecny:"+strings.Repeat("w", 27), ClassC, time.Now(), 9)
	if err != nil || len(long) > 112 {
		t.Fatalf("longest code %d chars, %v", len(long), err)
	}
	if in, ok := Decode(long); !ok || in.Class != ClassC || in.Nonce != 9 {
		t.Fatalf("decode longest: %+v %v", in, ok)
	}
	for _, bad := range []string{"", "SPC1", "SPC2" + docCode[4:], docCode[:len(docCode)-1], docCode + "A",
		docCode[:len(docCode)-1] + "B", strings.ToLower(docCode), docCode[:20] + "\n" + docCode[20:]} {
		if _, ok := Decode(bad); ok {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(docCode)
	f.Add("SPC1")
	f.Add("SPC1AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		in, ok := Decode(s)
		if !ok {
			return
		}
		if len(in.Account) == 0 || len(in.Account) > AccountKeyMax || !strings.HasPrefix(s, Prefix) || len(s) > 112 {
			t.Fatalf("accepted %q as %+v", s, in)
		}
	})
}
