// Package hospital owns the hospital (kiosk) scene rules: pay-first items,
// inpatient deposits as long core holds, and the medical insurance split.
//
// # Model
//
// A pure rule engine like the authorization core: no I/O, goroutines,
// locks or clock (time is an argument). The caller owns the state (a
// Deposit per inpatient deposit, in the patient account's shard) and
// changes it only through Commit; a Deposit has AppendBinary and
// DecodeBinary (version byte, bounds and invariant checks, ErrCorrupt,
// never a panic) for shard snapshots. Declines are *Decline values with a
// terminals.Code; Config is versioned JSON, decoded strictly, compiled into
// Rules.
//
// # Rules and their sources (DOMAIN.md "Hospital", issue 3)
//
// Pay-first items (registration fee, tests, medicine) are item types in
// the config with a fixed price or a range; CheckItem checks the amount
// before the core purchase.
//
// The medical insurance platform computes the split of a bill into pooled
// fund, personal account and self-pay; SplitBill checks the legs are
// non-negative and sum exactly to the bill, charges only self-pay to the
// patient's instrument (BillSplit.Charge) and returns all three legs for
// settlement.
//
// An inpatient deposit is a prepaid pool from which daily costs are
// deducted; non-emergency orders pause when it runs low; on discharge the
// remainder goes back to the original route. It is a state machine over
// the core's two-phase holds (pending, post, void):
//
//	step       plan effects (core operation, TID = the deposit kiosk's id)
//	Open       hold(txn, amount)                    core OpHold, Txn = txn
//	TopUp      hold(txn', amount)                   core OpHold: core holds cannot grow,
//	                                                so a top-up is another hold (a leg)
//	Capture    capture(leg, part) per leg, oldest   core OpCapture, Orig = leg txn,
//	           first, summing to the order          partial captures allowed
//	Discharge  captures of the last charges, then   core OpCapture ..., then
//	           release(leg) for every remainder     core OpRelease, Orig = leg txn
//	Expire     release(leg) for every remainder     core OpRelease (the sweep, on a tick)
//
// Every step first plans (Open, TopUp, Capture, Discharge, Expire fill a
// Plan and change nothing), the shard step runs the plan's effects in the
// core — all of them or none, in the same atomic step — and then Commit
// applies the plan to the Deposit. Capture is idempotent by service order
// id; a non-emergency order is refused with DEPOSIT_PAUSED while the
// remaining deposit is below PauseBelowFen; a plan leaving the deposit
// below LowBalanceFen carries LowBalance, and the plan that crosses the
// threshold carries Notice, which the gateway publishes on the kiosk topic.
// A deposit without activity for DepositExpiryHours is released by Expire.
package hospital
