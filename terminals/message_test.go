package terminals

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const (
	tsExample    = 1767225600000 // 2026-01-01T00:00:00Z in Unix milliseconds
	purchaseBody = `{"v":1,"type":"purchase","tid":"BUS-0001","txn":42,"ts":1767225600000,"amt":200,"inst":{"k":"county","id":"C-00012345"}}`
)

// body builds a request body from a template with the purchase defaults
// replaced: each argument is a complete `"key":value` member or "-key" to
// drop a member.
func body(members ...string) string {
	order := []string{"v", "type", "tid", "txn", "ts", "amt", "inst", "orig"}
	m := map[string]string{
		"v":    `"v":1`,
		"type": `"type":"purchase"`,
		"tid":  `"tid":"BUS-0001"`,
		"txn":  `"txn":42`,
		"ts":   `"ts":1767225600000`,
		"amt":  `"amt":200`,
		"inst": `"inst":{"k":"county","id":"C-00012345"}`,
	}
	for _, mem := range members {
		if strings.HasPrefix(mem, "-") {
			delete(m, mem[1:])
			continue
		}
		k := mem[1 : strings.Index(mem[1:], `"`)+1]
		m[k] = mem
	}
	var parts []string
	for _, k := range order {
		if v, ok := m[k]; ok {
			parts = append(parts, v)
			delete(m, k)
		}
	}
	var extra []string
	for _, v := range m {
		extra = append(extra, v)
	}
	sort.Strings(extra)
	parts = append(parts, extra...)
	return "{" + strings.Join(parts, ",") + "}"
}

func TestBodyHelper(t *testing.T) {
	if got := body(); got != purchaseBody {
		t.Fatalf("body() = %s, want %s", got, purchaseBody)
	}
}

func TestDecodeRequestRefusals(t *testing.T) {
	bank := `"inst":{"k":"bank","id":"tok_9f8e7d6c5b4a","last4":"1111"}`
	cases := []struct {
		name  string
		body  string
		code  Code
		field string
	}{
		// Frame-level and JSON syntax.
		{"oversize", `{"v":1,"tid":"` + strings.Repeat("a", MaxPayload) + `"}`, CodeOversize, ""},
		{"newline inside", "{\"v\":1,\n\"type\":\"heartbeat\"}", CodeMalformed, ""},
		{"empty", ``, CodeMalformed, ""},
		{"not an object", `[1,2]`, CodeMalformed, ""},
		{"bare null", `null`, CodeMalformed, ""},
		{"unterminated", `{"v":1`, CodeMalformed, ""},
		{"trailing brace", purchaseBody + `}`, CodeMalformed, ""},
		{"trailing value", purchaseBody + ` {}`, CodeMalformed, ""},
		{"trailing comma", `{"v":1,}`, CodeMalformed, ""},
		{"missing colon", `{"v" 1}`, CodeMalformed, ""},
		{"missing comma", `{"v":1 "type":"purchase"}`, CodeMalformed, ""},
		{"single quotes", `{'v':1}`, CodeMalformed, ""},
		{"unknown key", body(`"amount":200`), CodeMalformed, "amount"},
		{"unknown key, hostile name", body(`"a b\u0000":1`), CodeMalformed, "?"},
		{"key case differs", body("-amt", `"AMT":200`), CodeMalformed, "AMT"},
		{"duplicate key", `{"v":1,"amt":1,"amt":2}`, CodeMalformed, "amt"},
		{"duplicate via escape", `{"v":1,"amt":1,"\u0061mt":2}`, CodeMalformed, "amt"},
		{"unknown inst key", body(`"inst":{"k":"county","id":"C-1","pan":"x"}`), CodeMalformed, "inst.pan"},
		{"duplicate inst key", body(`"inst":{"k":"county","id":"C-1","id":"C-2"}`), CodeMalformed, "inst.id"},
		{"inst not an object", body(`"inst":"county:C-1"`), CodeMalformed, "inst"},
		{"inst null", body(`"inst":null`), CodeMalformed, "inst"},
		{"inst.id number", body(`"inst":{"k":"county","id":12345}`), CodeMalformed, "inst.id"},
		{"null amount", body(`"amt":null`), CodeMalformed, "amt"},
		{"null string", body(`"tid":null`), CodeMalformed, "tid"},
		{"fraction", body(`"amt":200.0`), CodeMalformed, "amt"},
		{"exponent", body(`"amt":2e2`), CodeMalformed, "amt"},
		{"leading zero", body(`"amt":0200`), CodeMalformed, "amt"},
		{"plus sign", body(`"amt":+200`), CodeMalformed, "amt"},
		{"amount as string", body(`"amt":"200"`), CodeMalformed, "amt"},
		{"amount beyond int64", body(`"amt":9223372036854775808`), CodeMalformed, "amt"},
		{"txn negative", body(`"txn":-1`), CodeMalformed, "txn"},
		{"txn beyond uint64", body(`"txn":18446744073709551616`), CodeMalformed, "txn"},
		{"ts beyond int64", body(`"ts":99999999999999999999`), CodeMalformed, "ts"},
		{"v beyond int32", body(`"v":2147483648`), CodeMalformed, "v"},
		{"tid not a string", body(`"tid":1`), CodeMalformed, "tid"},
		{"control char in string", body("\"tid\":\"BUS\x01\""), CodeMalformed, "tid"},
		{"bad escape", body(`"tid":"BUS\x41"`), CodeMalformed, "tid"},
		{"short unicode escape", body(`"tid":"BUS\u00"`), CodeMalformed, "tid"},
		{"lone surrogate", body(`"tid":"\ud800"`), CodeMalformed, "tid"},
		{"invalid utf-8", body("\"tid\":\"B\xffS\""), CodeMalformed, "tid"},
		{"unterminated string", `{"v":1,"tid":"BUS`, CodeMalformed, "tid"},

		// Version and type.
		{"v missing", body("-v"), CodeUnsupported, "v"},
		{"v 2", body(`"v":2`), CodeUnsupported, "v"},
		{"v 0", body(`"v":0`), CodeUnsupported, "v"},
		{"type missing", body("-type"), CodeUnsupported, "type"},
		{"type unknown", body(`"type":"pay"`), CodeUnsupported, "type"},
		{"type case differs", body(`"type":"Purchase"`), CodeUnsupported, "type"},

		// Terminal id.
		{"tid missing", body("-tid"), CodeMalformed, "tid"},
		{"tid empty", body(`"tid":""`), CodeMalformed, "tid"},
		{"tid too long", body(`"tid":"` + strings.Repeat("a", MaxTerminalIDLen+1) + `"`), CodeMalformed, "tid"},
		{"tid with slash", body(`"tid":"BUS/1"`), CodeMalformed, "tid"},
		{"tid wildcard", body(`"tid":"+"`), CodeMalformed, "tid"},
		{"tid with space", body(`"tid":"BUS 1"`), CodeMalformed, "tid"},

		// txn and ts.
		{"txn missing", body("-txn"), CodeMalformed, "txn"},
		{"txn zero", body(`"txn":0`), CodeMalformed, "txn"},
		{"ts missing", body("-ts"), CodeMalformed, "ts"},
		{"ts zero", body(`"ts":0`), CodeMalformed, "ts"},
		{"ts negative", body(`"ts":-5`), CodeMalformed, "ts"},

		// Instrument.
		{"inst missing", body("-inst"), CodeMalformed, "inst.k"},
		{"inst kind unknown", body(`"inst":{"k":"visa","id":"C-1"}`), CodeMalformed, "inst.k"},
		{"inst id missing", body(`"inst":{"k":"county"}`), CodeMalformed, "inst.id"},
		{"inst id bad char", body(`"inst":{"k":"ecny","id":"w/1"}`), CodeMalformed, "inst.id"},
		{"inst id too long", body(`"inst":{"k":"ecny","id":"` + strings.Repeat("w", MaxInstrumentIDLen+1) + `"}`), CodeMalformed, "inst.id"},
		{"county with last4", body(`"inst":{"k":"county","id":"C-1","last4":"1234"}`), CodeMalformed, "inst.last4"},
		{"ecny with last4", body(`"inst":{"k":"ecny","id":"w-1","last4":"1234"}`), CodeMalformed, "inst.last4"},
		{"county id is a PAN", body(`"inst":{"k":"county","id":"4111111111111111"}`), CodeMalformed, "inst.id"},
		{"county id is a spaced PAN", body(`"inst":{"k":"county","id":"4111-1111-1111-1111"}`), CodeMalformed, "inst.id"},
		{"bank id is a PAN", body(`"inst":{"k":"bank","id":"4111111111111111","last4":"1111"}`), CodeMalformed, "inst.id"},
		{"bank token hides a PAN", body(`"inst":{"k":"bank","id":"tok_4111111111111111","last4":"1111"}`), CodeMalformed, "inst.id"},
		{"bank token empty", body(`"inst":{"k":"bank","id":"tok_","last4":"1111"}`), CodeMalformed, "inst.id"},
		{"bank last4 missing", body(`"inst":{"k":"bank","id":"tok_abc"}`), CodeMalformed, "inst.last4"},
		{"bank last4 short", body(`"inst":{"k":"bank","id":"tok_abc","last4":"111"}`), CodeMalformed, "inst.last4"},
		{"bank last4 letters", body(`"inst":{"k":"bank","id":"tok_abc","last4":"11a1"}`), CodeMalformed, "inst.last4"},

		// Amounts and originals by type.
		{"purchase amt zero", body(`"amt":0`), CodeInvalidAmount, "amt"},
		{"purchase amt missing", body("-amt"), CodeInvalidAmount, "amt"},
		{"purchase amt negative", body(`"amt":-1`), CodeInvalidAmount, "amt"},
		{"purchase amt above max", body(`"amt":` + strconv.FormatInt(MaxAmount+1, 10)), CodeInvalidAmount, "amt"},
		{"purchase amt min int64", body(`"amt":-9223372036854775808`), CodeInvalidAmount, "amt"},
		{"purchase names an original", body(`"orig":7`), CodeMalformed, "orig"},
		{"bank purchase amt zero", body(bank, `"amt":0`), CodeInvalidAmount, "amt"},
		{"reversal without orig", body(`"type":"reversal"`), CodeMalformed, "orig"},
		{"reversal orig equals txn", body(`"type":"reversal"`, `"orig":42`), CodeMalformed, "orig"},
		{"reversal orig after txn", body(`"type":"reversal"`, `"orig":43`), CodeMalformed, "orig"},
		{"reversal amt zero", body(`"type":"reversal"`, `"orig":41`, `"amt":0`), CodeInvalidAmount, "amt"},
		{"reversal amt above max", body(`"type":"reversal"`, `"orig":41`, `"amt":1000000001`), CodeInvalidAmount, "amt"},
		{"balance with amount", body(`"type":"balance"`), CodeMalformed, "amt"},
		{"balance with orig", body(`"type":"balance"`, `"amt":0`, `"orig":1`), CodeMalformed, "orig"},
		{"balance txn zero", body(`"type":"balance"`, "-amt", `"txn":0`), CodeMalformed, "txn"},
		{"heartbeat ts missing", body(`"type":"heartbeat"`, "-amt", "-inst", "-ts"), CodeMalformed, "ts"},
		{"heartbeat with amount", body(`"type":"heartbeat"`, "-inst"), CodeMalformed, "amt"},
		{"heartbeat with inst", body(`"type":"heartbeat"`, "-amt"), CodeMalformed, "amt"},
		{"heartbeat with orig", body(`"type":"heartbeat"`, "-amt", "-inst", `"orig":3`), CodeMalformed, "amt"},
	}
	cases = append(cases, []struct {
		name  string
		body  string
		code  Code
		field string
	}{
		{"capture without orig", body(`"type":"capture"`), CodeMalformed, "orig"},
		{"release without orig", body(`"type":"release"`), CodeMalformed, "orig"},
		{"hold with zero amount", body(`"type":"hold"`, "-amt", `"amt":0`), CodeInvalidAmount, "amt"},
		{"hold with item", body(`"type":"hold"`, `"item":"REG"`), CodeMalformed, "item"},
		{"ins missing self", body(`"type":"purchase"`, `"ins":{"pool":1,"personal":2}`), CodeMalformed, "ins"},
		{"ins unknown key", body(`"type":"purchase"`, `"ins":{"pool":1,"personal":2,"self":3,"x":1}`), CodeMalformed, "ins.x"},
	}...)
	for typ := range reservedTypes {
		cases = append(cases, struct {
			name  string
			body  string
			code  Code
			field string
		}{"reserved " + typ, body(`"type":"` + typ + `"`), CodeUnsupported, "type"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Request{TID: "stale", Amt: 99}
			err := DecodeRequestInto([]byte(c.body), &r)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("DecodeRequestInto(%s) = %v, want *Error %s", c.body, err, c.code)
			}
			if e.Code != c.code || e.Field != c.field {
				t.Fatalf("DecodeRequestInto(%s) = code %s field %q (%v), want code %s field %q",
					c.body, e.Code, e.Field, err, c.code, c.field)
			}
			if e.Error() == "" || !strings.Contains(e.Error(), string(c.code)) {
				t.Fatalf("error text %q does not carry the code", e.Error())
			}
			if got, err2 := DecodeRequest([]byte(c.body)); got != nil || err2 == nil {
				t.Fatalf("DecodeRequest returned %+v, %v for a refused body", got, err2)
			}
		})
	}
}

func TestDecodeRequestAccepts(t *testing.T) {
	cases := []struct {
		name string
		body string
		want Request
	}{
		{"purchase", purchaseBody, Request{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 42, TS: tsExample, Amt: 200,
			Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}}},
		{"purchase at max amount", body(`"amt":1000000000`), Request{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 42, TS: tsExample, Amt: MaxAmount,
			Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}}},
		{"bank token", body(`"inst":{"k":"bank","id":"tok_9f8e7d6c5b4a","last4":"1111"}`), Request{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 42, TS: tsExample, Amt: 200,
			Inst: Instrument{Kind: InstBank, ID: "tok_9f8e7d6c5b4a", Last4: "1111"}}},
		{"reversal", body(`"type":"reversal"`, `"orig":41`), Request{V: 1, Type: TypeReversal, TID: "BUS-0001", Txn: 42, TS: tsExample, Amt: 200,
			Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}, Orig: 41}},
		{"balance without amt", body(`"type":"balance"`, "-amt"), Request{V: 1, Type: TypeBalance, TID: "BUS-0001", Txn: 42, TS: tsExample,
			Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}}},
		{"balance with amt 0", body(`"type":"balance"`, `"amt":0`, `"inst":{"k":"ecny","id":"w-1"}`), Request{V: 1, Type: TypeBalance, TID: "BUS-0001", Txn: 42, TS: tsExample,
			Inst: Instrument{Kind: InstECNY, ID: "w-1"}}},
		{"heartbeat without txn", body(`"type":"heartbeat"`, "-amt", "-inst", "-txn"), Request{V: 1, Type: TypeHeartbeat, TID: "BUS-0001", TS: tsExample}},
		{"heartbeat with txn", body(`"type":"heartbeat"`, "-amt", "-inst", `"txn":9`), Request{V: 1, Type: TypeHeartbeat, TID: "BUS-0001", Txn: 9, TS: tsExample}},
		{"any key order and whitespace", " {\t\"inst\" : { \"id\":\"C-00012345\" , \"k\":\"county\" } , \"amt\":200,\"ts\":1767225600000,\"txn\":42,\"tid\":\"BUS-0001\",\"type\":\"purchase\",\"v\":1 } \r",
			Request{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 42, TS: tsExample, Amt: 200, Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}}},
		{"escapes in strings and keys", `{"v":1,"type":"purch\u0061se","\u0074id":"BUS\u002d0001","txn":42,"ts":1767225600000,"amt":200,"inst":{"k":"county","id":"C\/1"}}`,
			Request{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 42, TS: tsExample, Amt: 200, Inst: Instrument{Kind: InstCounty, ID: "C/1"}}},
		{"largest txn", body(`"txn":18446744073709551615`), Request{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 1<<64 - 1, TS: tsExample, Amt: 200,
			Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			err := DecodeRequestInto([]byte(c.body), &r)
			if c.name == "escapes in strings and keys" {
				// "C/1" is decoded, then refused by the id rule: escapes are
				// not a way around validation.
				if codeOf(err) != CodeMalformed {
					t.Fatalf("escaped slash in inst.id: %v, want %s", err, CodeMalformed)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeRequestInto(%s): %v", c.body, err)
			}
			if r != c.want {
				t.Fatalf("decoded %+v, want %+v", r, c.want)
			}
		})
	}
}

// On error the request keeps the type and txn id it read, for the echo in
// the refusal, but never an unknown type's text.
func TestDecodeRequestIntoPartial(t *testing.T) {
	var r Request
	for typ := range reservedTypes {
		err := DecodeRequestInto([]byte(body(`"type":"`+typ+`"`)), &r)
		if codeOf(err) != CodeUnsupported || r.Type != typ || r.Txn != 42 {
			t.Fatalf("reserved type: %v, type %q txn %d", err, r.Type, r.Txn)
		}
	}
	err := DecodeRequestInto([]byte(body(`"type":"refund"`)), &r)
	if codeOf(err) != CodeMalformed || r.Type != TypeRefund || r.Txn != 42 {
		t.Fatalf("refund without orig: %v, type %q txn %d", err, r.Type, r.Txn)
	}
	err = DecodeRequestInto([]byte(body(`"type":"`+strings.Repeat("x", 3000)+`"`)), &r)
	if codeOf(err) != CodeUnsupported || r.Type != "" || r.Txn != 42 {
		t.Fatalf("unknown type: %v, type of %d bytes, txn %d", err, len(r.Type), r.Txn)
	}
	err = DecodeRequestInto([]byte(`{"v":1,"type":"purchase","txn":7,"amt":1.5}`), &r)
	if codeOf(err) != CodeMalformed || r.Type != TypePurchase || r.Txn != 7 {
		t.Fatalf("syntax error after type and txn: %v, type %q txn %d", err, r.Type, r.Txn)
	}
}

// A reused Request keeps no state from the previous decode.
func TestDecodeRequestIntoResets(t *testing.T) {
	var r Request
	if err := DecodeRequestInto([]byte(body(`"type":"reversal"`, `"orig":41`, `"inst":{"k":"bank","id":"tok_a1","last4":"1234"}`)), &r); err != nil {
		t.Fatal(err)
	}
	if err := DecodeRequestInto([]byte(body(`"type":"heartbeat"`, "-amt", "-inst")), &r); err != nil {
		t.Fatal(err)
	}
	want := Request{V: 1, Type: TypeHeartbeat, TID: "BUS-0001", Txn: 42, TS: tsExample}
	if r != want {
		t.Fatalf("after reuse %+v, want %+v", r, want)
	}
}

func sampleRequests() []Request {
	return []Request{
		{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 1, TS: tsExample, Amt: 1, Inst: Instrument{Kind: InstCounty, ID: "C-00012345"}},
		{V: 1, Type: TypePurchase, TID: "STALL.17_a", Txn: 1<<64 - 1, TS: 1<<63 - 1, Amt: MaxAmount, Inst: Instrument{Kind: InstBank, ID: "tok_Zx9.-_", Last4: "0042"}},
		{V: 1, Type: TypeReversal, TID: "KIOSK-3", Txn: 10, TS: tsExample, Amt: 350, Inst: Instrument{Kind: InstECNY, ID: "w-0001"}, Orig: 9},
		{V: 1, Type: TypeBalance, TID: "KIOSK-3", Txn: 11, TS: tsExample, Inst: Instrument{Kind: InstECNY, ID: "w-0001"}},
		{V: 1, Type: TypeHeartbeat, TID: "BUS-0001", TS: tsExample},
		{V: 1, Type: TypeHeartbeat, TID: "BUS-0001", Txn: 77, TS: tsExample},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, want := range sampleRequests() {
		b := want.AppendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("AppendJSON wrote invalid JSON: %s", b)
		}
		got, err := DecodeRequest(b)
		if err != nil {
			t.Fatalf("DecodeRequest(%s): %v", b, err)
		}
		if *got != want {
			t.Fatalf("round trip %s: got %+v, want %+v", b, *got, want)
		}
		if again := got.AppendJSON(nil); string(again) != string(b) {
			t.Fatalf("AppendJSON is not canonical: %s then %s", b, again)
		}
	}
	// The canonical form of the example purchase is exactly the documented body.
	r, err := DecodeRequest([]byte(purchaseBody))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.AppendJSON(nil)); got != purchaseBody {
		t.Fatalf("canonical purchase = %s, want %s", got, purchaseBody)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	bal := func(v int64) *int64 { return &v }
	replies := []Reply{
		{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 42, Code: CodeApproved, Auth: "J-00000000000001f4", Bal: bal(9800), GTS: tsExample + 12},
		{V: 1, Type: TypePurchase, TID: "BUS-0001", Txn: 43, Code: CodeInsufficientFunds, Bal: bal(0), GTS: tsExample},
		{V: 1, Type: TypeBalance, TID: "BUS-0001", Txn: 44, Code: CodeApproved, Bal: bal(-1 << 63), GTS: 1},
		{V: 1, Type: TypeHeartbeat, TID: "BUS-0001", Code: CodeApproved, GTS: tsExample},
		{V: 1, Type: TypeOfflineUpload, TID: "BUS-0042", Txn: 78, Code: CodeApproved, Auth: "01-0000000013", Amt: bal(300), Debt: bal(200), Bal: bal(0), Out: "ccd", GTS: tsExample},
		{V: 1, Type: "", TID: "BUS-0001", Code: CodeBadMAC, GTS: tsExample},
		// Strings that strconv.Quote would have written as invalid JSON.
		{V: 1, Type: "x\x7f\a\v\x00\"\\/\u2028\u2029é中😀", TID: "T", Txn: 1, Code: CodeMalformed, Auth: "\t\r\n\b\f", GTS: -5},
	}
	for _, want := range replies {
		b := want.AppendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("Reply.AppendJSON wrote invalid JSON: %q", b)
		}
		// encoding/json reads the same values (the encoding is plain JSON).
		var std Reply
		if err := json.Unmarshal(b, &std); err != nil || !reflect.DeepEqual(std, want) {
			t.Fatalf("encoding/json read %q as %+v (%v), want %+v", b, std, err, want)
		}
		got, err := DecodeReply(b)
		if err != nil {
			t.Fatalf("DecodeReply(%q): %v", b, err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("round trip %q: got %+v, want %+v", b, *got, want)
		}
	}
	// Invalid UTF-8 in a string is written as U+FFFD, never raw.
	b := (&Reply{V: 1, TID: "T", Code: CodeApproved, Auth: "a\xffb"}).AppendJSON(nil)
	if got, err := DecodeReply(b); err != nil || got.Auth != "a\ufffdb" {
		t.Fatalf("invalid UTF-8 auth: %q -> %+v, %v", b, got, err)
	}
}

func TestDecodeReplyRefusals(t *testing.T) {
	ok := `{"v":1,"type":"purchase","tid":"BUS-0001","txn":42,"code":"00","auth":"J-1","bal":9800,"gts":1767225600012}`
	if _, err := DecodeReply([]byte(ok)); err != nil {
		t.Fatalf("DecodeReply(good): %v", err)
	}
	cases := []struct {
		name  string
		body  string
		code  Code
		field string
	}{
		{"oversize", `{"auth":"` + strings.Repeat("a", MaxPayload) + `"}`, CodeOversize, ""},
		{"newline", "{\"v\":1,\n\"code\":\"00\"}", CodeMalformed, ""},
		{"not JSON", `v=1`, CodeMalformed, ""},
		{"trailing", ok + `}`, CodeMalformed, ""},
		{"version", strings.Replace(ok, `"v":1`, `"v":2`, 1), CodeUnsupported, "v"},
		{"unknown code", strings.Replace(ok, `"code":"00"`, `"code":"ZZ"`, 1), CodeMalformed, "code"},
		{"missing code", strings.Replace(ok, `"code":"00",`, ``, 1), CodeMalformed, "code"},
		{"bad tid", strings.Replace(ok, `"tid":"BUS-0001"`, `"tid":"a/b"`, 1), CodeMalformed, "tid"},
		{"unknown key", strings.Replace(ok, `"auth"`, `"authz"`, 1), CodeMalformed, "authz"},
		{"duplicate key", strings.Replace(ok, `"bal":9800`, `"bal":9800,"bal":1`, 1), CodeMalformed, "bal"},
		{"duplicate debt", strings.Replace(ok, `"bal":9800`, `"debt":1,"bal":9800,"debt":1`, 1), CodeMalformed, "debt"},
		{"debt fraction", strings.Replace(ok, `"bal":9800`, `"debt":1.5,"bal":9800`, 1), CodeMalformed, "debt"},
		{"bal null", strings.Replace(ok, `"bal":9800`, `"bal":null`, 1), CodeMalformed, "bal"},
		{"bal fraction", strings.Replace(ok, `"bal":9800`, `"bal":98.5`, 1), CodeMalformed, "bal"},
		{"txn negative", strings.Replace(ok, `"txn":42`, `"txn":-42`, 1), CodeMalformed, "txn"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeReply([]byte(c.body))
			var e *Error
			if !errors.As(err, &e) || got != nil {
				t.Fatalf("DecodeReply(%s) = %+v, %v; want *Error %s", c.body, got, err, c.code)
			}
			if e.Code != c.code || e.Field != c.field {
				t.Fatalf("DecodeReply(%s) = %s %q (%v), want %s %q", c.body, e.Code, e.Field, err, c.code, c.field)
			}
		})
	}
}

func TestContentHash(t *testing.T) {
	base := Request{V: 1, Type: TypeReversal, TID: "BUS-0001", Txn: 42, TS: tsExample, Amt: 200,
		Inst: Instrument{Kind: InstBank, ID: "tok_abc", Last4: "1234"}, Orig: 41}
	h := base.ContentHash()
	if h != base.ContentHash() {
		t.Fatal("ContentHash is not stable")
	}
	ts := base
	ts.TS += 60_000
	if ts.ContentHash() != h {
		t.Fatal("ContentHash depends on ts; a re-stamped retry would be an ID_CONFLICT")
	}
	// Every other field changes the hash. The set of mutations must name
	// every field, so a new field forces a decision here.
	mutate := map[string]func(r *Request){
		"V":          func(r *Request) { r.V = 2 },
		"Type":       func(r *Request) { r.Type = TypePurchase },
		"TID":        func(r *Request) { r.TID = "BUS-0002" },
		"Txn":        func(r *Request) { r.Txn = 43 },
		"Amt":        func(r *Request) { r.Amt = 201 },
		"Inst.Kind":  func(r *Request) { r.Inst.Kind = InstCounty },
		"Inst.ID":    func(r *Request) { r.Inst.ID = "tok_abd" },
		"Inst.Last4": func(r *Request) { r.Inst.Last4 = "1235" },
		"Orig":       func(r *Request) { r.Orig = 40 },
		"Route":      func(r *Request) { r.Route = "B1" },
		"Stop":       func(r *Request) { r.Stop = "S1" },
		"Item":       func(r *Request) { r.Item = "REG" },
		"Ins":        func(r *Request) { r.Ins = Insurance{Pool: 1, Personal: 0, Self: 199, Set: true} },
		"PayCode":    func(r *Request) { r.PayCode = "SPC1AB" },
		"Taps":       func(r *Request) { r.Taps.Add(UploadTap{Seq: 1, Route: "B1", TS: 1}) },
	}
	var fields []string
	rt := reflect.TypeOf(Request{})
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if f.Type == reflect.TypeOf(Instrument{}) {
			for j := 0; j < f.Type.NumField(); j++ {
				fields = append(fields, f.Name+"."+f.Type.Field(j).Name)
			}
			continue
		}
		fields = append(fields, f.Name)
	}
	for _, f := range fields {
		// Cfg and OBK are only on heartbeats, which are never deduplicated,
		// so they are deliberately not part of the idempotency fingerprint.
		if f == "TS" || f == "Cfg" || f == "OBK" {
			continue
		}
		m, ok := mutate[f]
		if !ok {
			t.Errorf("field %s has no ContentHash case", f)
			continue
		}
		r := base
		m(&r)
		if r.ContentHash() == h {
			t.Errorf("changing %s does not change ContentHash", f)
		}
	}
	// Length prefixes keep adjacent strings apart.
	a := Request{Inst: Instrument{Kind: "ab", ID: "c"}}
	b := Request{Inst: Instrument{Kind: "a", ID: "bc"}}
	if a.ContentHash() == b.ContentHash() {
		t.Error("kind/id boundary is not part of the hash")
	}
}

func TestLooksLikePAN(t *testing.T) {
	yes := []string{
		"4111111111111111",             // Visa test
		"5555555555554444",             // Mastercard test
		"378282246310005",              // Amex test, 15 digits
		"6011111111111117",             // Discover test
		"6200000000000005",             // UnionPay test
		"4222222222222",                // 13-digit Visa test
		"tok_4111111111111111",         // a PAN inside a token
		"x4111111111111111y",           // inside other text
		"99 4111111111111111",          // after another run
		"4111 1111 1111 1111",          // printed with spaces
		"4111-1111-1111-1111",          // typed with hyphens
		strings.Repeat("7", 80),        // longer than the gathered run
		strings.Repeat("1 ", 63) + "1", // 64 one-digit groups: the run bound
		"20264111111111111111",         // a PAN glued to other digits (20-digit run)
	}
	for _, s := range yes {
		if !LooksLikePAN(s) {
			t.Errorf("LooksLikePAN(%q) = false, want true", s)
		}
	}
	no := []string{
		"",
		"tok_9f8e7d6c5b4a",
		"C-00012345",
		"w-0001",
		"BUS-0001",
		"4111111111111112",             // Luhn fails
		"4111111111112",                // Luhn fails, 13 digits
		"411111111111",                 // 12 digits: too short
		"6212345678901234567",          // 19 digits, Luhn fails
		"C-0000000000000000001",        // a long county card number failing Luhn
		"4111 1111  1111 1111",         // a double space ends the run
		"4111111-",                     // short run
		"1234567890123",                // 13 digits, Luhn fails
		strings.Repeat("1 ", 62) + "1", // 63 one-digit groups, every 13..19 span fails Luhn
	}
	for _, s := range no {
		if LooksLikePAN(s) {
			t.Errorf("LooksLikePAN(%q) = true, want false", s)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, s := range []string{"a", "A-Z_0.9", strings.Repeat("x", 32)} {
		if !ValidID(s, 32) {
			t.Errorf("ValidID(%q) = false", s)
		}
	}
	for _, s := range []string{"", strings.Repeat("x", 33), "a b", "a/b", "a+b", "a#b", "é", "a\x00"} {
		if ValidID(s, 32) {
			t.Errorf("ValidID(%q) = true", s)
		}
	}
}

func TestInstrumentKey(t *testing.T) {
	if got := (Instrument{Kind: InstECNY, ID: "w-1"}).Key(); got != "ecny:w-1" {
		t.Fatalf("Key = %q, want ecny:w-1", got)
	}
}
