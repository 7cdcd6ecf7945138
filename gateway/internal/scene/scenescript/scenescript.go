// Package scenescript owns the line format of the scene packages' scripted
// scenario tests (testdata/*.txt, written to be read by a domain person):
// one command per line, "#" starts a comment, "-> outcome" states what the
// command must give, key=value arguments and bare flags, amounts in CNY
// with at most two decimals. Only tests import it.
package scenescript

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// Run reads the scenario at path and calls exec for every command line
// with its line number and fields. Where the line states "-> outcome", the
// result must equal it, spaces normalised; a difference is reported with
// the file and line, and the run goes on.
func Run(t testing.TB, path string, exec func(line int, fields []string) string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		want, hasWant := "", false
		if i := strings.Index(line, "->"); i >= 0 {
			want, hasWant = strings.Join(strings.Fields(line[i+2:]), " "), true
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		got := exec(n, fields)
		if hasWant && got != want {
			t.Errorf("%s:%d: %s\n\tgot:  %s\n\twant: %s", path, n, strings.Join(fields, " "), got, want)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// Args splits key=value fields and bare flags.
func Args(fields []string) (map[string]string, map[string]bool) {
	kv, flags := map[string]string{}, map[string]bool{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		} else {
			flags[f] = true
		}
	}
	return kv, flags
}

// ParseCNY reads an amount in CNY with at most two decimals as fen.
func ParseCNY(s string) (int64, error) {
	d, err := decimal.NewFromString(s)
	if err != nil || d.Exponent() < -2 {
		return 0, fmt.Errorf("bad amount %q (CNY with at most 2 decimals)", s)
	}
	return d.Shift(2).IntPart(), nil
}

// FormatCNY writes fen as CNY with two decimals.
func FormatCNY(f int64) string {
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	return fmt.Sprintf("%s%d.%02d", sign, f/100, f%100)
}
