// Package journal owns the gateway's durable write-ahead log: a segmented,
// CRC-protected, append-only sequence of records numbered by contiguous LSNs
// (log sequence numbers, starting at 1), written through a group-commit
// pipeline, plus the snapshots that let old segments be removed.
//
// The gateway journals every ledger decision and replies to a terminal only
// after the record's Completion fires, which happens only after the fsync
// that covers the record returned nil (promise 1 of the design). On restart
// Open validates every record, cuts off a torn tail left by a crash, and
// refuses (with *CorruptionError) damage that a crash cannot explain;
// Replay then feeds the records to the ledger.
//
// Files:
//   - commit.go: the group-commit pipeline (read its header first);
//   - format.go: the byte layout (docs/journal.md is the normative copy);
//   - open.go: scanning, torn-tail repair, Replay and TruncateBefore;
//   - snapshot.go: snapshot files with a CRC trailer, newest two kept.
//
// All I/O goes through vfs.FS so that tests inject write errors, fsync
// errors and torn writes.
package journal
