package core

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"scenepay/terminals"
)

// loaded returns a shard with n county accounts, each rich enough never to
// run dry, and their keys.
func loaded(tb testing.TB, n int) (*Shard, []string) {
	s := NewShard(0, nil)
	keys := make([]string, n)
	var out Output
	for i := range keys {
		keys[i] = fmt.Sprintf("county:%08d", i)
		in := open(keys[i], 1<<50)
		s.Step(t0, &in, &out)
		if out.Code != terminals.CodeApproved {
			tb.Fatalf("open %s: %s", keys[i], out.Code)
		}
	}
	return s, keys
}

// A steady-state approved purchase allocates nothing: decision, effect,
// reversible-table insert (with FIFO eviction) and record encoding.
func TestPurchaseAllocatesNothing(t *testing.T) {
	s, keys := loaded(t, 1000)
	tids := []string{"bus-0001", "bus-0002", "stall-17"}
	var out Output
	in := Input{Op: OpPurchase, Amount: 200, Merchant: "m-bus", Hash: 1}
	txn := uint64(0)
	now := t0
	step := func() {
		txn++
		in.Account, in.TID, in.Txn = keys[txn%uint64(len(keys))], tids[txn%3], txn
		now = now.Add(time.Millisecond)
		s.Step(now, &in, &out)
		if out.Code != terminals.CodeApproved {
			t.Fatalf("purchase %d: %s", txn, out.Code)
		}
	}
	for i := 0; i < 2*DefaultReversibleMax; i++ { // fill the table: every later insert evicts
		step()
	}
	if got := testing.AllocsPerRun(10000, step); got != 0 {
		t.Fatalf("approved purchase: %v allocations per Step, want 0", got)
	}
	in.Amount = 1 << 60 // a journaled decline allocates nothing either
	decline := func() {
		txn++
		in.Account, in.TID, in.Txn = keys[txn%uint64(len(keys))], tids[txn%3], txn
		s.Step(now, &in, &out)
		if out.Code != terminals.CodeInsufficientFunds {
			t.Fatalf("purchase %d: %s", txn, out.Code)
		}
	}
	if got := testing.AllocsPerRun(1000, decline); got != 0 {
		t.Fatalf("declined purchase: %v allocations per Step, want 0", got)
	}
}

// BenchmarkAuthorize: steady-state approved purchases over 100k accounts
// on one shard, journal record included.
func BenchmarkAuthorize(b *testing.B) {
	s, keys := loaded(b, 100_000)
	tids := make([]string, 512)
	for i := range tids {
		tids[i] = fmt.Sprintf("bus-%04d", i)
	}
	var out Output
	in := Input{Op: OpPurchase, Amount: 200, Merchant: "m-bus", Hash: 1}
	now := t0
	txn := uint64(0)
	var x uint64 = 88172645463325252 // xorshift: spread accounts without a modulo pattern
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		txn++
		in.Account, in.TID, in.Txn = keys[x%uint64(len(keys))], tids[txn%512], txn
		now = now.Add(time.Microsecond)
		s.Step(now, &in, &out)
		if out.Code != terminals.CodeApproved {
			b.Fatalf("purchase %d: %s", i, out.Code)
		}
	}
}

// The core imports nothing but the standard library and the wire contract,
// and none of the standard library that does I/O, locking or networking:
// it is a pure state machine.
func TestImportsArePure(t *testing.T) {
	forbidden := []string{"os", "net", "sync", "syscall", "unsafe", "database/sql", "io/fs", "log", "runtime"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			if strings.Contains(first, ".") || (first == "scenepay" && !coreAllowed[p]) {
				t.Errorf("%s imports %q: only the standard library, scenepay/terminals and the pure scene rules are allowed", name, p)
			}
			for _, bad := range forbidden {
				if p == bad || strings.HasPrefix(p, bad+"/") {
					t.Errorf("%s imports %q: the core does no I/O, locking or networking", name, p)
				}
			}
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"time.Now(", "go func", "time.Sleep("} {
			if strings.Contains(string(src), bad) {
				t.Errorf("%s contains %q: the core takes time from its caller and runs on the caller's goroutine", name, bad)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files found")
	}
}

// Every file of the package is covered by a package doc comment in doc.go.
func TestPackageDoc(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), "Package core owns") {
		t.Fatal("doc.go must carry the package comment \"Package core owns ...\"")
	}
}

// coreAllowed are the project packages the core may import: the wire
// contract (codes) and the transit fare and market rules, which are pure themselves
// (their own import test) and run inside the shard step.
var coreAllowed = map[string]bool{
	"scenepay/terminals":                      true,
	"scenepay/gateway/internal/scene/transit": true,
	"scenepay/gateway/internal/scene/market":  true,
	"scenepay/internal/strictjson":            true, // pure: its own import test
}

// BenchmarkSnapshot: the snapshot of a shard with 100k accounts and a full
// reversible-purchase table (what the gateway's writers wait on while a
// snapshot copies their state).
func BenchmarkSnapshot(b *testing.B) {
	s, keys := loaded(b, 100_000)
	var out Output
	in := Input{Op: OpPurchase, Amount: 200, Merchant: "m-bus", Hash: 1, TID: "bus-0001"}
	for txn := uint64(1); txn <= DefaultReversibleMax; txn++ {
		in.Account, in.Txn = keys[txn%uint64(len(keys))], txn
		s.Step(t0, &in, &out)
		if out.Code != terminals.CodeApproved {
			b.Fatalf("purchase %d: %s", txn, out.Code)
		}
	}
	var n countWriter
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Snapshot(&n); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(n) / int64(b.N))
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
