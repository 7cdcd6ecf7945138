package transit

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPureImports keeps the rule engine pure: standard library (no I/O,
// network, SQL, sync or clock-reading packages beyond time's types),
// scenepay/terminals and shopspring/decimal only.
func TestPureImports(t *testing.T) {
	allowedExternal := map[string]bool{"scenepay/terminals": true, "github.com/shopspring/decimal": true,
		"scenepay/internal/strictjson": true} // pure: its own import test
	forbidden := map[string]bool{"os": true, "net": true, "net/http": true, "database/sql": true,
		"sync": true, "io/fs": true, "os/exec": true, "syscall": true, "unsafe": true, "math/rand": true, "math/rand/v2": true}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			std := !strings.Contains(strings.Split(p, "/")[0], ".") && !strings.HasPrefix(p, "scenepay/")
			if forbidden[p] || (!std && !allowedExternal[p]) {
				t.Errorf("%s imports %s", f, p)
			}
		}
		if strings.Contains(string(src), "time.Now(") {
			t.Errorf("%s reads the clock", f)
		}
	}
}
