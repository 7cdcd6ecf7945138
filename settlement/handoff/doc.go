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
// A row may carry per-payment division legs (Txn.Legs): the market
// operator's fee of a QR payment or refund, and the insurance parts of a
// hospital bill. They belong to the row: the store keeps them under the
// row's (source, LSN), and a re-cut row with other legs is a conflict.
// Transit debt that a top-up paid reaches settlement as its own row
// (OpDebtRecovery) for the bus company.
//
// An e-CNY "double offline" payment is a purchase row with Txn.Unsynced:
// its payee is not paid until the paying wallet syncs online. A wallet's
// sync is either a row for which Txn.SyncsWallet is true (an online
// purchase at a stall or kiosk) or a Sync in Batch.Syncs (every other
// approved online operation of the wallet: top-up, hold, tap, capture),
// so settlement sees every sync exactly once.
//
// No primary account number ever crosses this boundary: an Account that
// looks like a PAN is refused.
package handoff
