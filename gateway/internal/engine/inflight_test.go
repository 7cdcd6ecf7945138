package engine

import (
	"sync"
	"testing"
	"time"

	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// After an overload every in-flight slot is free again: with the journal's
// fsync held, far more requests than the in-flight and shard-queue bounds
// arrive (new ones and resends of the same ids, so that the duplicate and
// waiting paths run too); each gets exactly one answer once the fsync is
// released, the in-flight gauge and the semaphore are back at zero, and
// the next request is approved, not BUSY.
func TestOverloadFreesEveryInFlightSlot(t *testing.T) {
	g := &gateFS{FS: vfs.Default}
	cfg := DefaultConfig(t.TempDir())
	cfg.FS = g
	cfg.Shards = 2
	cfg.InFlightMax = 8
	cfg.ShardQueueMax = 4
	cfg.SnapshotEvery = 0
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := newFakePub()
	e.SetPublisher(p)
	setup(t, e, 1_000_000)

	gate := make(chan struct{})
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()

	const senders, perSender = 4, 100
	sent := senders * perSender * 2           // each request twice
	msgs := make([][]byte, senders*perSender) // sealed here: the signer is not for concurrent use
	for i := range msgs {
		msgs[i] = buy(uint64(i+1), 1)
	}
	codes := map[terminals.Code]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sent {
			select {
			case raw := <-p.ch:
				codes[decode(t, raw).Code]++
			case <-time.After(30 * time.Second):
				t.Error("replies stopped coming")
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				m := msgs[s*perSender+i]
				e.HandleMessage(topic, m)
				e.HandleMessage(topic, m)
			}
		}()
	}
	wg.Wait()
	g.mu.Lock()
	g.gate = nil
	g.mu.Unlock()
	close(gate)
	<-done
	if t.Failed() {
		t.FailNow()
	}
	if codes[terminals.CodeBusy] == 0 || codes[terminals.CodeApproved] == 0 {
		t.Fatalf("not an overload with progress: %v", codes)
	}
	if n := len(e.inflt); n != 0 {
		t.Fatalf("%d in-flight slots still held after every request was answered (%v)", n, codes)
	}
	for _, scene := range []string{"bus", "kiosk", "stall"} {
		if v := testutilCount(e.m.InFlight.WithLabelValues(scene)); v != 0 {
			t.Fatalf("in-flight gauge %s = %v after every request was answered", scene, v)
		}
	}
	e.HandleMessage(topic, buy(uint64(senders*perSender+1), 1))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("a request after the overload: %s, want approved", rep.Code)
	}
	select {
	case raw := <-p.ch:
		t.Fatalf("an extra reply: %s", decode(t, raw).Code)
	default:
	}
}
