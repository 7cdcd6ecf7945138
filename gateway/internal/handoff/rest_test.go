package handoff

import (
	"context"
	"testing"
	"time"
)

type durableAt uint64

func (d durableAt) DurableLSN() uint64 { return uint64(d) }
func (d durableAt) ReadDurable(uint64, int, func(uint64, []byte) error) (uint64, error) {
	return uint64(d), nil
}

// Between the embedded store's chunks the handoff rests as long as the
// chunk took while it keeps up, and does not rest when more than two
// batches behind.
func TestRestBetweenChunks(t *testing.T) {
	h := &Handoff{cfg: Config{Journal: durableAt(1000), BatchRowsMax: 100}}
	h.handed.Store(900) // 100 behind: keeping up
	start := time.Now()
	h.rest(context.Background(), 20*time.Millisecond)
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("keeping up, rest returned after %v, want at least the 20 ms the chunk took", d)
	}
	h.handed.Store(700) // 300 behind: more than two batches
	done := make(chan struct{})
	go func() { h.rest(context.Background(), time.Hour); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("behind, rest slept")
	}

	// Keeping up, but stopping: the rest ends with the context.
	h.handed.Store(900)
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { h.rest(ctx, time.Hour); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("a stopped handoff went on resting")
	}
}
