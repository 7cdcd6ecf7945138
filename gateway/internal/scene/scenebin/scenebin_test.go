package scenebin

import (
	"errors"
	"testing"
)

var errCorrupt = errors.New("test: corrupt")

func TestRoundTripAndFailures(t *testing.T) {
	b := []byte{1}
	b = AppendU32(b, 7)
	b = AppendU64(b, 1<<40)
	b = AppendStr(b, "abc")
	b = AppendU64(b, 500)
	r := NewReader(b, errCorrupt, 8, 1)
	r.Version("state")
	if r.U32() != 7 || r.U64() != 1<<40 || r.Str("id") != "abc" || r.Fen("amt") != 500 || r.Done() != nil {
		t.Fatalf("round trip failed: %v", r.Err)
	}
	for name, f := range map[string]func(*Reader){
		"version":  func(r *Reader) { r.Version("state") },
		"negative": func(r *Reader) { r.U8(); r.Fen("amt") },
		"long id":  func(r *Reader) { r.Str("id") },
		"trailing": func(r *Reader) { r.U8(); r.Done() },
		"short":    func(r *Reader) { r.U64(); r.U64() },
	} {
		in := map[string][]byte{
			"version": {2}, "negative": AppendU64([]byte{1}, ^uint64(0)), "long id": AppendStr(nil, "123456789"),
			"trailing": {1, 2}, "short": {1, 2, 3},
		}[name]
		r := NewReader(in, errCorrupt, 8, 1)
		f(r)
		if !errors.Is(r.Err, errCorrupt) {
			t.Errorf("%s: err %v, want corruption", name, r.Err)
		}
	}
}
