package handoff

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode: Decode never panics, refuses with a coded *Error, and every
// batch it accepts re-encodes to bytes that decode to the same batch.
func FuzzDecode(f *testing.F) {
	good, err := Encode(validBatch())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	withLegs, err := Encode(legsBatch())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withLegs)
	withSyncs, err := Encode(ecnyBatch())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withSyncs)
	f.Add([]byte(`{"id":"gw-1:0-0","src":"gw-1","first":0,"last":0,"wm":1767225600000000,"rows":[]}`))
	f.Add([]byte(`{"id":"gw-1:1-1","src":"gw-1","first":1,"last":1,"wm":1,"rows":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("uncoded error %T: %v", err, err)
			}
			return
		}
		again, err := Encode(b)
		if err != nil {
			t.Fatalf("accepted batch does not encode: %v", err)
		}
		b2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded batch refused: %v", err)
		}
		if !reflect.DeepEqual(b, b2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", b, b2)
		}
	})
}
