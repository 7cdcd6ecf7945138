package scenebin

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestScenePackagesStayPure keeps the market and hospital rule engines (and
// this package) pure: standard library packages without I/O, the wire
// contract, decimal and scenebin only (no MQTT, HTTP, SQL, OS).
func TestScenePackagesStayPure(t *testing.T) {
	allowed := map[string]bool{
		"bytes": true, "crypto/hmac": true, "crypto/sha256": true, "encoding/binary": true,
		"encoding/json": true, "errors": true, "fmt": true, "hash": true, "io": true,
		"math/big": true, "math/bits": true, "time": true, "time/tzdata": true,
		"scenepay/terminals": true, "scenepay/gateway/internal/scene/scenebin": true, "github.com/shopspring/decimal": true,
		"scenepay/internal/strictjson": true, // pure: its own import test
	}
	for _, dir := range []string{"../market", "../hospital", "."} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		checked := 0
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if !allowed[p] {
					t.Errorf("%s imports %s: the scene rules must stay pure", name, p)
				}
			}
			checked++
		}
		if checked == 0 {
			t.Fatalf("%s: no source files checked", dir)
		}
	}
}
