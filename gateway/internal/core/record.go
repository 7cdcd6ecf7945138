package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"scenepay/terminals"
)

// RecordVersion is the version byte of the record encoding written by this
// package. A decoder meeting another version refuses it rather than guess.
const RecordVersion = 1

// Record layout (little endian), see doc.go for the table with meanings.
const (
	recHeaderLen = 86
	recCRCLen    = 4
	// MinRecordLen is the length of a record with four empty strings.
	MinRecordLen = recHeaderLen + recCRCLen
	// MaxFieldLen bounds each string field (account, tid, merchant, ref) in
	// bytes; it is the largest length the one-byte length prefix can carry.
	MaxFieldLen = 255
	// MaxRecordLen is the length of a record with four maximal strings.
	MaxRecordLen = MinRecordLen + 4*MaxFieldLen

	flagBlocked = 1 << 0
	flagsKnown  = flagBlocked
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is the decoded form of one journal record: the decision the shard
// took, the inputs it took it on, and the state of the account after the
// effect. Apply replays it; audit and settlement read it.
type Record struct {
	Version  uint8
	Op       Op
	Code     terminals.Code // approved or a decline; never a refusal or fault
	Shard    uint32
	Seq      uint64 // shard sequence, 1, 2, 3, ... without gaps
	Time     int64  // gateway time of the decision, UTC Unix nanoseconds
	Account  string
	Amount   int64 // fen; for OpRelease the remainder released
	TID      string
	Txn      uint64
	Orig     uint64
	Hash     uint64
	Merchant string
	Ref      string
	Class    uint8 // account's e-CNY class after apply (0 for other kinds)
	Floor    int64 // account's floor after apply
	Blocked  bool  // account's blocked flag after apply
	Balance  int64 // account's balance after apply (0 if the account does not exist)
	Held     int64 // account's held total after apply (0 if the account does not exist)
}

// Available is the account's available balance after the record, as the
// reply to the terminal reported it.
func (r *Record) Available() int64 { return r.Balance - r.Held - r.Floor }

// AppendBinary appends the encoding of r to dst. Strings longer than
// MaxFieldLen are not representable; Step never produces them (it refuses
// such inputs as CodeMalformed), and AppendBinary truncates them rather than
// write a record its own decoder would refuse.
func (r *Record) AppendBinary(dst []byte) []byte {
	acct, tid, merch, ref := clip(r.Account), clip(r.TID), clip(r.Merchant), clip(r.Ref)
	n := MinRecordLen + len(acct) + len(tid) + len(merch) + len(ref)
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	b := dst[start:]
	le := binary.LittleEndian
	b[0] = r.Version
	b[1] = byte(r.Op)
	b[2], b[3] = codeBytes(r.Code)
	le.PutUint32(b[4:], r.Shard)
	le.PutUint64(b[8:], r.Seq)
	le.PutUint64(b[16:], uint64(r.Time))
	le.PutUint64(b[24:], uint64(r.Amount))
	le.PutUint64(b[32:], r.Txn)
	le.PutUint64(b[40:], r.Orig)
	le.PutUint64(b[48:], r.Hash)
	le.PutUint64(b[56:], uint64(r.Floor))
	le.PutUint64(b[64:], uint64(r.Balance))
	le.PutUint64(b[72:], uint64(r.Held))
	b[80] = r.Class
	var flags byte
	if r.Blocked {
		flags |= flagBlocked
	}
	b[81] = flags
	b[82], b[83], b[84], b[85] = byte(len(acct)), byte(len(tid)), byte(len(merch)), byte(len(ref))
	p := recHeaderLen
	p += copy(b[p:], acct)
	p += copy(b[p:], tid)
	p += copy(b[p:], merch)
	p += copy(b[p:], ref)
	le.PutUint32(b[p:], crc32.Checksum(b[:p], castagnoli))
	return dst
}

func clip(s string) string {
	if len(s) > MaxFieldLen {
		return s[:MaxFieldLen]
	}
	return s
}

func codeBytes(c terminals.Code) (byte, byte) {
	if len(c) != 2 {
		return 0, 0 // decodes as an unknown code: a corrupt record, never a wrong one
	}
	return c[0], c[1]
}

// recordCodes are the codes a record may carry: the decisions of the core.
// Refusals and faults are answered without a record.
var recordCodes = func() []terminals.Code {
	var cs []terminals.Code
	for _, ci := range terminals.Catalogue() {
		if ci.Class == terminals.ClassApproved || ci.Class == terminals.ClassDecline {
			cs = append(cs, ci.Code)
		}
	}
	return cs
}()

// ErrCorrupt is matched (errors.Is) by every error that means stored bytes
// are not what this package wrote: bad records, bad snapshots, and replay
// divergence.
var ErrCorrupt = errors.New("core: corrupt")

// DecodeError reports why a record could not be decoded.
type DecodeError struct {
	Field  string // the field at fault ("length", "crc", "op", ...)
	Offset int    // byte offset of the field in the record
	Msg    string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("core: record %s at offset %d: %s", e.Field, e.Offset, e.Msg)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *DecodeError) Is(target error) bool { return target == ErrCorrupt }

// DecodeRecord decodes b, which must be exactly one record, into r. It
// never panics and refuses anything AppendBinary would not have written, so
// a decoded record re-encodes to the same bytes.
func DecodeRecord(b []byte, r *Record) error {
	if len(b) < MinRecordLen {
		return &DecodeError{Field: "length", Offset: 0, Msg: fmt.Sprintf("%d bytes, shorter than %d", len(b), MinRecordLen)}
	}
	if len(b) > MaxRecordLen {
		return &DecodeError{Field: "length", Offset: 0, Msg: fmt.Sprintf("%d bytes, longer than %d", len(b), MaxRecordLen)}
	}
	n := MinRecordLen + int(b[82]) + int(b[83]) + int(b[84]) + int(b[85])
	if n != len(b) {
		return &DecodeError{Field: "length", Offset: 82, Msg: fmt.Sprintf("string lengths give %d bytes, have %d", n, len(b))}
	}
	le := binary.LittleEndian
	body := n - recCRCLen
	if got, want := crc32.Checksum(b[:body], castagnoli), le.Uint32(b[body:]); got != want {
		return &DecodeError{Field: "crc", Offset: body, Msg: fmt.Sprintf("computed %08x, stored %08x", got, want)}
	}
	if b[0] != RecordVersion {
		return &DecodeError{Field: "version", Offset: 0, Msg: fmt.Sprintf("version %d, want %d", b[0], RecordVersion)}
	}
	op := Op(b[1])
	if !op.journaled() {
		return &DecodeError{Field: "op", Offset: 1, Msg: fmt.Sprintf("op %d is not a journaled op", b[1])}
	}
	code, ok := lookupRecordCode(b[2], b[3])
	if !ok {
		return &DecodeError{Field: "code", Offset: 2, Msg: fmt.Sprintf("%q is not a decision code", b[2:4])}
	}
	if b[80] > 4 {
		return &DecodeError{Field: "class", Offset: 80, Msg: fmt.Sprintf("class %d out of 0..4", b[80])}
	}
	if b[81]&^flagsKnown != 0 {
		return &DecodeError{Field: "flags", Offset: 81, Msg: fmt.Sprintf("unknown flag bits %02x", b[81])}
	}
	*r = Record{
		Version: b[0],
		Op:      op,
		Code:    code,
		Shard:   le.Uint32(b[4:]),
		Seq:     le.Uint64(b[8:]),
		Time:    int64(le.Uint64(b[16:])),
		Amount:  int64(le.Uint64(b[24:])),
		Txn:     le.Uint64(b[32:]),
		Orig:    le.Uint64(b[40:]),
		Hash:    le.Uint64(b[48:]),
		Floor:   int64(le.Uint64(b[56:])),
		Balance: int64(le.Uint64(b[64:])),
		Held:    int64(le.Uint64(b[72:])),
		Class:   b[80],
		Blocked: b[81]&flagBlocked != 0,
	}
	p := recHeaderLen
	str := func(l byte) string {
		s := string(b[p : p+int(l)])
		p += int(l)
		return s
	}
	r.Account = str(b[82])
	r.TID = str(b[83])
	r.Merchant = str(b[84])
	r.Ref = str(b[85])
	return nil
}

func lookupRecordCode(c0, c1 byte) (terminals.Code, bool) {
	for _, c := range recordCodes {
		if c[0] == c0 && c[1] == c1 {
			return c, true
		}
	}
	return "", false
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
