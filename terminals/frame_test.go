package terminals

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// codeOf returns the Code of a *Error, or "" for any other error.
func codeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestSealOpenRoundTrip(t *testing.T) {
	body := []byte(`{"v":1,"type":"heartbeat","tid":"BUS-0001","txn":0,"ts":1767225600000}`)
	s := NewSigner(testKey)
	payload := s.Seal(nil, body)
	if got, want := len(payload), len(body)+1+MACHexLen; got != want {
		t.Fatalf("sealed length = %d, want %d", got, want)
	}
	if payload[len(body)] != '\n' {
		t.Fatalf("separator = %q, want newline", payload[len(body)])
	}
	got, err := s.Open(payload)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("Open body = %q, want %q", got, body)
	}
	// The package-level helpers agree with the Signer.
	if !bytes.Equal(Seal(testKey, body), payload) {
		t.Fatal("Seal helper differs from Signer.Seal")
	}
	if _, err := Open(testKey, payload); err != nil {
		t.Fatalf("Open helper: %v", err)
	}
	// Seal appends to dst without touching its prefix.
	withPrefix := s.Seal([]byte("xx"), body)
	if !bytes.Equal(withPrefix, append([]byte("xx"), payload...)) {
		t.Fatal("Seal does not append to dst")
	}
}

func TestOpenRefusals(t *testing.T) {
	body := []byte(`{"v":1,"type":"heartbeat","tid":"BUS-0001","ts":1}`)
	good := Seal(testKey, body)
	mac := good[len(body)+1:]

	flipBody := append([]byte(nil), good...)
	flipBody[3] ^= 0x01
	flipMAC := append([]byte(nil), good...)
	if flipMAC[len(flipMAC)-1] == '0' {
		flipMAC[len(flipMAC)-1] = '1'
	} else {
		flipMAC[len(flipMAC)-1] = '0'
	}
	wrongSep := append([]byte(nil), good...)
	wrongSep[len(body)] = ' '
	upper := append(append(append([]byte(nil), body...), '\n'), bytes.ToUpper(mac)...)
	nonHex := append(append(append([]byte(nil), body...), '\n'), bytes.Repeat([]byte("g"), MACHexLen)...)
	oversizeBody := bytes.Repeat([]byte("a"), MaxPayload)
	oversize := Seal(testKey, oversizeBody)
	crlf := append(append(append([]byte(nil), body...), '\r', '\n'), mac[:MACHexLen-1]...)

	cases := []struct {
		name    string
		key     []byte
		payload []byte
		want    Code
	}{
		{"flipped body byte", testKey, flipBody, CodeBadMAC},
		{"flipped mac digit", testKey, flipMAC, CodeBadMAC},
		{"other key", []byte("another key entirely, 32 bytes!!"), good, CodeBadMAC},
		{"uppercase hex", testKey, upper, CodeBadMAC},
		{"non-hex mac", testKey, nonHex, CodeBadMAC},
		{"wrong separator", testKey, wrongSep, CodeMalformed},
		{"crlf shifts the separator", testKey, crlf, CodeMalformed},
		{"mac without body", testKey, append([]byte("\n"), mac...), CodeMalformed},
		{"short", testKey, []byte("{}\nabc"), CodeMalformed},
		{"empty", testKey, nil, CodeMalformed},
		{"oversize", testKey, oversize, CodeOversize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Open(c.key, c.payload)
			if err == nil {
				t.Fatalf("Open accepted %q", c.payload)
			}
			if got != nil {
				t.Fatalf("Open returned a body with an error: %q", got)
			}
			if codeOf(err) != c.want {
				t.Fatalf("Open error = %v, want code %s", err, c.want)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	mac := strings.Repeat("a", MACHexLen)
	// The smallest frame: a two-byte body.
	body, m, err := Split([]byte("{}\n" + mac))
	if err != nil || string(body) != "{}" || string(m) != mac {
		t.Fatalf("Split minimal = %q, %q, %v", body, m, err)
	}
	// The largest frame is exactly MaxPayload bytes.
	big := strings.Repeat("b", MaxPayload-1-MACHexLen) + "\n" + mac
	if _, _, err := Split([]byte(big)); err != nil {
		t.Fatalf("Split at MaxPayload: %v", err)
	}
	if _, _, err := Split([]byte("b" + big)); codeOf(err) != CodeOversize {
		t.Fatalf("Split at MaxPayload+1: %v, want %s", err, CodeOversize)
	}
	if _, _, err := Split([]byte("{\n" + mac)); codeOf(err) != CodeMalformed {
		t.Fatalf("Split one-byte body: %v, want %s", err, CodeMalformed)
	}
	// Split does not check the MAC.
	if _, _, err := Split([]byte("{}\n" + strings.Repeat("z", MACHexLen))); err != nil {
		t.Fatalf("Split checked the MAC: %v", err)
	}
}

func TestVerifyLength(t *testing.T) {
	s := NewSigner(testKey)
	body := []byte(`{}`)
	mac := s.Seal(nil, body)[3:]
	if !s.Verify(body, mac) {
		t.Fatal("Verify refused a good MAC")
	}
	if s.Verify(body, mac[:MACHexLen-2]) {
		t.Fatal("Verify accepted a truncated MAC")
	}
	if s.Verify(body, append(append([]byte(nil), mac...), '0', '0')) {
		t.Fatal("Verify accepted an extended MAC")
	}
}
