package journal

// Retention horizon. The gateway reads its own retained journal to answer
// settlement's reconciliation ("what did this gateway decide between from
// and to?"). Such an answer is only true if no record of that period was
// removed, so whoever removes segments first writes down how far removal
// reached: the horizon file, "horizon" in Dir, says that every record with
// an LSN below Before may be gone and that each such record was decided at
// or before At. A period starting after At is still whole in the journal.
//
// The file is written (temporary file, fsync, rename, fsync of Dir) before
// any segment is removed, so a crash between the two leaves a horizon that
// is too far, never too near: a reader may refuse a period it could have
// served, never serve one that lost records. Before and At only grow.
//
// Layout (28 bytes, little-endian):
//
//	0  [4]  magic "SPRH"
//	4  u16  version (1)
//	6  u16  reserved, 0
//	8  u64  Before: first LSN that is certainly still held
//	16 i64  At: UTC Unix nanoseconds
//	24 u32  CRC-32C of bytes 0..24

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"
	"time"
)

const (
	horizonName    = "horizon"
	horizonTmpName = "horizon.tmp"
	horizonMagic   = "SPRH"
	horizonVersion = 1
	horizonLen     = 28
)

// Horizon is how far retention has removed records: every record with an
// LSN below Before may be gone, and each of them was decided at or before
// At. The zero Horizon means nothing was ever removed with a horizon.
type Horizon struct {
	Before uint64
	At     time.Time
}

// appendHorizon encodes h.
func appendHorizon(dst []byte, h Horizon) []byte {
	var b [horizonLen]byte
	copy(b[0:4], horizonMagic)
	binary.LittleEndian.PutUint16(b[4:6], horizonVersion)
	binary.LittleEndian.PutUint64(b[8:16], h.Before)
	binary.LittleEndian.PutUint64(b[16:24], uint64(h.At.UnixNano()))
	binary.LittleEndian.PutUint32(b[24:28], crc32.Checksum(b[0:24], castagnoli))
	return append(dst, b[:]...)
}

// decodeHorizon decodes a horizon file; damage is a *CorruptionError.
func decodeHorizon(b []byte) (Horizon, error) {
	bad := func(reason string) (Horizon, error) {
		return Horizon{}, &CorruptionError{Segment: horizonName, Reason: reason}
	}
	switch {
	case len(b) != horizonLen:
		return bad(fmt.Sprintf("horizon file is %d bytes, want %d", len(b), horizonLen))
	case string(b[0:4]) != horizonMagic:
		return bad("bad horizon magic")
	case crc32.Checksum(b[0:24], castagnoli) != binary.LittleEndian.Uint32(b[24:28]):
		return bad("horizon checksum mismatch")
	case binary.LittleEndian.Uint16(b[4:6]) != horizonVersion:
		return bad(fmt.Sprintf("horizon version %d", binary.LittleEndian.Uint16(b[4:6])))
	case binary.LittleEndian.Uint16(b[6:8]) != 0:
		return bad("horizon reserved field not 0")
	}
	h := Horizon{Before: binary.LittleEndian.Uint64(b[8:16]), At: time.Unix(0, int64(binary.LittleEndian.Uint64(b[16:24]))).UTC()}
	if h.Before < 2 {
		return bad(fmt.Sprintf("horizon before lsn %d removes nothing", h.Before))
	}
	return h, nil
}

// FirstLSN is the oldest LSN the journal still holds (1 until
// TruncateBefore removed a segment). The journal may be empty from it on.
func (j *Journal) FirstLSN() uint64 {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	return j.segments[0].first
}

// Horizon reads the horizon file: ok is false when none was ever written.
func (j *Journal) Horizon() (h Horizon, ok bool, err error) {
	path := filepath.Join(j.opts.Dir, horizonName)
	f, err := j.opts.FS.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Horizon{}, false, nil
		}
		return Horizon{}, false, &IOError{Op: "open", Path: path, Err: err}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, horizonLen+1))
	if err != nil {
		return Horizon{}, false, &IOError{Op: "read", Path: path, Err: err}
	}
	h, err = decodeHorizon(b)
	if err != nil {
		return Horizon{}, false, err
	}
	return h, true, nil
}

// TruncateBeforeAt is TruncateBefore for a caller that knows every record
// below lsn was decided at or before at: when it is about to remove a
// segment, it first makes the horizon durable (never moving it back).
func (j *Journal) TruncateBeforeAt(lsn uint64, at time.Time) error {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	n := 0
	for n+1 < len(j.segments) && j.segments[n+1].first <= lsn {
		n++
	}
	if n == 0 {
		return nil
	}
	h := Horizon{Before: j.segments[n].first, At: at.UTC()}
	old, ok, err := j.Horizon()
	if err != nil {
		return err
	}
	if ok {
		h.Before = max(h.Before, old.Before)
		if old.At.After(h.At) {
			h.At = old.At
		}
	}
	if err := j.writeHorizon(h); err != nil {
		return err
	}
	return j.truncateLocked(lsn)
}

func (j *Journal) writeHorizon(h Horizon) error {
	fsys, dir := j.opts.FS, j.opts.Dir
	tmp, final := filepath.Join(dir, horizonTmpName), filepath.Join(dir, horizonName)
	f, err := fsys.Create(tmp)
	if err != nil {
		return &IOError{Op: "create", Path: tmp, Err: err}
	}
	if _, err := f.Write(appendHorizon(nil, h)); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return &IOError{Op: "write", Path: tmp, Err: err}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return &IOError{Op: "fsync", Path: tmp, Err: err}
	}
	if err := f.Close(); err != nil {
		fsys.Remove(tmp)
		return &IOError{Op: "close", Path: tmp, Err: err}
	}
	if err := fsys.Rename(tmp, final); err != nil {
		fsys.Remove(tmp)
		return &IOError{Op: "rename", Path: final, Err: err}
	}
	if err := fsys.SyncDir(dir); err != nil {
		return &IOError{Op: "fsync dir", Path: dir, Err: err}
	}
	return nil
}
