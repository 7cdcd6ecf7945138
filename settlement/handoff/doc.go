// Package handoff owns the contract between a gateway instance and the
// settlement store: the Txn row a journaled transaction becomes, the Batch
// that carries a contiguous journal LSN range of one source, their
// validation, and their strict JSON encoding.
//
// Exactly-once delivery rests on two keys that this package defines and the
// store enforces: the batch id (deterministic from source and LSN range, so a
// re-sent batch is recognised) and the (source, LSN) pair of every row (so a
// batch re-cut over a different range adds only LSNs not seen before). The
// store, not the gateway, is the record of how far handoff got.
//
// No primary account number ever crosses this boundary: an Account that
// looks like a PAN is refused.
package handoff
