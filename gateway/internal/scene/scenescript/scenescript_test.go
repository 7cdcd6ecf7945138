package scenescript

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRunAndHelpers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.txt")
	script := "# comment only\n\ncmd a=1 flag -> ok  fine # note\nother\n"
	if err := os.WriteFile(p, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	var lines []int
	var seen [][]string
	Run(t, p, func(line int, f []string) string {
		lines, seen = append(lines, line), append(seen, f)
		return "ok fine"
	})
	if !reflect.DeepEqual(lines, []int{3, 4}) || !reflect.DeepEqual(seen, [][]string{{"cmd", "a=1", "flag"}, {"other"}}) {
		t.Fatalf("lines %v, fields %v", lines, seen)
	}
	kv, flags := Args([]string{"a=1", "b=", "x"})
	if !reflect.DeepEqual(kv, map[string]string{"a": "1", "b": ""}) || !reflect.DeepEqual(flags, map[string]bool{"x": true}) {
		t.Fatalf("args %v %v", kv, flags)
	}
	for in, want := range map[string]int64{"1": 100, "12.5": 1250, "0.01": 1, "-3.20": -320} {
		if got, err := ParseCNY(in); err != nil || got != want {
			t.Errorf("ParseCNY(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"1.001", "x", ""} {
		if _, err := ParseCNY(bad); err == nil {
			t.Errorf("ParseCNY(%q) accepted", bad)
		}
	}
	if FormatCNY(-1250) != "-12.50" || FormatCNY(7) != "0.07" {
		t.Errorf("FormatCNY: %s %s", FormatCNY(-1250), FormatCNY(7))
	}
}
