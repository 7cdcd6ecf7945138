package journal

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"scenepay/gateway/internal/vfs"
)

// scannerOver writes b to a file and returns a scanner over it.
func scannerOver(t testing.TB, b []byte) *scanner {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := vfs.Default.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &scanner{f: f, size: int64(len(b))}
}

// validRecordAfterSlow is validRecordAfter without the zero-run skip: the
// reference the fast one must agree with.
func validRecordAfterSlow(b []byte, off int64, minLSN uint64) (int64, bool) {
	size := int64(len(b))
	for p := off + 1; p+recordHeaderLen <= size; p++ {
		lsn := leU64(b[p+8 : p+16])
		if lsn < minLSN || lsn-minLSN > uint64(size-p)/recordHeaderLen {
			continue
		}
		n := int64(leU32(b[p : p+4]))
		if n > RecordFormatMax || p+recordHeaderLen+n > size {
			continue
		}
		if _, _, _, reason := decodeRecord(b[p : p+recordHeaderLen+n]); reason == "" {
			return p, true
		}
	}
	return 0, false
}

// A valid record after a long zero run is still found, at its exact
// offset, whichever byte of its LSN field is the first nonzero one, and
// across scan-chunk boundaries; a zero tail alone holds none.
func TestValidRecordAfterZeroRun(t *testing.T) {
	for _, lsn := range []uint64{1, 0xff, 1 << 8, 1 << 16, 1 << 40, 1 << 56} {
		for _, at := range []int{17, scanChunkBytes - 20, scanChunkBytes - 3, scanChunkBytes + 4096*3 + 7, 3*scanChunkBytes + 1} {
			// An empty payload leaves the length field zero: the first
			// nonzero byte is then in the checksum, after the record's start.
			for _, payload := range [][]byte{[]byte("payload after zeros"), nil} {
				b := make([]byte, at, at+4*scanChunkBytes)
				b = appendRecord(b, lsn, payload)
				b = append(b, make([]byte, 5000)...)
				s := scannerOver(t, b)
				got, found, err := s.validRecordAfter(0, lsn)
				if err != nil || !found || got != int64(at) {
					t.Fatalf("lsn %#x at %d, %d-byte payload: validRecordAfter = %d, %v, %v", lsn, at, len(payload), got, found, err)
				}
			}
		}
	}
	s := scannerOver(t, make([]byte, 3*scanChunkBytes+123))
	if at, found, err := s.validRecordAfter(0, 1); err != nil || found {
		t.Fatalf("zero tail: validRecordAfter = %d, %v, %v", at, found, err)
	}
}

// On mixed content (zero runs, noise, records, records with corrupted
// checksums) the skip gives the same answer as the byte-by-byte scan.
func TestValidRecordAfterMatchesByteScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var b []byte
		minLSN := uint64(r.IntN(1 << 20))
		for len(b) < 64<<10 {
			switch r.IntN(4) {
			case 0:
				b = append(b, make([]byte, r.IntN(8000))...)
			case 1:
				for range r.IntN(40) {
					b = append(b, byte(r.IntN(3))) // mostly zero and small bytes
				}
			case 2:
				b = appendRecord(b, minLSN+uint64(r.IntN(4)), []byte("x"))
				if r.IntN(2) == 0 {
					b[len(b)-1] ^= 1 // bad checksum
				}
			case 3:
				b = appendRecord(b, uint64(r.IntN(1<<8)), nil)
			}
		}
		off := int64(r.IntN(len(b) / 2))
		want, wantFound := validRecordAfterSlow(b, off, minLSN)
		got, found, err := scannerOver(t, b).validRecordAfter(off, minLSN)
		if err != nil || found != wantFound || (found && got != want) {
			t.Fatalf("case %d: validRecordAfter = %d, %v, %v; byte scan = %d, %v", i, got, found, err, want, wantFound)
		}
	}
}

// BenchmarkValidRecordAfterZeroTail is the torn-tail check Open runs after
// a crash on a preallocated segment: a whole segment of zeros.
func BenchmarkValidRecordAfterZeroTail(b *testing.B) {
	s := scannerOver(b, make([]byte, DefaultSegmentBytesMax))
	b.SetBytes(DefaultSegmentBytesMax)
	for b.Loop() {
		if _, found, err := s.validRecordAfter(segmentHeaderLen, 1); err != nil || found {
			b.Fatal(found, err)
		}
	}
}
