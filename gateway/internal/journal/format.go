package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// On-disk layout, little-endian throughout. docs/journal.md is the normative
// description; a change here is a format version bump there.
//
// Segment file "<first LSN, 20 decimal digits>.log":
//
//	segment header (24 bytes)
//	  0  [4]  magic "SPJL"
//	  4  u16  format version (1)
//	  6  u16  reserved, 0
//	  8  u64  first LSN of the segment (equals the file name)
//	 16  u32  CRC-32C (Castagnoli) of bytes 0..16
//	 20  u32  reserved, 0
//	record, repeated (16-byte header + payload):
//	  0  u32  payload length n
//	  4  u32  CRC-32C over bytes 0..4 (the length) then bytes 8..16+n
//	          (the LSN and the payload)
//	  8  u64  LSN
//	 16  [n]  payload
//
// The CRC covers the length so that a flipped length bit is caught before it
// misframes the rest of the segment, and the LSN so that a stale record from
// a recycled file can never pass for the expected one.
const (
	segmentMagic      = "SPJL"
	segmentVersion    = 1
	segmentHeaderLen  = 24
	recordHeaderLen   = 16
	segmentNameDigits = 20
	segmentSuffix     = ".log"

	// RecordFormatMax is the largest payload the format admits, whatever
	// Options.RecordBytesMax says; it bounds the memory a corrupt length
	// field can make a reader allocate.
	RecordFormatMax = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segmentNameDigits, first, segmentSuffix)
}

// parseSegmentName returns the first LSN named by a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != segmentNameDigits {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

func appendSegmentHeader(dst []byte, first uint64) []byte {
	var h [segmentHeaderLen]byte
	copy(h[0:4], segmentMagic)
	binary.LittleEndian.PutUint16(h[4:6], segmentVersion)
	binary.LittleEndian.PutUint64(h[8:16], first)
	binary.LittleEndian.PutUint32(h[16:20], crc32.Checksum(h[0:16], castagnoli))
	return append(dst, h[:]...)
}

// checkSegmentHeader returns "" when h is a valid header for a segment whose
// name says first, or the reason it is not.
func checkSegmentHeader(h []byte, first uint64) string {
	switch {
	case len(h) < segmentHeaderLen:
		return "short segment header"
	case string(h[0:4]) != segmentMagic:
		return "bad segment magic"
	case crc32.Checksum(h[0:16], castagnoli) != binary.LittleEndian.Uint32(h[16:20]):
		return "segment header checksum mismatch"
	case binary.LittleEndian.Uint16(h[4:6]) != segmentVersion:
		return fmt.Sprintf("unsupported segment version %d", binary.LittleEndian.Uint16(h[4:6]))
	case binary.LittleEndian.Uint16(h[6:8]) != 0 || binary.LittleEndian.Uint32(h[20:24]) != 0:
		return "reserved segment header bytes are not zero"
	case binary.LittleEndian.Uint64(h[8:16]) != first:
		return fmt.Sprintf("segment header first LSN %d differs from its name", binary.LittleEndian.Uint64(h[8:16]))
	}
	return ""
}

func recordCRC(hdr []byte, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[0:4])
	c = crc32.Update(c, castagnoli, hdr[8:16])
	return crc32.Update(c, castagnoli, payload)
}

// appendRecord appends the encoding of one record to dst. The header is
// built in place in dst (a local array would escape through the CRC call
// and cost an allocation per record).
func appendRecord(dst []byte, lsn uint64, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, lsn)
	dst = append(dst, payload...)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:8], recordCRC(rec, rec[recordHeaderLen:]))
	return dst
}

// decodeRecord checks the record at the start of b. It returns the LSN, the
// payload (aliasing b) and the record's total length, or a reason when b
// does not start with a whole, checksummed record.
func decodeRecord(b []byte) (lsn uint64, payload []byte, size int, reason string) {
	if len(b) < recordHeaderLen {
		return 0, nil, 0, "short record header"
	}
	n := binary.LittleEndian.Uint32(b[0:4])
	if n > RecordFormatMax {
		return 0, nil, 0, fmt.Sprintf("record length %d exceeds format maximum", n)
	}
	if uint64(len(b)-recordHeaderLen) < uint64(n) {
		return 0, nil, 0, "short record payload"
	}
	payload = b[recordHeaderLen : recordHeaderLen+int(n)]
	if recordCRC(b, payload) != binary.LittleEndian.Uint32(b[4:8]) {
		return 0, nil, 0, "record checksum mismatch"
	}
	return binary.LittleEndian.Uint64(b[8:16]), payload, recordHeaderLen + int(n), ""
}
