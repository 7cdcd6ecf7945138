package terminals

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestHeartbeatBacklog(t *testing.T) {
	const pre = `{"v":1,"type":"heartbeat","tid":"BUS-1","txn":0,"ts":1767225600000`
	ok := []struct {
		name, obk string
		want      Backlog
		canon     string
	}{
		{"waiting", `{"n":3,"oldest":1767225500000}`, Backlog{N: 3, Oldest: 1767225500000, Set: true}, `{"n":3,"oldest":1767225500000}`},
		{"keys any order", `{"oldest":5,"n":1}`, Backlog{N: 1, Oldest: 5, Set: true}, `{"n":1,"oldest":5}`},
		{"nothing waiting", `{"n":0}`, Backlog{Set: true}, `{"n":0}`},
		{"nothing waiting, oldest 0", `{"n":0,"oldest":0}`, Backlog{Set: true}, `{"n":0}`},
		{"at the bound", `{"n":1000000,"oldest":1}`, Backlog{N: MaxBacklogTaps, Oldest: 1, Set: true}, `{"n":1000000,"oldest":1}`},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			r, err := DecodeRequest([]byte(pre + `,"obk":` + c.obk + `}`))
			if err != nil {
				t.Fatal(err)
			}
			if r.OBK != c.want {
				t.Fatalf("got %+v, want %+v", r.OBK, c.want)
			}
			var std Request
			if err := json.Unmarshal([]byte(pre+`,"obk":`+c.obk+`}`), &std); err != nil || std != *r {
				t.Fatalf("encoding/json: %v %+v", err, std)
			}
			enc := string(r.AppendJSON(nil))
			if want := pre + `,"obk":` + c.canon + `}`; enc != want {
				t.Fatalf("AppendJSON = %s, want %s", enc, want)
			}
			r2, err := DecodeRequest([]byte(enc))
			if err != nil || *r2 != *r {
				t.Fatalf("round trip: %v %+v", err, r2)
			}
		})
	}
	bad := []struct {
		name, body, field string
	}{
		{"n missing", pre + `,"obk":{"oldest":5}}`, "obk.n"},
		{"empty object", pre + `,"obk":{}}`, "obk.n"},
		{"oldest missing", pre + `,"obk":{"n":2}}`, "obk.oldest"},
		{"oldest with nothing waiting", pre + `,"obk":{"n":0,"oldest":7}}`, "obk.oldest"},
		{"negative n", pre + `,"obk":{"n":-1}}`, "obk.n"},
		{"negative oldest", pre + `,"obk":{"n":1,"oldest":-1}}`, "obk.oldest"},
		{"n over the bound", pre + `,"obk":{"n":1000001,"oldest":1}}`, "obk.n"},
		{"duplicate n", pre + `,"obk":{"n":1,"n":1,"oldest":1}}`, "obk.n"},
		{"unknown key", pre + `,"obk":{"n":0,"x":1}}`, "obk.x"},
		{"null", pre + `,"obk":null}`, "obk"},
		{"duplicate obk", pre + `,"obk":{"n":0},"obk":{"n":0}}`, "obk"},
		{"not on a purchase", `{"v":1,"type":"purchase","tid":"BUS-1","txn":1,"ts":1,"amt":1,"inst":{"k":"county","id":"C-1"},"obk":{"n":0}}`, "obk"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(c.body))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want a coded error", err)
			}
			if e.Code != CodeMalformed || e.Field != c.field {
				t.Fatalf("got %s on %q (%v), want MALFORMED on %q", e.Code, e.Field, err, c.field)
			}
		})
	}
}

// A heartbeat without "obk" has an unset backlog, distinct from n=0.
func TestHeartbeatBacklogAbsent(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"v":1,"type":"heartbeat","tid":"BUS-1","txn":0,"ts":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.OBK.Set {
		t.Fatalf("backlog set without obk: %+v", r.OBK)
	}
	if got := string(r.AppendJSON(nil)); got != `{"v":1,"type":"heartbeat","tid":"BUS-1","txn":0,"ts":1}` {
		t.Fatalf("AppendJSON = %s", got)
	}
}

// Validate refuses what a caller builds by hand outside the rules.
func TestBacklogValidate(t *testing.T) {
	hb := Request{V: Version, Type: TypeHeartbeat, TID: "BUS-1", TS: 1, OBK: Backlog{N: 0, Oldest: 9, Set: true}}
	if err := hb.Validate(); err == nil {
		t.Fatal("n=0 with an oldest time accepted")
	}
	hb.OBK = Backlog{N: 2, Oldest: 9, Set: true}
	if err := hb.Validate(); err != nil {
		t.Fatal(err)
	}
}
