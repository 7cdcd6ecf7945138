package strictjson

import (
	"errors"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"testing"
)

func TestDecode(t *testing.T) {
	type doc struct {
		A int `json:"a"`
	}
	for _, c := range []struct {
		in       string
		ok       bool
		trailing bool
	}{
		{`{"a":1}`, true, false},
		{" {\"a\":1} \n\t", true, false},
		{`{"a":1,"b":2}`, false, false}, // unknown field
		{`{"a":"x"}`, false, false},     // wrong type
		{`{"a":1`, false, false},        // truncated
		{``, false, false},
		{`{"a":1}{}`, false, true},
		{`{"a":1}]`, false, true},
		{`{"a":1} x`, false, true},
	} {
		var d doc
		err := Decode([]byte(c.in), &d)
		if (err == nil) != c.ok || errors.Is(err, ErrTrailing) != c.trailing {
			t.Errorf("%q: %v (want ok %t, trailing %t)", c.in, err, c.ok, c.trailing)
		}
		if c.ok && d.A != 1 {
			t.Errorf("%q: decoded %+v", c.in, d)
		}
	}
}

// The pure rule engines (core, scene packages) import this package, so it
// may use only standard library packages without I/O, clocks or locks.
func TestImportsArePure(t *testing.T) {
	allowed := map[string]bool{"bytes": true, "encoding/json": true, "errors": true, "io": true}
	f, err := parser.ParseFile(token.NewFileSet(), "strictjson.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if !allowed[p] {
			t.Errorf("strictjson.go imports %s", p)
		}
	}
	if files, _ := filepath.Glob("*.go"); len(files) != 2 {
		t.Errorf("files %v: a new source file needs this test to check it", files)
	}
}
