package transit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Each decoder: no panic on any input; what it accepts re-encodes to the
// same bytes (decode then encode is the identity), so snapshots are
// canonical; a rejection is a typed error.

func seedCards() [][]byte {
	ex := exampleCard()
	var z Card
	open := Card{Open: true, Journey: Journey{Route: "R", Stop: "S", Held: 600}}
	past := Card{Day: 9, Week: 7, Past: [PastDaysMax]int64{300, 0, 1000}, Open: true,
		Journey: Journey{Route: "R", Stop: "S", Day: 9, Week: 7, Held: 600, Reader: "BUS-1", Merchant: "BUSCO"}}
	return [][]byte{z.AppendBinary(nil), ex.AppendBinary(nil), open.AppendBinary(nil), past.AppendBinary(nil), {1}, {2, 0}}
}

func FuzzDecodeCard(f *testing.F) {
	for _, s := range seedCards() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Card
		err := DecodeCard(b, &c)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("untyped error %v", err)
			}
			if c != (Card{}) {
				t.Fatal("half-decoded card left behind")
			}
			return
		}
		got := c.AppendBinary(nil)
		if b[0] == cardVersionV1 {
			// Older state decodes and re-encodes in the current version,
			// which must decode to the same card.
			var c2 Card
			if err := DecodeCard(got, &c2); err != nil || c2 != c {
				t.Fatalf("version 1 state re-encoded to %x: %v, %+v != %+v", got, err, c2, c)
			}
			return
		}
		if string(got) != string(b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, got)
		}
	})
}

func seedDeny() [][]byte {
	l := NewDenyList()
	l.Add("C1")
	l.Add("C2")
	l.Remove("C1")
	l.Report("T1", 2)
	return [][]byte{NewDenyList().AppendBinary(nil), l.AppendBinary(nil)}
}

func FuzzDecodeDenyList(f *testing.F) {
	for _, s := range seedDeny() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeDenyList(b)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := l.AppendBinary(nil); string(got) != string(b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, got)
		}
		_ = l.Delta(0) // must not panic on a decoded list
		_ = l.Lagging(l.Version())
	})
}

func seedRisk() [][]byte {
	b := RiskBook{Day: 20514, Loss: map[string]int64{"B1": 600, "D1": 1200}}
	return [][]byte{b.AppendBinary(nil), (&RiskBook{}).AppendBinary(nil)}
}

func FuzzDecodeRiskBook(f *testing.F) {
	for _, s := range seedRisk() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r RiskBook
		if err := DecodeRiskBook(b, &r); err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := r.AppendBinary(nil); string(got) != string(b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, got)
		}
	})
}

func seedConfigs(t testing.TB) [][]byte {
	c := testConfig(t)
	full, _ := c.Encode()
	d := DefaultConfig()
	def, _ := d.Encode()
	return [][]byte{full, def, []byte(`{"version":2}`), []byte(`{"routes":[{"id":"X","kind":"flat","fare_fen":1e3}]}`)}
}

// FuzzDecodeConfig: a config document is accepted only if valid, and an
// accepted one encodes to a document that decodes to the same encoding
// and runs a tap without panicking.
func FuzzDecodeConfig(f *testing.F) {
	for _, s := range seedConfigs(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeConfig(b)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		enc, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeConfig(enc)
		if err != nil {
			t.Fatalf("own encoding refused: %v\n%s", err, enc)
		}
		enc2, _ := c2.Encode()
		if string(enc) != string(enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
		e, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		var card Card
		at := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
		for _, r := range c.Routes {
			stop := ""
			if len(r.Stops) > 0 {
				stop = r.Stops[0].ID
			}
			e.Tap(&card, &Tap{Kind: TapIn, Route: r.ID, Stop: stop, At: at}, 1<<40)
			e.Tap(&card, &Tap{Kind: TapOut, Route: r.ID, Stop: stop, At: at.Add(time.Hour)}, 1<<40)
			at = at.Add(2 * time.Hour)
		}
	})
}

// TestWriteSeedCorpus writes the committed seed corpus under
// testdata/fuzz when TRANSIT_WRITE_CORPUS is set (run once after a format
// change); otherwise it checks the corpus is there.
func TestWriteSeedCorpus(t *testing.T) {
	sets := map[string][][]byte{
		"FuzzDecodeCard":     seedCards(),
		"FuzzDecodeDenyList": seedDeny(),
		"FuzzDecodeRiskBook": seedRisk(),
		"FuzzDecodeConfig":   seedConfigs(t),
	}
	for name, seeds := range sets {
		dir := filepath.Join("testdata", "fuzz", name)
		if os.Getenv("TRANSIT_WRITE_CORPUS") == "" {
			if ents, err := os.ReadDir(dir); err != nil || len(ents) == 0 {
				t.Errorf("no seed corpus in %s (run with TRANSIT_WRITE_CORPUS=1)", dir)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
