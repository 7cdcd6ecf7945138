package store

// Ingest's COPY encoder. pgx's CopyFrom boxes every value in an interface,
// looks up an encode plan per value and first asks the server for the
// column types (one more round trip); at 10k rows a batch that client work
// was as long as the server's work on an unindexed table. The columns and
// their types are fixed here (txnCols), so the rows are written straight
// in PostgreSQL's binary COPY format
// (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"):
// the 19-byte header, per row an int16 field count and per field an int32
// length and the value in the type's binary send format (text: its bytes;
// bigint: 8 bytes big-endian; timestamptz: int64 microseconds since
// 2000-01-01 00:00:00 UTC), and the int16 -1 trailer. Validate has bounded
// every uint64 to the int64 range, every time to microseconds and every
// text to printable ASCII, so no value needs a conversion or an escape.

import (
	"context"
	"encoding/binary"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"scenepay/settlement/handoff"
)

// copyChunkBytes is how much encoded data one Read prepares: pgconn sends
// what it reads in messages of up to 64 KiB.
const copyChunkBytes = 64 << 10

// pgEpochMicro is 2000-01-01 00:00:00 UTC in Unix microseconds.
const pgEpochMicro = 946_684_800_000_000

var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// copyBatch copies b's rows into table (txns_recent or the staging table,
// both with txns' columns) and returns how many the server wrote.
func copyBatch(ctx context.Context, tx pgx.Tx, table string, b *handoff.Batch) (int64, error) {
	sql := `COPY ` + pgx.Identifier{table}.Sanitize() + ` (` + strings.Join(txnCols, ", ") + `) FROM STDIN BINARY`
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, &copyEncoder{b: b}, sql)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// copyEncoder is an io.Reader of a batch's rows in binary COPY format,
// encoded a chunk at a time as pgconn reads.
type copyEncoder struct {
	b       *handoff.Batch
	next    int // next row to encode
	started bool
	done    bool // the trailer is in buf
	buf     []byte
	off     int // read position in buf
}

func (e *copyEncoder) Read(p []byte) (int, error) {
	for e.off == len(e.buf) {
		if e.done {
			return 0, io.EOF
		}
		e.fill()
	}
	n := copy(p, e.buf[e.off:])
	e.off += n
	return n, nil
}

// fill encodes the next chunk of rows (and the header or trailer).
func (e *copyEncoder) fill() {
	if e.buf == nil {
		e.buf = make([]byte, 0, copyChunkBytes+1024)
	}
	e.buf, e.off = e.buf[:0], 0
	if !e.started {
		e.buf = append(e.buf, copyHeader...)
		e.started = true
	}
	for ; e.next < len(e.b.Rows) && len(e.buf) < copyChunkBytes; e.next++ {
		e.buf = appendCopyRow(e.buf, &e.b.Rows[e.next], e.b.ID)
	}
	if e.next == len(e.b.Rows) {
		e.buf = binary.BigEndian.AppendUint16(e.buf, 0xffff)
		e.done = true
	}
}

// appendCopyRow appends one row in txnCols order.
func appendCopyRow(buf []byte, r *handoff.Txn, batchID string) []byte {
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(txnCols)))
	buf = appendCopyText(buf, r.Source)
	buf = appendCopyInt8(buf, int64(r.LSN))
	buf = appendCopyInt8(buf, r.At.UnixMicro()-pgEpochMicro)
	buf = appendCopyText(buf, r.Merchant)
	buf = appendCopyText(buf, r.Terminal)
	buf = appendCopyText(buf, r.Scene)
	buf = appendCopyText(buf, r.Op)
	buf = appendCopyText(buf, r.InstKind)
	buf = appendCopyText(buf, r.Account)
	buf = appendCopyInt8(buf, r.Amount)
	buf = appendCopyText(buf, r.Auth)
	buf = appendCopyInt8(buf, int64(r.Txn))
	buf = appendCopyInt8(buf, int64(r.Orig))
	return appendCopyText(buf, batchID)
}

func appendCopyText(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

func appendCopyInt8(buf []byte, v int64) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 8)
	return binary.BigEndian.AppendUint64(buf, uint64(v))
}
