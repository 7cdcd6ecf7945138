package terminals

import (
	"strings"
	"testing"
)

const uploadBody = `{"v":1,"type":"offline_upload","tid":"BUS-7","txn":5,"ts":1767225600000,"amt":0,"inst":{"k":"county","id":"C-1"},` +
	`"taps":[{"seq":9,"kind":"in","route":"D1","stop":"S1","ts":1767220000000},{"seq":10,"kind":"out","route":"D1","stop":"S3","ts":1767221000000}]}`

func TestOfflineUploadRoundTrip(t *testing.T) {
	var r Request
	if err := DecodeRequestInto([]byte(uploadBody), &r); err != nil {
		t.Fatal(err)
	}
	if r.Type != TypeOfflineUpload || r.Taps.Len() != 2 || r.Taps.At(1) != (UploadTap{Seq: 10, Out: true, Route: "D1", Stop: "S3", TS: 1767221000000}) {
		t.Fatalf("decoded %+v", r.Taps)
	}
	if got := string(r.AppendJSON(nil)); got != uploadBody {
		t.Fatalf("re-encoded:\n%s\nwant\n%s", got, uploadBody)
	}
	other := r
	other.Taps.list[0].Seq = 11
	if other.ContentHash() == r.ContentHash() {
		t.Fatal("another tap seq hashes the same: a changed upload would replay the first reply")
	}
	rep := Reply{V: 1, Type: TypeOfflineUpload, TID: "BUS-7", Txn: 5, Code: CodeApproved, Out: "cd", GTS: 1}
	back, err := DecodeReply(rep.AppendJSON(nil))
	if err != nil || back.Out != "cd" {
		t.Fatalf("reply: %+v %v", back, err)
	}
}

func TestOfflineUploadRefusals(t *testing.T) {
	tap := `{"seq":1,"kind":"in","route":"B1","ts":5}`
	head := `{"v":1,"type":"offline_upload","tid":"BUS-7","txn":5,"ts":1767225600000,"inst":{"k":"county","id":"C-1"}`
	rows := []struct{ name, body, field string }{
		{"no taps", head + `}`, "taps"},
		{"empty taps", head + `,"taps":[]}`, "taps"},
		{"not an array", head + `,"taps":{}}`, "taps"},
		{"unknown tap key", head + `,"taps":[{"seq":1,"kind":"in","route":"B1","ts":5,"x":1}]}`, "taps.x"},
		{"missing ts", head + `,"taps":[{"seq":1,"kind":"in","route":"B1"}]}`, "taps"},
		{"bad kind", head + `,"taps":[{"seq":1,"kind":"up","route":"B1","ts":5}]}`, "taps.kind"},
		{"seq 0", head + `,"taps":[{"seq":0,"kind":"in","route":"B1","ts":5}]}`, "taps.seq"},
		{"duplicate seq", head + `,"taps":[` + tap + `,` + tap + `]}`, "taps.seq"},
		{"duplicate key", head + `,"taps":[{"seq":1,"seq":2,"kind":"in","route":"B1","ts":5}]}`, "taps"},
		{"bad route", head + `,"taps":[{"seq":1,"kind":"in","route":"B 1","ts":5}]}`, "taps.route"},
		{"too many", head + `,"taps":[` + manyTaps(MaxUploadTaps+1) + `]}`, "taps"},
		{"amount on an upload", head + `,"amt":5,"taps":[` + tap + `]}`, "amt"},
		{"taps on a purchase", `{"v":1,"type":"purchase","tid":"BUS-7","txn":5,"ts":1767225600000,"amt":5,"inst":{"k":"county","id":"C-1"},"taps":[` + tap + `]}`, "taps"},
		{"unterminated", head + `,"taps":[` + tap, "taps"},
	}
	for _, row := range rows {
		var r Request
		err := DecodeRequestInto([]byte(row.body), &r)
		e, ok := err.(*Error)
		if !ok || e.Field != row.field {
			t.Errorf("%s: %v, want an error on %q", row.name, err, row.field)
		}
	}
}

func manyTaps(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`{"seq":` + itoa(i) + `,"kind":"in","route":"B1","ts":5}`)
	}
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestECNYOfflineMessage(t *testing.T) {
	ok := `{"v":1,"type":"ecny_offline","tid":"STALL-1","txn":3,"ts":1767225600000,"amt":1500,"inst":{"k":"ecny","id":"w-1"}}`
	var r Request
	if err := DecodeRequestInto([]byte(ok), &r); err != nil || r.Type != TypeECNYOffline || r.Amt != 1500 {
		t.Fatalf("%+v %v", r, err)
	}
	if string(r.AppendJSON(nil)) != ok {
		t.Fatalf("re-encoded %s", r.AppendJSON(nil))
	}
	for name, body := range map[string]string{
		"county card": `{"v":1,"type":"ecny_offline","tid":"STALL-1","txn":3,"ts":1767225600000,"amt":1500,"inst":{"k":"county","id":"C-1"}}`,
		"no amount":   `{"v":1,"type":"ecny_offline","tid":"STALL-1","txn":3,"ts":1767225600000,"amt":0,"inst":{"k":"ecny","id":"w-1"}}`,
	} {
		if err := DecodeRequestInto([]byte(body), &r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
