package journal

// Snapshots let the gateway restart without replaying the whole journal and
// let old segments go. A snapshot is written to a temporary file, closed
// with a CRC trailer, fsynced, renamed into place and the directory fsynced:
// at every instant the directory holds the previous snapshots intact, and a
// crash leaves at worst a *.tmp file that the next WriteSnapshot removes.
// The newest two are kept so that a snapshot damaged after it was written
// (a bad sector) still leaves one to fall back on; the caller must keep the
// journal segments back to the older one (TruncateBefore(olderLSN+1)).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"scenepay/gateway/internal/vfs"
)

// Snapshot file layout (docs/journal.md), little-endian:
//
//	 0  [4] magic "SPSN"
//	 4  u16 version (1)
//	 6  u16 reserved, 0
//	 8  u64 LSN covered: the snapshot reflects records 1..LSN
//	16  [n] data
//	16+n     u64 n
//	24+n     u32 CRC-32C over bytes 0..24+n (header, data, n)
//	28+n     [4] magic "SPSE"
const (
	snapMagic      = "SPSN"
	snapEndMagic   = "SPSE"
	snapVersion    = 1
	snapHeaderLen  = 16
	snapTrailerLen = 16
	snapPrefix     = "snap-"
	snapSuffix     = ".snap"
	snapTmpSuffix  = ".tmp"
	// snapshotsKept is how many verified snapshots stay on disk.
	snapshotsKept = 2

	// SnapshotBytesMax bounds the data of one snapshot; WriteSnapshot fails
	// past it and LoadSnapshot treats a larger file as corrupt.
	SnapshotBytesMax = 1 << 30
)

// ErrSnapshotTooLarge: the write callback produced more than SnapshotBytesMax.
var ErrSnapshotTooLarge = errors.New("journal: snapshot too large")

// SnapshotFallback is returned by LoadSnapshot together with a valid,
// older snapshot when newer ones failed verification. The lsn and data
// returned with it are usable; the error is a warning to count and log.
type SnapshotFallback struct {
	LSN     uint64             // the snapshot that was used
	Corrupt []*CorruptionError // the newer ones skipped, newest first
}

func (e *SnapshotFallback) Error() string {
	s := fmt.Sprintf("journal: fell back to snapshot at lsn %d, skipping %d corrupt newer", e.LSN, len(e.Corrupt))
	for _, c := range e.Corrupt {
		s += "; " + c.Error()
	}
	return s
}

func snapName(lsn uint64) string {
	return fmt.Sprintf("%s%0*d%s", snapPrefix, segmentNameDigits, lsn, snapSuffix)
}

func parseSnapName(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, snapPrefix)
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, snapSuffix)
	if !ok || len(digits) != segmentNameDigits {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return v, err == nil
}

// snapWriter counts and checksums what it passes on, and enforces
// SnapshotBytesMax.
type snapWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
}

func (s *snapWriter) Write(p []byte) (int, error) {
	if s.n+int64(len(p)) > SnapshotBytesMax+snapHeaderLen {
		return 0, ErrSnapshotTooLarge
	}
	n, err := s.w.Write(p)
	s.crc.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// WriteSnapshot writes a snapshot covering records 1..lsn into dir (a
// sub-directory of the journal's Dir, created if missing): write calls back
// with a buffered writer for the data. The snapshot is durable when
// WriteSnapshot returns nil. Older snapshots beyond the newest two are
// removed.
func WriteSnapshot(fs vfs.FS, dir string, lsn uint64, write func(w io.Writer) error) error {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return &IOError{Op: "mkdir", Path: dir, Err: err}
	}
	final := filepath.Join(dir, snapName(lsn))
	tmp := final + snapTmpSuffix
	f, err := fs.Create(tmp)
	if err != nil {
		return &IOError{Op: "create", Path: tmp, Err: err}
	}
	abandon := func(e error) error {
		f.Close()
		fs.Remove(tmp)
		return e
	}
	bw := bufio.NewWriterSize(&pacedWriter{f: f}, 256<<10) // small flushes (paced.go)
	sw := &snapWriter{w: bw, crc: crc32.New(castagnoli)}
	var h [snapHeaderLen]byte
	copy(h[0:4], snapMagic)
	binary.LittleEndian.PutUint16(h[4:6], snapVersion)
	binary.LittleEndian.PutUint64(h[8:16], lsn)
	if _, err := sw.Write(h[:]); err != nil {
		return abandon(&IOError{Op: "write", Path: tmp, Err: err})
	}
	if err := write(sw); err != nil {
		return abandon(err)
	}
	var t [snapTrailerLen]byte
	binary.LittleEndian.PutUint64(t[0:8], uint64(sw.n-snapHeaderLen))
	sw.crc.Write(t[0:8])
	binary.LittleEndian.PutUint32(t[8:12], sw.crc.Sum32())
	copy(t[12:16], snapEndMagic)
	if _, err := bw.Write(t[:]); err != nil {
		return abandon(&IOError{Op: "write", Path: tmp, Err: err})
	}
	if err := bw.Flush(); err != nil {
		return abandon(&IOError{Op: "write", Path: tmp, Err: err})
	}
	if err := f.Sync(); err != nil {
		return abandon(&IOError{Op: "fsync", Path: tmp, Err: err})
	}
	if err := f.Close(); err != nil {
		fs.Remove(tmp)
		return &IOError{Op: "close", Path: tmp, Err: err}
	}
	if err := fs.Rename(tmp, final); err != nil {
		fs.Remove(tmp)
		return &IOError{Op: "rename", Path: final, Err: err}
	}
	if err := fs.SyncDir(dir); err != nil {
		return &IOError{Op: "fsync dir", Path: dir, Err: err}
	}
	return pruneSnapshots(fs, dir)
}

// pruneSnapshots removes leftover temporary files and all but the newest
// snapshotsKept snapshots.
func pruneSnapshots(fs vfs.FS, dir string) error {
	names, err := fs.ReadDir(dir)
	if err != nil {
		return &IOError{Op: "readdir", Path: dir, Err: err}
	}
	var snaps []uint64
	var doomed []string
	for _, name := range names {
		if strings.HasPrefix(name, snapPrefix) && strings.HasSuffix(name, snapTmpSuffix) {
			doomed = append(doomed, name)
		} else if lsn, ok := parseSnapName(name); ok {
			snaps = append(snaps, lsn)
		}
	}
	sort.Slice(snaps, func(a, b int) bool { return snaps[a] > snaps[b] })
	for i := snapshotsKept; i < len(snaps); i++ {
		doomed = append(doomed, snapName(snaps[i]))
	}
	for _, name := range doomed {
		if err := fs.Remove(filepath.Join(dir, name)); err != nil {
			return &IOError{Op: "remove", Path: filepath.Join(dir, name), Err: err}
		}
	}
	if len(doomed) > 0 {
		if err := fs.SyncDir(dir); err != nil {
			return &IOError{Op: "fsync dir", Path: dir, Err: err}
		}
	}
	return nil
}

// LoadSnapshot returns the newest snapshot in dir whose checksum verifies:
// (0, nil, nil) when there is none. If newer snapshots were corrupt it
// returns the older one's lsn and data with a *SnapshotFallback error; if
// every snapshot is corrupt, it returns their *CorruptionErrors joined.
func LoadSnapshot(fs vfs.FS, dir string) (lsn uint64, data []byte, err error) {
	names, err := fs.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil, nil
		}
		return 0, nil, &IOError{Op: "readdir", Path: dir, Err: err}
	}
	var snaps []uint64
	for _, name := range names {
		if l, ok := parseSnapName(name); ok {
			snaps = append(snaps, l)
		}
	}
	sort.Slice(snaps, func(a, b int) bool { return snaps[a] > snaps[b] })
	var corrupt []*CorruptionError
	for _, l := range snaps {
		data, cerr, err := readSnapshot(fs, dir, l)
		if err != nil {
			return 0, nil, err
		}
		if cerr != nil {
			corrupt = append(corrupt, cerr)
			continue
		}
		if len(corrupt) > 0 {
			return l, data, &SnapshotFallback{LSN: l, Corrupt: corrupt}
		}
		return l, data, nil
	}
	if len(corrupt) == 0 {
		return 0, nil, nil
	}
	errs := make([]error, len(corrupt))
	for i, c := range corrupt {
		errs[i] = c
	}
	return 0, nil, errors.Join(errs...)
}

// readSnapshot reads and verifies one snapshot. An I/O failure is err; a
// snapshot that does not verify is cerr.
func readSnapshot(fs vfs.FS, dir string, lsn uint64) (data []byte, cerr *CorruptionError, err error) {
	name := snapName(lsn)
	path := filepath.Join(dir, name)
	bad := func(off int64, reason string) ([]byte, *CorruptionError, error) {
		return nil, &CorruptionError{Segment: name, Offset: off, LSN: lsn, Reason: reason}, nil
	}
	f, err := fs.Open(path)
	if err != nil {
		return nil, nil, &IOError{Op: "open", Path: path, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, &IOError{Op: "stat", Path: path, Err: err}
	}
	size := fi.Size()
	if size < snapHeaderLen+snapTrailerLen {
		return bad(0, "snapshot shorter than header and trailer")
	}
	if size > SnapshotBytesMax+snapHeaderLen+snapTrailerLen {
		return bad(0, "snapshot larger than SnapshotBytesMax")
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF)) {
		return nil, nil, &IOError{Op: "read", Path: path, Err: err}
	}
	t := buf[size-snapTrailerLen:]
	n := binary.LittleEndian.Uint64(t[0:8])
	switch {
	case string(buf[0:4]) != snapMagic:
		return bad(0, "bad snapshot magic")
	case string(t[12:16]) != snapEndMagic:
		return bad(size-4, "bad snapshot end magic (incomplete write?)")
	case n != uint64(size-snapHeaderLen-snapTrailerLen):
		return bad(size-snapTrailerLen, "snapshot length does not match file size")
	case crc32.Checksum(buf[:size-8], castagnoli) != binary.LittleEndian.Uint32(t[8:12]):
		return bad(size-8, "snapshot checksum mismatch")
	case binary.LittleEndian.Uint16(buf[4:6]) != snapVersion:
		return bad(4, "unsupported snapshot version")
	case binary.LittleEndian.Uint64(buf[8:16]) != lsn:
		return bad(8, "snapshot lsn differs from its name")
	}
	return buf[snapHeaderLen : size-snapTrailerLen], nil, nil
}
