// Package market owns the market (stall) scene rules: consumer-presented
// dynamic payment codes, merchant-presented stall codes and the PBoC QR
// class that applies to a payment, the PBoC per-customer daily limits by
// class, the market management fee split, and the refund ledger.
//
// # Model
//
// The package is a pure rule engine in the manner of the authorization
// core (gateway/internal/core): no I/O, goroutines, locks or clock. Time is
// an argument; days are Asia/Shanghai calendar days. State lives in plain
// values that the caller (the shard writer) owns and mutates only through
// this package: Customer (per account), UsedCodes and Ledger (per shard).
// Each has AppendBinary and DecodeBinary (version byte, bounds checks,
// ErrCorrupt errors, never a panic) so that it rides in shard snapshots.
// Declines are *Decline values carrying a terminals.Code and a reason;
// Config is versioned JSON, decoded strictly, compiled into Rules.
//
// A payment runs every check before any effect, in the shard step that
// debits (DESIGN.md promise 3):
//
//	pc, err := verifier.Verify(rules, used, code, now)  // consumer code
//	class := pc.Class                                   // or rules.ClassFor(stallCode, scan, now)
//	err = rules.Check(&customer, class, amount, now)    // PBoC daily limit
//	split, _ := rules.SplitPayment(payID, stall.Merchant, amount)
//	... core debit (balance, holds, e-CNY limits); if approved:
//	used.Add(rules, &pc, now.Unix()); rules.Apply(&customer, class, amount, now)
//	ledger.Record(Payment{...}); journal the split legs with the debit
//
// # Rules and their sources (DOMAIN.md, issue 3)
//
// Consumer payment codes are dynamic, short-lived and single-use (PBoC).
// The format is documented at CodePrefix: SPC1 + base32 of key id, class,
// issue time, nonce, account key and a 128-bit HMAC-SHA256 tag under the
// wallet issuer's key. Verify refuses a malformed code (MALFORMED), a bad
// MAC or unknown key or a code issued in the future (PAYCODE_INVALID), an
// expired code (PAYCODE_EXPIRED, lifetime default 60 s) and a used code
// (PAYCODE_REUSED). Used codes are kept until they expire in a bounded set.
//
// Merchant-presented codes are tagged static/dynamic and personal/business
// (PBoC notice 259, since 2022-03-01): a stall with clear business activity
// registers only business codes; a static code is class D whatever the
// verification; a screenshot of a dynamic code (scanned after its freshness
// window) counts as static; a static personal code may not collect a remote
// payment.
// Registry keeps the codes' lifecycle (stallreg.go): registration (a
// dynamic code with its amount and an expiry of at most an hour), revocation,
// Authorize before any effect (unknown, revoked STALL_CODE_REVOKED, a used
// dynamic code PAYCODE_REUSED, an expired one PAYCODE_EXPIRED, amount,
// class), and MarkPaid once the payment is approved: a dynamic code pays
// once. The gateway journals every change and replays it.
//
// PBoC barcode payment limits (in force since 2018-04-01), per customer per
// Asia/Shanghai day, across all codes and terminals: A agreed with the
// customer (Customer.AgreedA, else LimitAFen), B 5,000, C 1,000, D 500 CNY.
// Each class has its own counter; a reversal or refund on the day of the
// payment takes its amount off again.
//
// The market operator's management fee is an automatic division of each
// payment: the operator's leg is amount x FeeRatio rounded half-even to the
// fen, the stall's leg the rest, so the legs always sum to the payment.
// Refunds go back to the original instrument, partially or wholly, never
// more than remains, idempotent by refund id; each refund takes back from
// the two legs in proportion (cumulative, rounded half-even), so a full
// refund returns exactly the legs paid.
package market
