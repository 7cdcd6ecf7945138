package wallet

import (
	"strings"
	"testing"
	"time"
)

// The format and its worked example are tested where they are defined,
// terminals/paycode_test.go (TestPayCodeProtocolExample); this test keeps
// the wallet's view of a code: Info carries what Issue put in.
func TestIssueDecodeRoundTrip(t *testing.T) {
	k := IssuerKey([]byte("master"), 3)
	at := time.Unix(1767225600, 0)
	code, err := Issue(k, 3, "ecny:w-0001", ClassC, at, 77)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(code, Prefix) {
		t.Fatalf("code %q", code)
	}
	got, ok := Decode(code)
	if want := (Info{KeyID: 3, Class: ClassC, At: at.Unix(), Nonce: 77, Account: "ecny:w-0001"}); !ok || got != want {
		t.Fatalf("decoded %+v %v, want %+v", got, ok, want)
	}
	if _, ok := Decode(code[:len(code)-1]); ok {
		t.Error("a cut code decodes")
	}
	if _, err := Issue(k, 3, strings.Repeat("x", AccountKeyMax+1), ClassB, at, 1); err != ErrAccount {
		t.Errorf("long account: %v", err)
	}
	if _, err := Issue(k, 3, "county:1", 4, at, 1); err != ErrClass {
		t.Errorf("class D: %v", err)
	}
}
