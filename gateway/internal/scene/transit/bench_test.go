package transit

import (
	"testing"
	"time"
)

// BenchmarkJourney: one distance journey (tap-in hold, tap-out capture),
// the hot path of a bus reader. Steady state allocates nothing.
func BenchmarkJourney(b *testing.B) {
	e, err := New(testConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	var c Card
	at := time.Date(2026, 3, 2, 8, 0, 0, 0, shanghai)
	in := Tap{Kind: TapIn, Route: "D1", Stop: "S1"}
	out := Tap{Kind: TapOut, Route: "D1", Stop: "S3"}
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Hour)
		in.At, out.At = at, at.Add(20*time.Minute)
		e.Tap(&c, &in, 1<<40)
		e.Tap(&c, &out, 1<<40)
	}
}

// BenchmarkFlatTap: one flat-route tap.
func BenchmarkFlatTap(b *testing.B) {
	e, err := New(testConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	var c Card
	t := Tap{Kind: TapIn, Route: "B1", At: time.Date(2026, 3, 2, 8, 0, 0, 0, shanghai)}
	b.ReportAllocs()
	for b.Loop() {
		t.At = t.At.Add(time.Hour)
		e.Tap(&c, &t, 1<<40)
	}
}

// BenchmarkProcessUpload: a batch of 16 offline taps of one card.
func BenchmarkProcessUpload(b *testing.B) {
	e, err := New(testConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	var c Card
	base := time.Date(2026, 3, 2, 6, 0, 0, 0, shanghai)
	taps := make([]Tap, 16)
	out := make([]Decision, 0, 16)
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		for i := range taps {
			seq++
			taps[i] = Tap{Kind: TapIn, Route: "B1", At: base.Add(time.Duration(seq) * time.Minute), Reader: "RD1", Seq: seq}
		}
		out = e.ProcessUpload(&c, taps, 1<<40, taps[len(taps)-1].At, out)
	}
}
