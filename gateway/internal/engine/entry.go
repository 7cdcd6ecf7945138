package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"scenepay/gateway/internal/bincur"
	"scenepay/terminals"
)

// Journal entry format (the payload of one journal record; the journal adds
// length, CRC and LSN around it — see docs/journal.md):
//
//	u8 type
//	type 1, terminal request:
//	  uvarint len(tid) | tid | uvarint txn | u64 content hash (LE) |
//	  2 bytes result code | u8 flags (bit 0: tombstone placed for orig) |
//	  uvarint orig | uvarint len(core record) | core record | uvarint len(reply) | sealed reply
//	type 2, terminal registration: registry JSON record
//	type 3, operator ledger operation: core record
//	type 4, config document version: confstore.AppendDoc
//	  (uvarint len(name) | name | uvarint version | varint at Unix ms | uvarint len(body) | body)
//	type 5, hospital request (hospital.go); type 6, deny-list change (denylist.go)
//	type 8, stall code registration, revocation or wallet payment (stall.go)
const (
	entryRequest  = 1
	entryTerminal = 2
	entryOperator = 3
	entryConfig   = 4
)

const flagTombstone = 1

type txnEntry struct {
	tid    string
	txn    uint64
	hash   uint64
	code   terminals.Code
	tomb   bool
	orig   uint64
	record []byte
	reply  []byte
}

func appendTxnEntry(dst []byte, e *txnEntry) []byte {
	dst = append(dst, entryRequest)
	dst = binary.AppendUvarint(dst, uint64(len(e.tid)))
	dst = append(dst, e.tid...)
	dst = binary.AppendUvarint(dst, e.txn)
	dst = binary.LittleEndian.AppendUint64(dst, e.hash)
	dst = append(dst, e.code[0], e.code[1])
	var fl byte
	if e.tomb {
		fl |= flagTombstone
	}
	dst = append(dst, fl)
	dst = binary.AppendUvarint(dst, e.orig)
	dst = binary.AppendUvarint(dst, uint64(len(e.record)))
	dst = append(dst, e.record...)
	dst = binary.AppendUvarint(dst, uint64(len(e.reply)))
	return append(dst, e.reply...)
}

// errEntry marks an entry that does not decode: journal corruption that the
// CRC did not catch, or a software bug. Startup stops on it.
var errEntry = errors.New("engine: bad journal entry")

func decodeTxnEntry(b []byte, e *txnEntry) error {
	if len(b) == 0 || b[0] != entryRequest {
		return fmt.Errorf("%w: not a request entry", errEntry)
	}
	c := bincur.New(b[1:], errEntry)
	e.tid = string(c.Bytes())
	e.txn = c.Uvarint()
	h := c.Take(8)
	code := c.Take(2)
	fl := c.Take(1)
	e.orig = c.Uvarint()
	e.record = c.Bytes()
	e.reply = c.Bytes()
	if c.Err != nil {
		return c.Err
	}
	if len(c.B) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errEntry, len(c.B))
	}
	e.hash = binary.LittleEndian.Uint64(h)
	e.code = terminals.Code(code)
	if _, ok := e.code.Info(); !ok {
		return fmt.Errorf("%w: unknown code %q", errEntry, code)
	}
	e.tomb = fl[0]&flagTombstone != 0
	if !terminals.ValidID(e.tid, terminals.MaxTerminalIDLen) || e.txn == 0 {
		return fmt.Errorf("%w: bad terminal id or txn", errEntry)
	}
	return nil
}
