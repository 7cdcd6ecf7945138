package terminals

import (
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docMaster is the example master key of docs/protocol.md section 6.
var docMaster, _ = hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")

// TestPayCodeProtocolExample: the code of the qr_pay example of
// docs/protocol.md section 15 decodes, and issuing again from its fields
// under issuer key 1 derived from the example master key gives the same
// code byte for byte, so what the wallets issue is what the gateway
// verifies and what the document shows.
func TestPayCodeProtocolExample(t *testing.T) {
	raw, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"type":"qr_pay",[^\n]*"code":"(SPC1[A-Z2-7]+)"`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("%s shows no qr_pay with a payment code", protocolDoc)
	}
	docCode := string(m[1])
	if docCode != qrPayCode {
		t.Fatalf("the document's code %s is not the wire tests' %s", docCode, qrPayCode)
	}
	pc, ok := DecodePayCode(docCode)
	if !ok {
		t.Fatal("the protocol example does not decode")
	}
	if pc.Account() != "county:C-00012345" || !pc.AccountIs("county:C-00012345") || pc.KeyID != 1 || pc.Class != PayClassB {
		t.Fatalf("decoded %+v (account %q)", pc, pc.Account())
	}
	got, err := IssuePayCode(PayCodeIssuerKey(docMaster, pc.KeyID), pc.KeyID, pc.Account(), pc.Class, time.Unix(pc.IssuedAt, 0), pc.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if got != docCode {
		t.Fatalf("issued %s\nwant   %s", got, docCode)
	}
	// Another key gives another code.
	other, _ := IssuePayCode(PayCodeIssuerKey(docMaster, 2), pc.KeyID, pc.Account(), pc.Class, time.Unix(pc.IssuedAt, 0), pc.Nonce)
	if other == docCode {
		t.Fatal("issuer key does not change the code")
	}
}

// The longest code is MaxPayCodeLen characters, the bound of qr_pay's "code".
func TestPayCodeMaxLen(t *testing.T) {
	if want := len(PayCodePrefix) + (PayCodePayloadMax*8+4)/5; MaxPayCodeLen != want {
		t.Fatalf("MaxPayCodeLen = %d, the format's longest code is %d", MaxPayCodeLen, want)
	}
	long, err := IssuePayCode([]byte("k"), 1, "ecny:"+strings.Repeat("w", PayCodeAccountMax-5), PayClassC, time.Unix(1, 0), 9)
	if err != nil || len(long) != MaxPayCodeLen {
		t.Fatalf("longest code %d chars, %v", len(long), err)
	}
	if pc, ok := DecodePayCode(long); !ok || pc.Class != PayClassC || pc.Nonce != 9 || pc.IssuedAt != 1 {
		t.Fatalf("decode longest: %+v %v", pc, ok)
	}
}

func TestPayCodeIssueBoundsAndDecodeRefusals(t *testing.T) {
	k := PayCodeIssuerKey(docMaster, 1)
	if _, err := IssuePayCode(k, 1, "", PayClassB, time.Now(), 1); err != ErrPayCodeAccount {
		t.Errorf("empty account: %v", err)
	}
	if _, err := IssuePayCode(k, 1, strings.Repeat("x", PayCodeAccountMax+1), PayClassB, time.Now(), 1); err != ErrPayCodeAccount {
		t.Errorf("long account: %v", err)
	}
	for _, c := range []PayClass{0, PayClassD, 5} {
		if _, err := IssuePayCode(k, 1, "county:1", c, time.Now(), 1); err != ErrPayCodeClass {
			t.Errorf("class %v: %v", c, err)
		}
	}
	for _, bad := range []string{"", "SPC1", "SPC2" + qrPayCode[4:], qrPayCode[:len(qrPayCode)-1], qrPayCode + "A",
		qrPayCode[:len(qrPayCode)-1] + "B", strings.ToLower(qrPayCode), qrPayCode[:20] + "\n" + qrPayCode[20:],
		qrPayCode + "=", "SPC1" + strings.Repeat("A", MaxPayCodeLen)} {
		if pc, ok := DecodePayCode(bad); ok {
			t.Errorf("DecodePayCode(%q) accepted as %+v", bad, pc)
		}
	}
}

func TestPayClassNames(t *testing.T) {
	for c := PayClassA; c <= PayClassD; c++ {
		if got, ok := ParsePayClass(c.String()); !ok || got != c {
			t.Errorf("ParsePayClass(%q) = %v %v", c.String(), got, ok)
		}
	}
	if PayClass(0).String() != "?" || PayClass(5).String() != "?" {
		t.Error("classes out of range have names")
	}
	for _, s := range []string{"", "E", "a", "AB"} {
		if _, ok := ParsePayClass(s); ok {
			t.Errorf("ParsePayClass(%q) accepted", s)
		}
	}
}

// Decoding does not allocate: the gateway reads codes on its hot path.
func TestDecodePayCodeAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if pc, ok := DecodePayCode(qrPayCode); !ok || !pc.AccountIs("county:C-00012345") {
			t.Fatal("decode")
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per decode, want 0", n)
	}
}

// FuzzDecodePayCode: a code is accepted only in canonical form, so the
// payload it decodes to encodes back to the same text; its fields are in
// bounds.
func FuzzDecodePayCode(f *testing.F) {
	f.Add(qrPayCode)
	f.Add("SPC1")
	f.Add("SPC1AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		var p PayCodePayload
		if !p.Decode(s) {
			if _, ok := DecodePayCode(s); ok {
				t.Fatalf("DecodePayCode accepted %q, the payload decoder did not", s)
			}
			return
		}
		pc, ok := DecodePayCode(s)
		if !ok {
			t.Fatalf("DecodePayCode refused %q, the payload decoder did not", s)
		}
		if n := len(pc.Account()); n == 0 || n > PayCodeAccountMax || len(s) > MaxPayCodeLen {
			t.Fatalf("accepted %q as %+v", s, pc)
		}
		if pc.KeyID != p.KeyID() || string(pc.Tag[:]) != string(p.Tag()) {
			t.Fatalf("fields of %q disagree: %+v", s, pc)
		}
		payload := append(append([]byte(nil), p.Signed()...), p.Tag()...)
		if got := string(appendB32([]byte(PayCodePrefix), payload)); got != s {
			t.Fatalf("not canonical: %q encodes back as %q", s, got)
		}
	})
}
