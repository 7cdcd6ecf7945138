// Package clearing owns the settlement process after ingest: the daily
// settlement windows (Asia/Shanghai business days with a configurable
// cut-off), their drain and close, the clearing of each merchant's window
// (count, gross, refunds, reversals, merchant discount fee, division legs,
// net payable), the settlement file for the bank's core, per-merchant
// statements, and reconciliation of the journal's totals against the
// store's.
//
// The package holds no clock and starts no goroutine: the caller passes
// "now" to Tick, so that tests step time and the process drives it from a
// ticker. Every state change is a conditional write in the store (OPEN ->
// CLOSED -> SETTLED), so a Tick repeated after a crash, or by a second
// process, changes nothing that is already done.
//
// Money is int64 fen everywhere and every sum is overflow-checked; rates
// are shopspring/decimal and are applied once per merchant and window,
// never per transaction (see Fee). The rules are written down in
// docs/settlement.md.
package clearing
