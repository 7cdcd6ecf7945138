package terminals

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestHeartbeatCfgVersions(t *testing.T) {
	const body = `{"v":1,"type":"heartbeat","tid":"BUS-1","txn":0,"ts":1767225600000,"cfg":{"transit":3,"limits":1}}`
	r, err := DecodeRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := r.Cfg.Get("transit"); !ok || got != 3 {
		t.Fatalf("transit = %d %v, want 3", got, ok)
	}
	if got, ok := r.Cfg.Get("limits"); !ok || got != 1 {
		t.Fatalf("limits = %d %v, want 1", got, ok)
	}
	if r.Cfg.Len() != 2 || r.Cfg.At(0).Name != "transit" {
		t.Fatalf("entries = %+v", r.Cfg)
	}
	if enc := string(r.AppendJSON(nil)); enc != body {
		t.Fatalf("re-encoded\n%s\nwant\n%s", enc, body)
	}
	var std Request
	if err := json.Unmarshal([]byte(body), &std); err != nil || std != *r {
		t.Fatalf("encoding/json: %+v %v, strict: %+v", std, err, *r)
	}
	// Without the field: unchanged encoding, empty report.
	hb := `{"v":1,"type":"heartbeat","tid":"BUS-1","txn":0,"ts":1767225600000}`
	r, err = DecodeRequest([]byte(hb))
	if err != nil || r.Cfg.Len() != 0 || string(r.AppendJSON(nil)) != hb {
		t.Fatalf("plain heartbeat: %v %+v", err, r)
	}
}

func TestHeartbeatCfgVersionsRefused(t *testing.T) {
	const pre = `{"v":1,"type":"heartbeat","tid":"BUS-1","txn":0,"ts":1767225600000,"cfg":`
	for _, c := range []struct{ name, cfg, field string }{
		{"empty", `{}`, "cfg"},
		{"zero version", `{"transit":0}`, "cfg.transit"},
		{"duplicate", `{"transit":1,"transit":2}`, "cfg.transit"},
		{"negative", `{"transit":-1}`, "cfg.transit"},
		{"fraction", `{"transit":1.5}`, "cfg.transit"},
		{"string version", `{"transit":"1"}`, "cfg.transit"},
		{"bad name", `{"tr ansit":1}`, "cfg"},
		{"null", `null`, "cfg"},
		{"array", `[1]`, "cfg"},
		{"too many", `{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1}`, "cfg"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(pre + c.cfg + `}`))
			var te *Error
			if !errors.As(err, &te) || te.Code != CodeMalformed || te.Field != c.field {
				t.Fatalf("err = %v, want MALFORMED on %s", err, c.field)
			}
		})
	}
	// Only a heartbeat carries cfg.
	_, err := DecodeRequest([]byte(`{"v":1,"type":"balance","tid":"K-1","txn":1,"ts":1767225600000,"amt":0,"inst":{"k":"county","id":"C1"},"cfg":{"transit":1}}`))
	var te *Error
	if !errors.As(err, &te) || te.Field != "cfg" {
		t.Fatalf("cfg on a balance inquiry: err = %v, want refusal on cfg", err)
	}
}
