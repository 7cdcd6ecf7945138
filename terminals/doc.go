// Package terminals owns the wire contract between payment terminals and the
// gateway: protocol v1 topics, message bodies, the MAC frame, per-terminal key
// derivation, the catalogue of result codes, the consumer payment code
// format (paycode.go) that stall terminals scan and wallets issue, and the
// bus readers' deny-list messages (deny.go).
//
// Both the gateway and the emulator import it, and a terminal vendor can too;
// it depends on nothing but the standard library. docs/protocol.md is the
// normative description; the tests keep this package and that document in step.
package terminals
