// Package device owns one virtual payment terminal as real hardware behaves:
// an MQTT session under the terminal's own client id (persistent session,
// QoS 1, retained "online" status with an "offline" last will, full-jitter
// reconnect), a txn counter that is made durable before any message carrying
// it leaves the device, MAC sealing and reply verification under the
// terminal key, retries of identical bytes on timeout and a reversal for a
// purchase that stays unanswered (other money messages, which the protocol
// does not let a reversal void, are repeated under their own txn id with
// Resend). It builds every scene message (QR payments and refunds,
// inpatient deposits, insured bills, offline uploads, e-CNY offline
// payments, heartbeats reporting configuration versions and the offline
// backlog), never takes a deposit_low notice for a reply, records a stall's
// "paid" notices (a wallet paid one of its stall codes; Paid, counted once
// per txn however often redelivered), and, as a bus
// reader, follows the group's retained deny list signed with the
// config-signing key (deny.go).
//
// It also builds the faults an emulator needs to prove the gateway's
// promises (tampered, duplicate, changed-amount duplicate, old txn id,
// oversize, malformed with a valid MAC). Every outcome goes to an Observer so
// that the fleet can keep the ledger an end-of-run audit is built on.
//
// The package knows the wire contract (scenepay/terminals) and MQTT; it knows
// nothing about the operator API, populations or scenarios (see fleet).
package device
