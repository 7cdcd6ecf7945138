package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"scenepay/gateway/internal/bincur"
	"scenepay/gateway/internal/idem"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/hospital"
)

// Snapshot payload (the journal package frames it with the LSN and a CRC):
//
//	"SPSNAP1\n" | uvarint shards |
//	uvarint terminals, each: uvarint len | registry JSON |
//	idem snapshot (see package idem) |
//	per shard: uvarint len | core shard snapshot |
//	config store snapshot (see package confstore; since SPSNAP2) |
//	per shard (since SPSNAP3): uvarint deposits, each uvarint len | hospital.Deposit.AppendBinary
//	deny list (since SPSNAP4): uvarint len | transit.DenyList.AppendBinary
//	stall codes and wallet payment ids (since SPSNAP5): see appendStallSnapshot
//
// SPSNAP1 (no config section) still loads: its config state comes from the
// journal entries after it, or is empty.
var (
	snapMagic   = []byte("SPSNAP5\n")
	snapMagicV4 = []byte("SPSNAP4\n")
	snapMagicV3 = []byte("SPSNAP3\n")
	snapMagicV2 = []byte("SPSNAP2\n")
	snapMagicV1 = []byte("SPSNAP1\n")
)

// Snapshot parks every shard writer, waits until everything appended is
// durable and every completion has run (so that each request's reply is in
// the idempotency store), copies the state, resumes the writers and writes
// the copy. The copy is the state after exactly the records up to the
// snapshot LSN.
//
// The pause is kept short: each writer encodes its own ledger as it parks
// (in parallel, and while the journal syncs), the idempotency store is
// frozen rather than encoded (idem.Frozen), and its replies are encoded
// while the image is written, after the writers resume.
func (e *Engine) Snapshot() error {
	e.snapRun.Lock() // the shards' encodings are in use until written
	defer e.snapRun.Unlock()
	start := time.Now()
	e.snapMu.Lock()
	var parked sync.WaitGroup
	resume := make(chan struct{})
	parkedOK := 0
	for _, s := range e.shards {
		parked.Add(1)
		select {
		case s.ch <- &work{kind: workBarrier, parked: &parked, resume: resume}:
			parkedOK++
		case <-time.After(e.cfg.OperatorTimeout):
			parked.Done()
		}
	}
	if parkedOK != len(e.shards) {
		close(resume)
		e.snapMu.Unlock()
		return errors.New("engine: snapshot: could not park every shard (queues full)")
	}
	parked.Wait()
	lsn := e.j.LastLSN()
	err := e.j.Sync(lsn)
	// Sync returns when the records are durable, before the journal has
	// called their completions. Without this wait the copy could hold a
	// request's ledger effect but not its stored reply (a pending idem entry
	// is not written), and after a restart from this snapshot a resend of an
	// approved purchase would get ID_CONFLICT instead of its approval, and a
	// resent decline would be decided again. Completions run (also on a
	// journal failure) without any shard, so this cannot wait on itself.
	e.journaling.Wait()
	var img stateImage
	if err == nil {
		img = e.captureState()
	}
	e.releaseSnapBuffers()
	close(resume)
	e.snapMu.Unlock()
	pause := time.Since(start)
	e.m.SnapshotPause.Observe(pause.Seconds())
	if err != nil {
		return fmt.Errorf("engine: snapshot: sync: %w", err)
	}
	if lsn == e.lastSnp.Load() {
		return nil // nothing new
	}
	var size int64
	if err := journal.WriteSnapshot(e.fs, e.snapshotDir(), lsn, func(w io.Writer) (err error) {
		size, err = img.writeTo(w)
		return err
	}); err != nil {
		return fmt.Errorf("engine: snapshot: %w", err)
	}
	prev := e.lastSnp.Swap(lsn)
	e.retainJournal(prev)
	e.m.Snapshots.Inc()
	e.m.SnapshotSeconds.Observe(time.Since(start).Seconds())
	e.log.Info("snapshot written", "lsn", lsn, "bytes", size, "pause", pause.String(), "took", time.Since(start).String())
	return nil
}

// stateImage is the state copied while the writers are parked: the
// idempotency store frozen (idem.Frozen) and every other part already
// encoded. The stored replies, the bulk of a snapshot, are encoded by
// writeTo after the writers resume, so the pause does not grow with them.
type stateImage struct {
	head   []byte // magic, shard count, terminals
	idem   *idem.Frozen
	shards [][]byte // each shard's ledger, encoded by its writer as it parked
	tail   []byte   // config, deposits, deny list, stall codes
}

// writeTo writes the image, a snapshot's payload, to w and returns how
// many bytes that was.
func (im stateImage) writeTo(w io.Writer) (int64, error) {
	n, err := w.Write(im.head)
	if err != nil {
		return int64(n), err
	}
	total := int64(n)
	k, err := im.idem.WriteTo(w)
	total += k
	if err != nil {
		return total, err
	}
	for _, b := range im.shards {
		n, err = w.Write(binary.AppendUvarint(nil, uint64(len(b))))
		total += int64(n)
		if err != nil {
			return total, err
		}
		n, err = w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	n, err = w.Write(im.tail)
	return total + int64(n), err
}

func (e *Engine) captureState() stateImage {
	var im stateImage
	im.head = e.appendHead(nil)
	im.idem = e.idem.Freeze()
	for _, s := range e.shards {
		im.shards = append(im.shards, s.snap.Bytes())
	}
	im.tail = e.appendTail(nil)
	return im
}

// releaseSnapBuffers takes every parked shard's encoding away from it:
// img.shards keeps the bytes until the image is written, then nothing
// does, so a shard holds no memory between snapshots (its ledger's size,
// megabytes at town scale). The price is one allocation at the next
// barrier, while the writer is parked, sized by shard.snapHint rather
// than grown by doubling (see BenchmarkShardSnapshotEncode).
//
// Only with every writer parked (parked.Wait has returned, resume is not
// yet closed): a writer touches s.snap only at a barrier, and the next one
// is sent by the next Snapshot, after snapRun. Not on the path that could
// not park every shard: a barrier already queued there may still encode.
func (e *Engine) releaseSnapBuffers() {
	for _, s := range e.shards {
		s.snap = bytes.Buffer{}
	}
}

func (e *Engine) appendHead(dst []byte) []byte {
	dst = append(dst, snapMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(e.shards)))
	ts := e.reg.All()
	dst = binary.AppendUvarint(dst, uint64(len(ts)))
	for _, t := range ts {
		b := registry.Encode(t)
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst
}

func (e *Engine) appendTail(dst []byte) []byte {
	dst = e.conf.store.AppendSnapshot(dst)
	for _, s := range e.shards {
		dst = binary.AppendUvarint(dst, uint64(len(s.hosp.deps)))
		keys := make([]string, 0, len(s.hosp.deps))
		for k := range s.hosp.deps {
			keys = append(keys, k)
		}
		sort.Strings(keys) // a deterministic image
		for _, k := range keys {
			b := s.hosp.deps[k].AppendBinary(nil)
			dst = binary.AppendUvarint(dst, uint64(len(b)))
			dst = append(dst, b...)
		}
	}
	dst = e.appendDenySnapshot(dst)
	return e.appendStallSnapshot(dst)
}

func (e *Engine) loadSnapshot() (uint64, error) {
	lsn, data, err := journal.LoadSnapshot(e.fs, e.snapshotDir())
	var fb *journal.SnapshotFallback
	switch {
	case err == nil:
	case errors.As(err, &fb):
		// An older snapshot verified: use it and replay more of the journal.
		e.log.Warn("newest snapshot is corrupt; using an older one", "err", err)
		e.m.SnapshotFallbacks.Inc()
	default:
		// No snapshot verifies. The journal is kept whole, so replaying it
		// from the start rebuilds the same state; if segments were ever
		// removed, Replay says so and startup stops.
		e.log.Error("no snapshot verifies; replaying the whole journal", "err", err)
		e.m.SnapshotFallbacks.Inc()
		return 0, nil
	}
	if data == nil {
		return 0, nil
	}
	v1 := bytes.HasPrefix(data, snapMagicV1)
	v2 := bytes.HasPrefix(data, snapMagicV2)
	v3 := bytes.HasPrefix(data, snapMagicV3)
	v4 := bytes.HasPrefix(data, snapMagicV4)
	if !v1 && !v2 && !v3 && !v4 && !bytes.HasPrefix(data, snapMagic) {
		return 0, errors.New("engine: snapshot: bad magic (not SPSNAP1 to SPSNAP5)")
	}
	c := bincur.New(data[len(snapMagic):], errEntry)
	if n := c.Uvarint(); c.Err == nil && int(n) != len(e.shards) {
		return 0, fmt.Errorf("engine: snapshot has %d shards, configured %d (the shard count is fixed for the life of the data)", n, len(e.shards))
	}
	nt := c.Uvarint()
	for i := uint64(0); i < nt && c.Err == nil; i++ {
		b := c.Bytes()
		if c.Err != nil {
			break
		}
		t, err := registry.Decode(b)
		if err != nil {
			return 0, fmt.Errorf("engine: snapshot: %w", err)
		}
		if err := e.reg.Put(t); err != nil {
			return 0, fmt.Errorf("engine: snapshot: %w", err)
		}
	}
	if c.Err != nil {
		return 0, fmt.Errorf("engine: snapshot: %w", c.Err)
	}
	rest, err := e.idem.RestoreSnapshot(c.B)
	if err != nil {
		return 0, fmt.Errorf("engine: snapshot: %w", err)
	}
	c.B = rest
	for _, s := range e.shards {
		b := c.Bytes()
		if c.Err != nil {
			return 0, fmt.Errorf("engine: snapshot: shard %d: %w", s.id, c.Err)
		}
		if err := s.c.Restore(bytes.NewReader(b)); err != nil {
			return 0, fmt.Errorf("engine: snapshot: shard %d: %w", s.id, err)
		}
	}
	if !v1 {
		rest, err := e.conf.store.RestoreSnapshot(c.B)
		if err != nil {
			return 0, fmt.Errorf("engine: snapshot: config: %w", err)
		}
		c.B = rest
	}
	if !v1 && !v2 {
		for _, s := range e.shards {
			n := c.Uvarint()
			if c.Err == nil && n > DepositsMax {
				return 0, fmt.Errorf("engine: snapshot: shard %d: %d deposits", s.id, n)
			}
			for i := uint64(0); i < n && c.Err == nil; i++ {
				b := c.Bytes()
				if c.Err != nil {
					break
				}
				d := &hospital.Deposit{}
				if err := d.DecodeBinary(b); err != nil {
					return 0, fmt.Errorf("engine: snapshot: shard %d: %w", s.id, err)
				}
				if s.hosp.deps == nil {
					s.hosp.deps = make(map[string]*hospital.Deposit)
				}
				s.hosp.deps[d.ID] = d
			}
		}
		if c.Err != nil {
			return 0, fmt.Errorf("engine: snapshot: deposits: %w", c.Err)
		}
	}
	if !v1 && !v2 && !v3 {
		if err := e.restoreDenySnapshot(c); err != nil {
			return 0, err
		}
	}
	if !v1 && !v2 && !v3 && !v4 {
		if err := e.restoreStallSnapshot(c); err != nil {
			return 0, err
		}
	}
	if len(c.B) != 0 {
		return 0, fmt.Errorf("engine: snapshot: %d trailing bytes", len(c.B))
	}
	return lsn, nil
}

func (e *Engine) snapshotLoop() {
	defer e.wg.Done()
	for {
		select {
		case <-e.stop:
			return
		case <-e.snapCh:
			if e.Ready() != nil {
				continue
			}
			if err := e.Snapshot(); err != nil {
				e.log.Error("snapshot failed", "err", err)
			}
		}
	}
}
