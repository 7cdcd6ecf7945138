package terminals

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Market stall messages (docs/protocol.md section 15).
const (
	qrPayCode       = "SPC1AEBAAAAAABUVLOH3AAAAAAAAABPO2ELDN52W45DZHJBS2MBQGAYTEMZUGWY3EYYVQTZHFD6RLWSHTRBFG24A"
	qrPayBody       = `{"v":1,"type":"qr_pay","tid":"STALL-017","txn":9001,"ts":1767225600000,"amt":1550,"inst":{"k":"county","id":"C-00012345"},"code":"` + qrPayCode + `"}`
	qrPayNoInstBody = `{"v":1,"type":"qr_pay","tid":"STALL-017","txn":9001,"ts":1767225600000,"amt":1550,"code":"` + qrPayCode + `"}`
	refundBody      = `{"v":1,"type":"refund","tid":"STALL-017","txn":9002,"ts":1767225610000,"amt":500,"inst":{"k":"county","id":"C-00012345"},"orig":9001}`
)

// Market messages decode to the fields sent and re-encode to the same bytes.
func TestMarketMessagesRoundTrip(t *testing.T) {
	for _, c := range []struct {
		body string
		want Request
	}{
		{qrPayBody, Request{V: 1, Type: TypeQRPay, TID: "STALL-017", Txn: 9001, TS: tsExample, Amt: 1550,
			Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}, PayCode: qrPayCode}},
		{qrPayNoInstBody, Request{V: 1, Type: TypeQRPay, TID: "STALL-017", Txn: 9001, TS: tsExample, Amt: 1550, PayCode: qrPayCode}},
		{refundBody, Request{V: 1, Type: TypeRefund, TID: "STALL-017", Txn: 9002, TS: tsExample + 10000, Amt: 500,
			Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}, Orig: 9001}},
	} {
		var r Request
		if err := DecodeRequestInto([]byte(c.body), &r); err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		if r != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.body, r, c.want)
		}
		if got := string(r.AppendJSON(nil)); got != c.body {
			t.Errorf("round trip:\n got %s\nwant %s", got, c.body)
		}
	}
}

func TestMarketMessagesRefused(t *testing.T) {
	qr := func(members ...string) string {
		return body(append([]string{`"type":"qr_pay"`, `"code":"` + qrPayCode + `"`}, members...)...)
	}
	rf := func(members ...string) string {
		return body(append([]string{`"type":"refund"`, `"txn":9002`, `"orig":9001`}, members...)...)
	}
	for _, c := range []struct {
		name  string
		body  string
		code  Code
		field string
	}{
		{"qr_pay without code", body(`"type":"qr_pay"`), CodeMalformed, "code"},
		{"qr_pay empty code", qr(`"code":""`), CodeMalformed, "code"},
		{"qr_pay lower-case code", qr(`"code":"spc1abc"`), CodeMalformed, "code"},
		{"qr_pay code with space", qr(`"code":"SPC1 ABC"`), CodeMalformed, "code"},
		{"qr_pay code too long", qr(`"code":"` + strings.Repeat("A", MaxPayCodeLen+1) + `"`), CodeMalformed, "code"},
		{"qr_pay code not a string", qr(`"code":12`), CodeMalformed, "code"},
		{"qr_pay zero amount", qr(`"amt":0`), CodeInvalidAmount, "amt"},
		{"qr_pay amount over bound", qr(`"amt":1000000001`), CodeInvalidAmount, "amt"},
		{"qr_pay with orig", qr(`"orig":1`), CodeMalformed, "orig"},
		{"qr_pay with bad inst", qr(`"inst":{"k":"card","id":"X"}`), CodeMalformed, "inst.k"},
		{"qr_pay with PAN inst", qr(`"inst":{"k":"county","id":"4111111111111111"}`), CodeMalformed, "inst.id"},
		{"qr_pay with item", qr(`"item":"REG"`), CodeMalformed, "item"},
		{"qr_pay with route", qr(`"route":"R1"`), CodeMalformed, "route"},
		{"purchase with code", body(`"code":"` + qrPayCode + `"`), CodeMalformed, "code"},
		{"reversal with code", body(`"type":"reversal"`, `"orig":1`, `"code":"`+qrPayCode+`"`), CodeMalformed, "code"},
		{"heartbeat with code", body(`"type":"heartbeat"`, "-amt", "-inst", `"code":"SPC1"`), CodeMalformed, "amt"},
		{"refund without orig", rf("-orig"), CodeMalformed, "orig"},
		{"refund orig not earlier", rf(`"orig":9002`), CodeMalformed, "orig"},
		{"refund zero amount", rf(`"amt":0`), CodeInvalidAmount, "amt"},
		{"refund negative amount", rf(`"amt":-5`), CodeInvalidAmount, "amt"},
		{"refund without inst", rf("-inst"), CodeMalformed, "inst.k"},
		{"refund with code", rf(`"code":"` + qrPayCode + `"`), CodeMalformed, "code"},
		{"refund with ins", rf(`"ins":{"pool":0,"personal":0,"self":200}`), CodeMalformed, "item"},
		{"duplicate code key", `{"v":1,"type":"qr_pay","tid":"S","txn":1,"ts":1,"amt":1,"code":"SPC1","code":"SPC1"}`, CodeMalformed, "code"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			err := DecodeRequestInto([]byte(c.body), &r)
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("%s: err = %v, want a *Error", c.body, err)
			}
			if e.Code != c.code || e.Field != c.field {
				t.Fatalf("%s: got %s on %q (%s), want %s on %q", c.body, e.Code, e.Field, e.Msg, c.code, c.field)
			}
		})
	}
}

// "refund" is served now; the code of a qr_pay is part of its identity.
func TestMarketMessagesServedAndHashed(t *testing.T) {
	if reservedTypes[TypeRefund] || reservedTypes[TypeQRPay] {
		t.Fatal("refund or qr_pay is still reserved")
	}
	a, err := DecodeRequest([]byte(qrPayBody))
	if err != nil {
		t.Fatal(err)
	}
	b := *a
	b.PayCode = qrPayCode[:len(qrPayCode)-1] + "B"
	if a.ContentHash() == b.ContentHash() {
		t.Error("ContentHash ignores the payment code")
	}
	c := *a
	c.TS++
	if a.ContentHash() != c.ContentHash() {
		t.Error("ContentHash depends on the timestamp")
	}
	noInst, err := DecodeRequest([]byte(qrPayNoInstBody))
	if err != nil {
		t.Fatal(err)
	}
	if noInst.ContentHash() == a.ContentHash() {
		t.Error("ContentHash does not tell a qr_pay with inst from one without")
	}
	// A purchase hashes as before the code existed (stored replies of old
	// journals keep their fingerprints).
	p, err := DecodeRequest([]byte(purchaseBody))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.ContentHash(), uint64(purchaseHashV1); got != want {
		t.Errorf("purchase ContentHash = %#x, want %#x", got, want)
	}
}

// purchaseHashV1 is ContentHash(purchaseBody) as computed before qr_pay
// existed: idempotency fingerprints in journals must not change.
const purchaseHashV1 = 0x2bfdf07a8eb00bce

// The examples of docs/protocol.md section 15 decode and are canonical:
// requests (they carry "ts") and replies.
func TestMarketDocExamples(t *testing.T) {
	raw, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^    (\{"v":1,"type":"(?:qr_pay|refund)".*\})$`)
	found := re.FindAllStringSubmatch(string(raw), -1)
	seen := map[string]int{}
	for _, m := range found {
		b := m[1]
		if strings.Contains(b, `"ts":`) {
			r, err := DecodeRequest([]byte(b))
			if err != nil {
				t.Errorf("example %s: %v", b, err)
				continue
			}
			if got := string(r.AppendJSON(nil)); got != b {
				t.Errorf("example %s is not canonical; canonical form is %s", b, got)
			}
			seen[r.Type+" request"]++
			continue
		}
		p, err := DecodeReply([]byte(b))
		if err != nil {
			t.Errorf("example reply %s: %v", b, err)
			continue
		}
		if got := string(p.AppendJSON(nil)); got != b {
			t.Errorf("example reply %s is not canonical; canonical form is %s", b, got)
		}
		if p.Amt == nil || p.Bal == nil || p.Auth == "" {
			t.Errorf("example reply %s lacks amt, bal or auth", b)
		}
		seen[p.Type+" reply"]++
	}
	for _, k := range []string{"qr_pay request", "qr_pay reply", "refund request", "refund reply"} {
		if seen[k] == 0 {
			t.Errorf("docs/protocol.md section 15 has no %s example", k)
		}
	}
}

func BenchmarkDecodeQRPay(b *testing.B) {
	body := []byte(qrPayNoInstBody)
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := DecodeRequestInto(body, &r); err != nil {
			b.Fatal(err)
		}
	}
}
