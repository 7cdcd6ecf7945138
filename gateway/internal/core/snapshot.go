package core

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"

	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/scene/transit"
)

// Snapshot format (little endian), version 1. Deterministic: two shards
// with the same state write the same bytes whatever order their accounts
// were opened in, so a hash of the snapshot is a state digest.
//
//	magic "SCPSNAP\x00" | version u16 | shard u32 | seq u64
//	| accounts u32 | reversible u32 | refs u32 | holds u32
//	accounts, by key:    keylen u8, key, balance i64, held i64, floor i64,
//	                     dayTotal i64, yearTotal i64, day i32, year i32, class u8, flags u8 (bit0 blocked)
//	reversible, oldest first: tidlen u8, tid, txn u64, account u32 (index in the
//	                     list above), day i32, year i32, amount i64, flags u8 (bit0 reversed)
//	refs, oldest first:  reflen u8, ref, account u32, amount i64
//	holds, by (tid, txn): tidlen u8, tid, txn u64, account u32, amount i64, remaining i64
//	(version 2 only) cards u32, then by account: account u32, len u16,
//	                     transit card state (transit.Card.AppendBinary, with its upload ring)
//	(version 3 only) QR counters u32, then by account: account u32, len u16,
//	                     market.Customer.AppendBinary;
//	                     used codes: len u32, market.UsedCodes.AppendBinary;
//	                     refund ledger: len u32, market.Ledger.AppendBinary
//	(version 4 only) offline counts u32, then by account: account u32, count u16
//	                     (e-CNY double-offline payments since the wallet's last sync)
//	(version 5 only) for every ref above, in the same order: debt i64
//	                     (the part of the top-up that paid transit debt, topup_debt.go)
//	crc32c u32 of everything before it
//
// Version 3 added the market state; the used-code set and the ledger keep
// the bounds they were written with (their eviction order is part of the
// state journaled after the snapshot). Version 2 added the transit cards. Restore still loads version 1 (a
// ledger from before taps has no cards); an open journey's hold counts in
// its account's held, so the held check sums holds and journeys.
//
// FIFO tables keep their order because eviction depends on it; the
// account kind is not stored because the key carries it.
const (
	snapMagic   = "SCPSNAP\x00"
	SnapVersion = 5
	// blobBytesMax bounds one market blob of a snapshot (the used-code set
	// or the refund ledger); it is read in chunks, so a corrupt length
	// costs no more memory than the bytes actually present.
	blobBytesMax = 1 << 30
	// cardBytesMax bounds one card's snapshot form: the state and the
	// upload ring (count, next slot, SeenMax keys of 16 bytes).
	cardBytesMax = transit.StateBytesMax + 2 + 16*transit.SeenMax
)

// SnapshotError reports a snapshot that is not what Snapshot wrote.
type SnapshotError struct {
	Offset int64 // bytes read when the problem showed
	Msg    string
}

func (e *SnapshotError) Error() string {
	return fmt.Sprintf("core: snapshot at byte %d: %s", e.Offset, e.Msg)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *SnapshotError) Is(target error) bool { return target == ErrCorrupt }

// ErrNotEmpty is returned by Restore into a shard that has state.
var ErrNotEmpty = errors.New("core: restore into a shard that is not empty")

// snapWriter encodes into a buffer that goes to w (and into the CRC) in
// large pieces: a field-by-field write through bufio and the hash costs
// more than the encoding itself on a shard of 100k accounts.
type snapWriter struct {
	w   io.Writer
	crc hash.Hash32
	b   []byte
	err error
}

// snapChunk is the buffer size at which snapWriter hands its bytes on.
const snapChunk = 64 << 10

func (sw *snapWriter) spill() {
	if len(sw.b) >= snapChunk {
		sw.flush()
	}
}

func (sw *snapWriter) flush() {
	if sw.err == nil && len(sw.b) > 0 {
		sw.crc.Write(sw.b)
		_, sw.err = sw.w.Write(sw.b)
	}
	sw.b = sw.b[:0]
}

func (sw *snapWriter) put(b []byte) { sw.b = append(sw.b, b...); sw.spill() }
func (sw *snapWriter) u8(v uint8)   { sw.b = append(sw.b, v); sw.spill() }
func (sw *snapWriter) u16(v uint16) { sw.b = binary.LittleEndian.AppendUint16(sw.b, v); sw.spill() }
func (sw *snapWriter) u32(v uint32) { sw.b = binary.LittleEndian.AppendUint32(sw.b, v); sw.spill() }
func (sw *snapWriter) u64(v uint64) { sw.b = binary.LittleEndian.AppendUint64(sw.b, v); sw.spill() }
func (sw *snapWriter) str(s string) {
	sw.b = append(sw.b, uint8(len(s))) // every stored string came through a record: <= MaxFieldLen
	sw.b = append(sw.b, s...)
	sw.spill()
}

// Snapshot writes the shard's state to w. It does not change the shard.
func (s *Shard) Snapshot(w io.Writer) error {
	order := make([]int32, len(s.accounts))
	for i := range order {
		order[i] = int32(i)
	}
	sort.Slice(order, func(i, j int) bool { return s.accounts[order[i]].key < s.accounts[order[j]].key })
	pos := make([]uint32, len(s.accounts)) // account index -> position in the snapshot
	for p, i := range order {
		pos[i] = uint32(p)
	}
	type hold struct {
		k txnKey
		e holdEntry
	}
	holds := make([]hold, 0, s.holds.len())
	s.holds.each(func(k txnKey, e *holdEntry) bool { holds = append(holds, hold{k, *e}); return true })
	sort.Slice(holds, func(i, j int) bool { return txnLess(holds[i].k, holds[j].k) })

	sw := &snapWriter{w: w, crc: crc32.New(castagnoli), b: make([]byte, 0, snapChunk+MaxFieldLen+cardBytesMax)}
	sw.put([]byte(snapMagic))
	sw.u16(SnapVersion)
	sw.u32(s.id)
	sw.u64(s.seq)
	sw.u32(uint32(len(s.accounts)))
	sw.u32(uint32(s.rev.n))
	sw.u32(uint32(s.refs.n))
	sw.u32(uint32(len(holds)))
	for _, i := range order {
		a := &s.accounts[i]
		sw.str(a.key)
		sw.u64(uint64(a.balance))
		sw.u64(uint64(a.held))
		sw.u64(uint64(a.floor))
		sw.u64(uint64(a.dayTotal))
		sw.u64(uint64(a.yearTotal))
		sw.u32(uint32(a.day))
		sw.u32(uint32(a.year))
		sw.u8(a.class)
		sw.u8(boolByte(a.blocked))
	}
	s.rev.each(func(k txnKey, e *revEntry) bool {
		sw.str(k.tid)
		sw.u64(k.txn)
		sw.u32(pos[e.acct])
		sw.u32(uint32(e.day))
		sw.u32(uint32(e.year))
		sw.u64(uint64(e.amount))
		sw.u8(boolByte(e.reversed))
		return sw.err == nil
	})
	s.refs.each(func(ref string, e *refEntry) bool {
		sw.str(ref)
		sw.u32(pos[e.acct])
		sw.u64(uint64(e.amount))
		return sw.err == nil
	})
	for _, h := range holds {
		sw.str(h.k.tid)
		sw.u64(h.k.txn)
		sw.u32(pos[h.e.acct])
		sw.u64(uint64(h.e.amount))
		sw.u64(uint64(h.e.remaining))
	}
	var nCards uint32
	for i := range s.accounts {
		if s.accounts[i].card != nil {
			nCards++
		}
	}
	sw.u32(nCards)
	var cb []byte
	for _, i := range order {
		if c := s.accounts[i].card; c != nil {
			cb = c.AppendBinary(cb[:0])
			sw.u32(pos[i])
			sw.u16(uint16(len(cb)))
			sw.put(cb)
		}
	}
	var nQR uint32
	for i := range s.accounts {
		if s.accounts[i].qr != nil {
			nQR++
		}
	}
	sw.u32(nQR)
	for _, i := range order {
		if c := s.accounts[i].qr; c != nil {
			cb = c.AppendBinary(cb[:0])
			sw.u32(pos[i])
			sw.u16(uint16(len(cb)))
			sw.put(cb)
		}
	}
	cb = s.mkt.used.AppendBinary(cb[:0])
	sw.u32(uint32(len(cb)))
	sw.put(cb)
	cb = s.mkt.ledger.AppendBinary(cb[:0])
	sw.u32(uint32(len(cb)))
	sw.put(cb)
	s.appendOffline(sw, order, pos)
	s.appendRefDebts(sw)
	sw.flush()
	if sw.err == nil {
		_, sw.err = w.Write(binary.LittleEndian.AppendUint32(nil, sw.crc.Sum32()))
	}
	return sw.err
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func txnLess(a, b txnKey) bool {
	if a.tid != b.tid {
		return a.tid < b.tid
	}
	return a.txn < b.txn
}

type snapReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	off int64
	buf [max(MaxFieldLen, cardBytesMax)]byte
	err error
}

func (sr *snapReader) read(n int) []byte {
	if sr.err != nil {
		return sr.buf[:n] // zeros or stale bytes; the caller checks sr.err before trusting anything
	}
	b := sr.buf[:n]
	if _, err := io.ReadFull(sr.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			sr.err = &SnapshotError{Offset: sr.off, Msg: "truncated"}
		} else {
			sr.err = fmt.Errorf("core: reading snapshot: %w", err)
		}
		return b
	}
	sr.crc.Write(b)
	sr.off += int64(n)
	return b
}

func (sr *snapReader) u8() uint8   { return sr.read(1)[0] }
func (sr *snapReader) u16() uint16 { return binary.LittleEndian.Uint16(sr.read(2)) }
func (sr *snapReader) u32() uint32 { return binary.LittleEndian.Uint32(sr.read(4)) }
func (sr *snapReader) u64() uint64 { return binary.LittleEndian.Uint64(sr.read(8)) }
func (sr *snapReader) i64() int64  { return int64(sr.u64()) }
func (sr *snapReader) i32() int32  { return int32(sr.u32()) }
func (sr *snapReader) str() string { return string(sr.read(int(sr.u8()))) }

func (sr *snapReader) fail(format string, args ...any) {
	if sr.err == nil {
		sr.err = &SnapshotError{Offset: sr.off, Msg: fmt.Sprintf(format, args...)}
	}
}

func (s *Shard) empty() bool {
	return s.seq == 0 && len(s.accounts) == 0 && s.rev.n == 0 && s.refs.n == 0 && s.holds.len() == 0 &&
		s.mkt.used.Len() == 0 && s.mkt.ledger.Len() == 0
}

// reset returns the shard to the state NewShard gives.
func (s *Shard) reset() {
	*s = *NewShard(s.id, &s.cfg)
}

// Restore loads a snapshot into an empty shard of the same id. It checks
// the CRC, the order and uniqueness of every table, the bounds of this
// shard's Config, and every invariant (CheckInvariants); on any error the
// shard is left empty.
func (s *Shard) Restore(r io.Reader) error {
	if !s.empty() {
		return ErrNotEmpty
	}
	if err := s.restore(r); err != nil {
		s.reset()
		return err
	}
	return nil
}

func (s *Shard) restore(r io.Reader) error {
	sr := &snapReader{r: bufio.NewReader(r), crc: crc32.New(castagnoli)}
	if string(sr.read(len(snapMagic))) != snapMagic {
		sr.fail("not a shard snapshot")
	}
	version := sr.u16()
	if version < 1 || version > SnapVersion {
		sr.fail("version %d, want 1..%d", version, SnapVersion)
	}
	if id := sr.u32(); id != s.id {
		sr.fail("snapshot of shard %d, restoring shard %d", id, s.id)
	}
	seq := sr.u64()
	nAcct, nRev, nRefs, nHolds := sr.u32(), sr.u32(), sr.u32(), sr.u32()
	switch {
	case int64(nAcct) > maxAccounts:
		sr.fail("%d accounts", nAcct)
	case int(nRev) > len(s.rev.vals):
		sr.fail("%d reversible purchases, this shard's ReversibleMax is %d", nRev, len(s.rev.vals))
	case int(nRefs) > len(s.refs.vals):
		sr.fail("%d top-up refs, this shard's RefsMax is %d", nRefs, len(s.refs.vals))
	case int(nHolds) > len(s.holds.vals):
		sr.fail("%d holds, this shard's HoldsMax is %d", nHolds, len(s.holds.vals))
	}
	if sr.err != nil {
		return sr.err
	}
	s.accounts = make([]account, 0, min(int(nAcct), 1<<16)) // a corrupt count must not allocate gigabytes
	for i := uint32(0); i < nAcct && sr.err == nil; i++ {
		a := account{key: sr.str()}
		a.balance, a.held, a.floor = sr.i64(), sr.i64(), sr.i64()
		a.dayTotal, a.yearTotal = sr.i64(), sr.i64()
		a.day, a.year = sr.i32(), sr.i32()
		a.class = sr.u8()
		flags := sr.u8()
		if sr.err != nil {
			break
		}
		k, ok := kindOf(a.key)
		a.kind, a.blocked = k, flags&1 != 0
		switch {
		case !ok:
			sr.fail("account key %q has no known kind", a.key)
		case i > 0 && a.key <= s.accounts[i-1].key:
			sr.fail("account %q out of order", a.key)
		case flags&^1 != 0:
			sr.fail("account %q: unknown flags %02x", a.key, flags)
		default:
			if err := checkAccount(&a); err != nil {
				sr.fail("%v", err)
			}
		}
		s.accounts = append(s.accounts, a)
		s.byKey[a.key] = int32(i)
	}
	acct := func(what string) int32 {
		i := sr.u32()
		if sr.err == nil && i >= nAcct {
			sr.fail("%s names account %d of %d", what, i, nAcct)
		}
		return int32(i)
	}
	for i := uint32(0); i < nRev && sr.err == nil; i++ {
		k := txnKey{tid: sr.str(), txn: sr.u64()}
		e := revEntry{acct: acct("reversible purchase"), day: sr.i32(), year: sr.i32(), amount: sr.i64()}
		flags := sr.u8()
		e.reversed = flags&1 != 0
		h := s.hashTxn(k.tid, k.txn)
		switch {
		case sr.err != nil:
		case k.tid == "" || k.txn == 0 || e.amount <= 0 || flags&^1 != 0:
			sr.fail("reversible purchase %s/%d: amount %d, flags %02x", k.tid, k.txn, e.amount, flags)
		case s.rev.get(k, h) != nil:
			sr.fail("reversible purchase %s/%d twice", k.tid, k.txn)
		default:
			s.rev.push(k, h, e)
		}
	}
	for i := uint32(0); i < nRefs && sr.err == nil; i++ {
		ref := sr.str()
		e := refEntry{acct: acct("top-up ref"), amount: sr.i64()}
		h := s.hashRef(ref)
		switch {
		case sr.err != nil:
		case ref == "" || e.amount <= 0:
			sr.fail("top-up ref %q: amount %d", ref, e.amount)
		case s.refs.get(ref, h) != nil:
			sr.fail("top-up ref %q twice", ref)
		default:
			s.refs.push(ref, h, e)
		}
	}
	var prev txnKey
	for i := uint32(0); i < nHolds && sr.err == nil; i++ {
		k := txnKey{tid: sr.str(), txn: sr.u64()}
		e := holdEntry{acct: acct("hold"), amount: sr.i64(), remaining: sr.i64()}
		h := s.hashTxn(k.tid, k.txn)
		switch {
		case sr.err != nil:
		case k.tid == "" || k.txn == 0 || e.remaining <= 0 || e.remaining > e.amount:
			sr.fail("hold %s/%d: amount %d, remaining %d", k.tid, k.txn, e.amount, e.remaining)
		case i > 0 && !txnLess(prev, k):
			sr.fail("hold %s/%d out of order", k.tid, k.txn)
		case s.rev.get(k, h) != nil:
			sr.fail("hold %s/%d is also a purchase", k.tid, k.txn)
		default:
			s.holds.add(k, h, e) // cannot fail: nHolds <= HoldsMax
		}
		prev = k
	}
	if version >= 2 && sr.err == nil {
		nCards := sr.u32()
		if sr.err == nil && nCards > nAcct {
			sr.fail("%d cards for %d accounts", nCards, nAcct)
		}
		prevPos := int64(-1)
		for i := uint32(0); i < nCards && sr.err == nil; i++ {
			ai := acct("card")
			n := int(sr.u16())
			if sr.err == nil && n > cardBytesMax {
				sr.fail("card of %d bytes over %d", n, cardBytesMax)
			}
			if sr.err != nil {
				break
			}
			b := sr.read(n)
			if sr.err != nil {
				break
			}
			if int64(ai) <= prevPos {
				sr.fail("card of account %d out of order", ai)
				break
			}
			prevPos = int64(ai)
			c := new(transit.Card)
			if err := transit.DecodeCard(b, c); err != nil {
				sr.fail("card of account %q: %v", s.accounts[ai].key, err)
				break
			}
			s.accounts[ai].card = c
		}
	}
	if version >= 3 && sr.err == nil {
		s.restoreMarket(sr, nAcct)
	}
	if version >= 4 && sr.err == nil {
		s.restoreOffline(sr, nAcct)
	}
	if version >= 5 && sr.err == nil {
		s.restoreRefDebts(sr)
	}
	if sr.err != nil {
		return sr.err
	}
	sum := sr.crc.Sum32()
	var trailer [4]byte
	if _, err := io.ReadFull(sr.r, trailer[:]); err != nil {
		return &SnapshotError{Offset: sr.off, Msg: "truncated before the CRC"}
	}
	if got := binary.LittleEndian.Uint32(trailer[:]); got != sum {
		return &SnapshotError{Offset: sr.off, Msg: fmt.Sprintf("crc stored %08x, computed %08x", got, sum)}
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		return &SnapshotError{Offset: sr.off + 4, Msg: "data after the CRC"}
	}
	s.seq = seq
	s.rebuildOpen()
	if err := s.CheckInvariants(); err != nil {
		return &SnapshotError{Offset: sr.off, Msg: err.Error()}
	}
	return nil
}

// restoreMarket reads the version 3 market section.
func (s *Shard) restoreMarket(sr *snapReader, nAcct uint32) {
	n := sr.u32()
	if sr.err == nil && n > nAcct {
		sr.fail("%d QR counters for %d accounts", n, nAcct)
	}
	prev := int64(-1)
	for i := uint32(0); i < n && sr.err == nil; i++ {
		ai := sr.u32()
		l := int(sr.u16())
		if sr.err == nil && (ai >= nAcct || int64(ai) <= prev || l > MaxFieldLen) {
			sr.fail("QR counter of account %d (len %d) out of order or range", ai, l)
		}
		if sr.err != nil {
			return
		}
		prev = int64(ai)
		b := sr.read(l)
		c := new(market.Customer)
		if sr.err == nil {
			if err := c.DecodeBinary(b); err != nil {
				sr.fail("QR counter of account %q: %v", s.accounts[ai].key, err)
				return
			}
			s.accounts[ai].qr = c
		}
	}
	if b := sr.blob("used codes"); sr.err == nil {
		if err := s.mkt.used.DecodeBinary(b); err != nil {
			sr.fail("%v", err)
		}
	}
	if b := sr.blob("refund ledger"); sr.err == nil {
		if err := s.mkt.ledger.DecodeBinary(b); err != nil {
			sr.fail("%v", err)
		}
	}
}

// blob reads a u32 length and that many bytes, in chunks.
func (sr *snapReader) blob(what string) []byte {
	n := int64(sr.u32())
	if sr.err == nil && n > blobBytesMax {
		sr.fail("%s of %d bytes over %d", what, n, blobBytesMax)
	}
	var out []byte
	for n > 0 && sr.err == nil {
		k := int(min(n, int64(len(sr.buf))))
		out = append(out, sr.read(k)...)
		n -= int64(k)
	}
	return out
}
