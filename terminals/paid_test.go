package terminals

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"testing"
)

const paidBody = `{"v":1,"type":"paid","tid":"STALL-017","txn":4611686018427387905,"code":"00","auth":"03-0000000041","amt":1550,"sc":"SCAB2CD3EF4GH5IJ6KL7MN","gts":1767225600012}`

func TestDecodePaid(t *testing.T) {
	p, err := DecodePaid([]byte(paidBody))
	if err != nil {
		t.Fatal(err)
	}
	want := Paid{V: 1, Type: NoticePaid, TID: "STALL-017", Txn: 1<<62 + 1, Code: CodeApproved, Auth: "03-0000000041",
		Amt: 1550, SC: "SCAB2CD3EF4GH5IJ6KL7MN", GTS: 1767225600012}
	if *p != want {
		t.Fatalf("decoded %+v, want %+v", *p, want)
	}
	if got := string(p.AppendJSON(nil)); got != paidBody {
		t.Fatalf("not canonical:\n%s\n%s", got, paidBody)
	}
	for _, c := range []struct{ name, body string }{
		{"missing sc", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1,"gts":1}`},
		{"unknown key", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1,"sc":"X","gts":1,"bal":5}`},
		{"duplicate key", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1,"amt":2,"sc":"X","gts":1}`},
		{"decline", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"51","auth":"a","amt":1,"sc":"X","gts":1}`},
		{"other type", `{"v":1,"type":"qr_pay","tid":"S","txn":1,"code":"00","auth":"a","amt":1,"sc":"X","gts":1}`},
		{"zero amount", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":0,"sc":"X","gts":1}`},
		{"amount over max", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1000000001,"sc":"X","gts":1}`},
		{"zero txn", `{"v":1,"type":"paid","tid":"S","txn":0,"code":"00","auth":"a","amt":1,"sc":"X","gts":1}`},
		{"bad stall code", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1,"sc":"X/Y","gts":1}`},
		{"bad tid", `{"v":1,"type":"paid","tid":"S T","txn":1,"code":"00","auth":"a","amt":1,"sc":"X","gts":1}`},
		{"fraction", `{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1.5,"sc":"X","gts":1}`},
		{"version 2", `{"v":2,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1,"sc":"X","gts":1}`},
		{"trailing", paidBody + `{}`},
	} {
		if _, err := DecodePaid([]byte(c.body)); err == nil {
			t.Errorf("%s: accepted %s", c.name, c.body)
		} else {
			mustCoded(t, err)
		}
	}
}

func FuzzDecodePaid(f *testing.F) {
	f.Add([]byte(paidBody))
	f.Add([]byte(`{"v":1,"type":"paid","tid":"S","txn":1,"code":"00","auth":"a","amt":1,"sc":"X","gts":-1}`))
	f.Add([]byte(`{"gts":1,"sc":"X","amt":1,"auth":"a","code":"00","txn":1,"tid":"S","type":"p\u0061id","v":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePaid(data)
		if err != nil {
			mustCoded(t, err)
			return
		}
		var std Paid
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("accepted %q that encoding/json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(std, *p) {
			t.Fatalf("decoded %q as %+v, encoding/json as %+v", data, *p, std)
		}
		enc := p.AppendJSON(nil)
		p2, err := DecodePaid(enc)
		if err != nil {
			t.Fatalf("re-encoded %q -> %q does not decode: %v", data, enc, err)
		}
		if *p2 != *p {
			t.Fatalf("round trip %q: %+v then %+v", data, *p, *p2)
		}
		if again := p2.AppendJSON(nil); !bytes.Equal(again, enc) {
			t.Fatalf("Paid.AppendJSON is not canonical: %q then %q", enc, again)
		}
	})
}

// The paid notice shown in docs/protocol.md decodes and is canonical.
func TestProtocolDocPaidExample(t *testing.T) {
	raw, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^    (\{"v":1,"type":"paid".*\})$`).FindAllStringSubmatch(string(raw), -1)
	if len(m) == 0 {
		t.Fatal("docs/protocol.md shows no paid notice")
	}
	for _, x := range m {
		p, err := DecodePaid([]byte(x[1]))
		if err != nil {
			t.Errorf("example %s: %v", x[1], err)
			continue
		}
		if got := string(p.AppendJSON(nil)); got != x[1] {
			t.Errorf("example %s is not canonical; canonical form is %s", x[1], got)
		}
	}
}
