package journal

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestTruncateBeforeAtWritesHorizonFirst(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	j := mustOpen(t, o)
	appendN(t, j, 200)
	if _, ok, err := j.Horizon(); ok || err != nil {
		t.Fatalf("Horizon of a whole journal = %v, %v; want none", ok, err)
	}
	t1 := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	// Nothing to remove: no horizon is written.
	if err := j.TruncateBeforeAt(1, t1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := j.Horizon(); ok || j.FirstLSN() != 1 {
		t.Fatalf("TruncateBeforeAt(1) wrote a horizon or moved FirstLSN to %d", j.FirstLSN())
	}
	if err := j.TruncateBeforeAt(100, t1); err != nil {
		t.Fatal(err)
	}
	first := j.FirstLSN()
	if first <= 1 || first > 100 {
		t.Fatalf("FirstLSN after TruncateBeforeAt(100) = %d", first)
	}
	h, ok, err := j.Horizon()
	if err != nil || !ok || h.Before != first || !h.At.Equal(t1) {
		t.Fatalf("Horizon = %+v %v %v, want before %d at %v", h, ok, err, first, t1)
	}
	// The horizon never moves back, in LSN or in time.
	if err := j.TruncateBeforeAt(1<<40, t1.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	h, _, _ = j.Horizon()
	if h.Before != j.FirstLSN() || !h.At.Equal(t1) {
		t.Fatalf("Horizon after an older time = %+v, want before %d at %v", h, j.FirstLSN(), t1)
	}
	j.Close()
	// It survives a restart, and the journal still starts where it said.
	j = mustOpen(t, o)
	defer j.Close()
	h2, ok, err := j.Horizon()
	if err != nil || !ok || h2 != h || j.FirstLSN() != h.Before {
		t.Fatalf("after reopen: Horizon = %+v %v %v, FirstLSN %d; want %+v", h2, ok, err, j.FirstLSN(), h)
	}
	if _, err := j.ReadDurable(h.Before-2, 1, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrLSNRange) {
		t.Fatalf("ReadDurable before the horizon = %v, want ErrLSNRange", err)
	}
}

func TestDecodeHorizon(t *testing.T) {
	good := appendHorizon(nil, Horizon{Before: 4097, At: time.Unix(1_700_000_000, 5).UTC()})
	h, err := decodeHorizon(good)
	if err != nil || h.Before != 4097 || h.At.UnixNano() != 1_700_000_000_000_000_005 {
		t.Fatalf("decodeHorizon(good) = %+v, %v", h, err)
	}
	for name, b := range map[string][]byte{
		"short":        good[:27],
		"long":         append(append([]byte(nil), good...), 0),
		"magic":        append([]byte("XPRH"), good[4:]...),
		"crc":          append(append([]byte(nil), good[:27]...), good[27]^1),
		"before 1":     appendHorizon(nil, Horizon{Before: 1, At: time.Unix(0, 0)}),
		"empty":        nil,
		"bit in value": func() []byte { b := bytes.Clone(good); b[9] ^= 4; return b }(),
	} {
		var ce *CorruptionError
		if _, err := decodeHorizon(b); !errors.As(err, &ce) {
			t.Errorf("%s: decodeHorizon = %v, want *CorruptionError", name, err)
		}
	}
}

// FuzzDecodeHorizon: any bytes decode to a horizon or a *CorruptionError,
// and a decoded horizon encodes back to the same bytes.
func FuzzDecodeHorizon(f *testing.F) {
	f.Add(appendHorizon(nil, Horizon{Before: 2, At: time.Unix(0, 0)}))
	f.Add(appendHorizon(nil, Horizon{Before: 1 << 40, At: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}))
	f.Add([]byte("SPRH"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHorizon(b)
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CorruptionError", err)
			}
			return
		}
		if got := appendHorizon(nil, h); !bytes.Equal(got, b) {
			t.Fatalf("round trip: %x != %x", got, b)
		}
	})
}
