package terminals

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Seeds shared by the body fuzzers; testdata/fuzz/<name>/ holds more,
// kept from fuzzing runs because they reached distinct paths.
var bodySeeds = []string{
	purchaseBody,
	uploadBody,
	`{"v":1,"type":"reversal","tid":"KIOSK-3","txn":10,"ts":1767225600000,"amt":350,"inst":{"k":"ecny","id":"w-0001"},"orig":9}`,
	`{"v":1,"type":"balance","tid":"KIOSK-3","txn":11,"ts":1767225600000,"amt":0,"inst":{"k":"bank","id":"tok_ab12","last4":"0042"}}`,
	`{"v":1,"type":"heartbeat","tid":"BUS-0001","txn":0,"ts":1767225600000}`,
	`{"v":1,"type":"heartbeat","tid":"BUS-0001","txn":0,"ts":1767225600000,"obk":{"n":3,"oldest":1767225500000}}`,
	`{"v":1,"type":"heartbeat","tid":"BUS-0001","txn":0,"ts":1767225600000,"obk":{"oldest":0,"n":0}}`,
	`{"v":1,"type":"heartbeat","tid":"BUS-0001","ts":1,"obk":{"n":1}}`,
	qrPayBody,
	qrPayNoInstBody,
	refundBody,
	`{"v":1,"type":"qr_pay","tid":"STALL-017","txn":1,"ts":1,"amt":1,"code":"spc1"}`,
	`{"v":1,"type":"refund","tid":"STALL-017","txn":2,"ts":1,"amt":1,"inst":{"k":"county","id":"C-1"},"orig":1,"code":"SPC1"}`,
	`{"v":1,"type":"purchase","tid":"BUS-0001","txn":42,"code":"00","auth":"J-1","bal":9800,"gts":1767225600012}`,
	`{"v":1,"type":"purch\u0061se","tid":"BUS\u002d1","txn":1,"ts":1,"amt":1,"inst":{"k":"county","id":"\ud83d\ude00"}}`,
	`{"amt":1,"amt":2}`,
	`{"v":1.0}`,
	`{}`,
	``,
}

// mustCoded fails unless err is a *Error whose code is in the catalogue.
func mustCoded(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *Error", err, err)
	}
	if _, ok := e.Code.Info(); !ok {
		t.Fatalf("error code %q is not in the catalogue", e.Code)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(Seal(testKey, []byte(purchaseBody)))
	f.Add([]byte(purchaseBody))
	f.Add([]byte("{}\n" + strings.Repeat("0", MACHexLen)))
	f.Add([]byte("{}\r\n" + strings.Repeat("A", MACHexLen)))
	f.Add(bytes.Repeat([]byte{'\n'}, 70))
	f.Fuzz(func(t *testing.T, payload []byte) {
		s := NewSigner(testKey)
		body, err := s.Open(payload)
		if err != nil {
			mustCoded(t, err)
			if body != nil {
				t.Fatal("Open returned a body with an error")
			}
		} else if again := s.Seal(nil, body); !bytes.Equal(again, payload) {
			// One body has exactly one valid frame.
			t.Fatalf("Open accepted %q, but Seal of its body is %q", payload, again)
		}
		// Seal then Open gives the body back, within the size bounds.
		sealed := s.Seal(nil, payload)
		got, err := s.Open(sealed)
		switch {
		case len(sealed) > MaxPayload:
			if codeOf(err) != CodeOversize {
				t.Fatalf("Open of an oversize frame: %v", err)
			}
		case len(payload) < 2:
			if codeOf(err) != CodeMalformed {
				t.Fatalf("Open of a frame with a %d-byte body: %v", len(payload), err)
			}
		case err != nil:
			t.Fatalf("Open(Seal(%q)): %v", payload, err)
		case !bytes.Equal(got, payload):
			t.Fatalf("Open(Seal(%q)) = %q", payload, got)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			mustCoded(t, err)
			return
		}
		// What the strict decoder accepts, encoding/json reads the same way.
		var std Request
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("accepted %q that encoding/json refuses: %v", data, err)
		}
		if std != *r {
			t.Fatalf("decoded %q as %+v, encoding/json as %+v", data, *r, std)
		}
		// Re-encoding gives a body that decodes to the same request.
		enc := r.AppendJSON(nil)
		r2, err := DecodeRequest(enc)
		if err != nil {
			t.Fatalf("re-encoded %q -> %q does not decode: %v", data, enc, err)
		}
		if *r2 != *r {
			t.Fatalf("round trip %q: %+v then %+v", data, *r, *r2)
		}
		if r2.ContentHash() != r.ContentHash() {
			t.Fatal("ContentHash differs after a round trip")
		}
		if again := r2.AppendJSON(nil); !bytes.Equal(again, enc) {
			t.Fatalf("AppendJSON is not canonical: %q then %q", enc, again)
		}
		// A decoded request never carries a card number.
		if LooksLikePAN(r.Inst.ID) {
			t.Fatalf("accepted a PAN-like instrument id %q", r.Inst.ID)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"v":1,"type":"x\u007f\u2028","tid":"T","txn":1,"code":"A1","auth":"\"\\\/\b\f\n\r\t","gts":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeReply(data)
		if err != nil {
			mustCoded(t, err)
			return
		}
		var std Reply
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("accepted %q that encoding/json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(std, *p) {
			t.Fatalf("decoded %q as %+v, encoding/json as %+v", data, *p, std)
		}
		enc := p.AppendJSON(nil)
		p2, err := DecodeReply(enc)
		if err != nil {
			t.Fatalf("re-encoded %q -> %q does not decode: %v", data, enc, err)
		}
		if !reflect.DeepEqual(*p2, *p) {
			t.Fatalf("round trip %q: %+v then %+v", data, *p, *p2)
		}
		if again := p2.AppendJSON(nil); !bytes.Equal(again, enc) {
			t.Fatalf("Reply.AppendJSON is not canonical: %q then %q", enc, again)
		}
	})
}

func FuzzTerminalFromTopic(f *testing.F) {
	for _, s := range []string{
		"scp/v1/t/BUS-0001/req", "scp/v1/t/BUS-0001/resp", "scp/v1/t/+/req", "scp/v1/t/#",
		"scp/v1/t/a/b/req", "scp/v1/g/bus/cfg", "$share/g/scp/v1/t/X/req", "scp/v1/t//req", "",
	} {
		f.Add(s)
	}
	tp := DefaultTopics
	f.Fuzz(func(t *testing.T, topic string) {
		tid, ok := tp.TerminalFromTopic(topic)
		if !ok {
			if tid != "" {
				t.Fatalf("refused %q but returned tid %q", topic, tid)
			}
			return
		}
		if !ValidID(tid, MaxTerminalIDLen) || strings.ContainsAny(tid, "/+#$") {
			t.Fatalf("accepted %q with tid %q", topic, tid)
		}
		if topic != tp.Request(tid) && topic != tp.Reply(tid) && topic != tp.Status(tid) && topic != tp.Config(tid) {
			t.Fatalf("accepted %q, which no topic builder makes for %q", topic, tid)
		}
	})
}
