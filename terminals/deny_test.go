package terminals

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDenyTopics(t *testing.T) {
	if got := DenyTopicFull(DefaultTopics); got != "scp/v1/g/bus/deny/full" {
		t.Errorf("full topic %s", got)
	}
	if got := DenyTopicDelta(DefaultTopics); got != "scp/v1/g/bus/deny/delta" {
		t.Errorf("delta topic %s", got)
	}
	// The deny topics sit beside the group's config topic.
	if cfg := DefaultTopics.GroupConfig(DenyGroup); !strings.HasPrefix(DenyTopicFull(DefaultTopics), strings.TrimSuffix(cfg, "cfg")) {
		t.Errorf("deny topics are not under the bus group: %s", cfg)
	}
}

// The canonical encodings are the bodies docs/protocol.md section 16 shows.
func TestDenyMessageEncoding(t *testing.T) {
	for _, c := range []struct {
		m    DenyMessage
		want string
	}{
		{DenyMessage{V: 1, Kind: DenyKindFull, Version: 3, Cards: []string{"county:A", "county:B"}},
			`{"v":1,"kind":"full","version":3,"cards":["county:A","county:B"]}`},
		{DenyMessage{V: 1, Kind: DenyKindFull}, `{"v":1,"kind":"full","version":0,"cards":[]}`},
		{DenyMessage{V: 1, Kind: DenyKindDelta, From: 3, Version: 5, Add: []string{"county:C"}},
			`{"v":1,"kind":"delta","from":3,"version":5,"add":["county:C"],"remove":[]}`},
		{DenyMessage{V: 1, Kind: DenyKindDelta, From: 3, Version: 3, StopFirstRides: []string{"B1", "B7"}, StopDay: 20500},
			`{"v":1,"kind":"delta","from":3,"version":3,"add":[],"remove":[],"stop_first_rides":["B1","B7"],"stop_day":20500}`},
		// A stop day without stopped routes says nothing and is not written.
		{DenyMessage{V: 1, Kind: DenyKindDelta, From: 1, Version: 2, Remove: []string{`q"\`}, StopDay: 9},
			`{"v":1,"kind":"delta","from":1,"version":2,"add":[],"remove":["q\"\\"]}`},
	} {
		got := c.m.AppendJSON(nil)
		if string(got) != c.want {
			t.Errorf("AppendJSON(%+v)\n got %s\nwant %s", c.m, got, c.want)
			continue
		}
		back, err := DecodeDeny(got)
		if err != nil {
			t.Errorf("%s does not decode: %v", got, err)
			continue
		}
		if again := back.AppendJSON(nil); !bytes.Equal(again, got) {
			t.Errorf("%s decodes to %+v, which encodes as %s", got, back, again)
		}
	}
}

// A card key with a control character still encodes as JSON a reader reads.
func TestDenyMessageEncodesJSONEscapes(t *testing.T) {
	m := DenyMessage{V: 1, Kind: DenyKindFull, Version: 1, Cards: []string{"county:\x01\t\u00e9"}}
	back, err := DecodeDeny(m.AppendJSON(nil))
	if err != nil || !reflect.DeepEqual(back.Cards, m.Cards) {
		t.Fatalf("decoded %+v, %v", back, err)
	}
}

func TestDecodeDenyRefusals(t *testing.T) {
	for _, body := range []string{
		`{"v":2,"kind":"full","version":1,"cards":[]}`,
		`{"v":1,"kind":"half","version":1}`,
		`{"v":1,"kind":"full","version":1,"cards":[],"add":["x"]}`,
		`{"v":1,"kind":"full","version":1,"cards":[],"stop_first_rides":["B1"]}`,
		`{"v":1,"kind":"full","from":1,"version":1,"cards":[]}`,
		`{"v":1,"kind":"delta","from":5,"version":4,"add":[],"remove":[]}`,
		`{"v":1,"kind":"delta","from":1,"version":4,"cards":["x"]}`,
		`{"v":1,"kind":"full","version":1,"cards":[""]}`,
		`{"v":1,"kind":"full","version":1,"cards":["` + strings.Repeat("x", DenyEntryMax+1) + `"]}`,
		`{"v":1,"kind":"delta","from":1,"version":1,"stop_first_rides":["B1"` + strings.Repeat(`,"B1"`, DenyStopsMax) + `]}`,
		`{"v":1,"kind":"full","version":1,"cards":[],"extra":1}`,
		`{"v":1,"kind":"full","version":1,"cards":[]} {}`,
		`{"v":1,"kind":"full","version":1,"cards":[]` + strings.Repeat(" ", DenyPayloadMax) + `}`,
		`[]`,
	} {
		if _, err := DecodeDeny([]byte(body)); !errors.Is(err, ErrDeny) {
			t.Errorf("%.80s: %v, want ErrDeny", body, err)
		}
	}
	m, err := DecodeDeny([]byte(`{"v":1,"kind":"delta","from":3,"version":5,"add":["county:1"],"remove":[],"stop_first_rides":["B1"],"stop_day":20000}`))
	if err != nil || m.From != 3 || m.Version != 5 || m.StopDay != 20000 || len(m.Add) != 1 {
		t.Fatalf("%+v %v", m, err)
	}
}

// FuzzDecodeDeny: what decodes is in bounds, and its canonical encoding
// decodes to a message with the same canonical encoding.
func FuzzDecodeDeny(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"full","version":3,"cards":["county:8800000001"]}`))
	f.Add([]byte(`{"v":1,"kind":"delta","from":3,"version":5,"add":["a"],"remove":["b"],"stop_first_rides":["B1"],"stop_day":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeDeny(b)
		if err != nil {
			if !errors.Is(err, ErrDeny) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if m.V != 1 || (m.Kind != DenyKindFull && m.Kind != DenyKindDelta) || (m.Kind == DenyKindDelta && m.From > m.Version) ||
			len(m.StopFirstRides) > DenyStopsMax {
			t.Fatalf("accepted %q as %+v", b, m)
		}
		enc := m.AppendJSON(nil)
		back, err := DecodeDeny(enc)
		if err != nil {
			t.Fatalf("canonical form %s of %q does not decode: %v", enc, b, err)
		}
		if again := back.AppendJSON(nil); !bytes.Equal(again, enc) {
			t.Fatalf("not stable:\n%s\n%s", enc, again)
		}
	})
}
