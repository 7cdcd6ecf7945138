package terminals

import (
	"bytes"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var updateDoc = flag.Bool("update-doc", false, "rewrite the result-code table in docs/protocol.md from codes.json")

const (
	protocolDoc = "../docs/protocol.md"
	codesBegin  = "<!-- codes:begin (generated from terminals/codes.json by `go test ./terminals -run TestProtocolDocCodes -update-doc`) -->"
	codesEnd    = "<!-- codes:end -->"
)

// readCatalogueFile reads codes.json directly, not through the package's
// init, so that the test checks the file and the code independently.
func readCatalogueFile(t *testing.T) []CodeInfo {
	t.Helper()
	raw, err := os.ReadFile("codes.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var cat []CodeInfo
	if err := dec.Decode(&cat); err != nil {
		t.Fatalf("codes.json: %v", err)
	}
	return cat
}

// codeConstants parses codes.go and returns every `Name Code = "xx"` constant.
func codeConstants(t *testing.T) map[Code]string {
	t.Helper()
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[Code]string{}
	for _, decl := range file.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			id, ok := vs.Type.(*ast.Ident)
			if !ok || id.Name != "Code" {
				continue
			}
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("constant %s is not a string literal", name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				if prev, dup := out[Code(v)]; dup {
					t.Errorf("constants %s and %s share code %q", prev, name.Name, v)
				}
				out[Code(v)] = name.Name
			}
		}
	}
	return out
}

func TestCatalogueMatchesConstants(t *testing.T) {
	cat := readCatalogueFile(t)
	consts := codeConstants(t)
	if len(consts) < 20 {
		t.Fatalf("found only %d Code constants in codes.go; the parser missed them", len(consts))
	}
	inJSON := map[Code]bool{}
	names := map[string]bool{}
	validName := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	validCode := regexp.MustCompile(`^[0-9A-Z]{2}$`)
	for _, c := range cat {
		if inJSON[c.Code] {
			t.Errorf("codes.json: duplicate code %q", c.Code)
		}
		inJSON[c.Code] = true
		if names[c.Name] {
			t.Errorf("codes.json: duplicate name %q", c.Name)
		}
		names[c.Name] = true
		if _, ok := consts[c.Code]; !ok {
			t.Errorf("codes.json code %s %s has no constant in codes.go", c.Code, c.Name)
		}
		if !validCode.MatchString(string(c.Code)) {
			t.Errorf("code %q is not two characters of [0-9A-Z]", c.Code)
		}
		if !validName.MatchString(c.Name) {
			t.Errorf("code %s: name %q is not UPPER_SNAKE", c.Code, c.Name)
		}
		if strings.TrimSpace(c.Meaning) == "" || strings.Contains(c.Meaning, "|") {
			t.Errorf("code %s: meaning must be non-empty and free of '|': %q", c.Code, c.Meaning)
		}
		switch c.Class {
		case ClassApproved:
			if c.HTTP != 200 || c.Code != CodeApproved {
				t.Errorf("code %s: only 00 is approved, with HTTP 200", c.Code)
			}
		case ClassDecline, ClassRefusal:
			if c.HTTP < 400 || c.HTTP > 499 {
				t.Errorf("code %s: a %s maps to a 4xx status, not %d", c.Code, c.Class, c.HTTP)
			}
		case ClassFault:
			if c.HTTP < 500 || c.HTTP > 599 {
				t.Errorf("code %s: a fault maps to a 5xx status, not %d", c.Code, c.HTTP)
			}
		default:
			t.Errorf("code %s: invalid class %q", c.Code, c.Class)
		}
		// Only faults are retried as they are; everything else needs a change.
		if c.Retry != (c.Class == ClassFault) {
			t.Errorf("code %s: retry=%v does not fit class %s", c.Code, c.Retry, c.Class)
		}
	}
	for code, name := range consts {
		if !inJSON[code] {
			t.Errorf("constant %s = %q is missing from codes.json", name, code)
		}
	}
	// The embedded catalogue is the file.
	if got := Catalogue(); len(got) != len(cat) {
		t.Fatalf("Catalogue() has %d entries, codes.json %d", len(got), len(cat))
	}
	for i, c := range Catalogue() {
		if c != cat[i] {
			t.Errorf("Catalogue()[%d] = %+v, codes.json has %+v", i, c, cat[i])
		}
		if info, ok := c.Code.Info(); !ok || info != c || c.Code.Name() != c.Name ||
			c.Code.Class() != c.Class || c.Code.HTTPStatus() != c.HTTP {
			t.Errorf("accessors of %s disagree with the catalogue", c.Code)
		}
	}
	unknown := Code("ZZ")
	if unknown.Name() != "UNKNOWN" || unknown.Class() != ClassFault || unknown.HTTPStatus() != 500 || unknown.Approved() {
		t.Error("an unknown code must read as an unapproved fault")
	}
	if !CodeApproved.Approved() || CodeBusy.Approved() {
		t.Error("Approved() is wrong")
	}
}

// codeTable renders the catalogue as the Markdown table of docs/protocol.md.
func codeTable(cat []CodeInfo) string {
	var b strings.Builder
	b.WriteString("| code | name | class | HTTP | retry | meaning |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, c := range cat {
		retry := "no"
		if c.Retry {
			retry = "yes, same txn id"
		}
		b.WriteString("| `" + string(c.Code) + "` | " + c.Name + " | " + string(c.Class) + " | " +
			strconv.Itoa(c.HTTP) + " | " + retry + " | " + c.Meaning + " |\n")
	}
	return b.String()
}

func TestProtocolDocCodes(t *testing.T) {
	cat := readCatalogueFile(t)
	raw, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i := strings.Index(doc, codesBegin)
	j := strings.Index(doc, codesEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q ... %q", protocolDoc, codesBegin, codesEnd)
	}
	want := codeTable(cat)
	if *updateDoc {
		doc = doc[:i+len(codesBegin)] + "\n" + want + doc[j:]
		if err := os.WriteFile(protocolDoc, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	block := doc[i+len(codesBegin) : j]

	// Row by row, so that a failure names the code.
	rowRE := regexp.MustCompile("(?m)^\\| `([^`]*)` \\| ([^|]*) \\| ([^|]*) \\| ([^|]*) \\| ([^|]*) \\| ([^|]*) \\|$")
	rows := map[Code][]string{}
	for _, m := range rowRE.FindAllStringSubmatch(block, -1) {
		if _, dup := rows[Code(m[1])]; dup {
			t.Errorf("docs: code %s appears twice", m[1])
		}
		rows[Code(m[1])] = m[2:]
	}
	for _, c := range cat {
		r, ok := rows[c.Code]
		if !ok {
			t.Errorf("docs: code %s %s is missing from the table", c.Code, c.Name)
			continue
		}
		if r[0] != c.Name || r[1] != string(c.Class) || r[2] != strconv.Itoa(c.HTTP) || r[4] != c.Meaning {
			t.Errorf("docs: row %s = %q, catalogue says %s %s %d %q", c.Code, r, c.Name, c.Class, c.HTTP, c.Meaning)
		}
		if (r[3] != "no") != c.Retry {
			t.Errorf("docs: row %s retry %q, catalogue says %v", c.Code, r[3], c.Retry)
		}
		delete(rows, c.Code)
	}
	for code := range rows {
		t.Errorf("docs: code %s is in the table but not in codes.json", code)
	}
	// And the whole block, so that layout drift is caught too.
	if strings.TrimSpace(block) != strings.TrimSpace(want) {
		t.Errorf("docs: code table differs from codes.json; run go test ./terminals -run TestProtocolDocCodes -update-doc")
	}
}
