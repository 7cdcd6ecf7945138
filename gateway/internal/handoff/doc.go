// Package handoff owns the gateway side of the exactly-once handoff of
// journaled transactions to the settlement store: a goroutine that reads
// durable journal records after the store's high water for this gateway
// instance, turns the money-moving ones into settlement rows, seals them
// into batches by count, LSN span or age, ingests them with capped
// exponential backoff while the store is down, and reports the backlog.
//
// It is never on the request path. The request path learns about it only
// through one flag (the engine refuses new payments while the backlog is
// past its bound) and the journal learns about it only through the LSN it
// reports as handed off (retention keeps everything after it).
//
// Exactly once rests on the store, not on anything this package writes:
// every batch id is a function of the source and its LSN range, the store
// writes rows and the high water in one transaction, and after a restart
// the handoff resumes at the store's high water. A crash before, during or
// after the commit therefore either re-sends a batch the store already has
// (a duplicate, changing nothing) or sends one it does not (no loss).
package handoff
