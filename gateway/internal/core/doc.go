// Package core owns the authorization core of the gateway: the ledger of
// accounts (balances, holds, floors, e-CNY class limits and their day and
// year counters), the decision for every ledger request, the journal record
// of each decision, replay of those records, and shard snapshots.
//
// # Model
//
// The core is a pure state machine in the manner of etcd's raft: it does no
// I/O, takes no locks, starts no goroutines and never reads the clock. The
// ledger is split into shards by ShardOf(account key, n); the gateway runs
// one goroutine per Shard (the single writer) and feeds it Inputs:
//
//	var out core.Output                 // reused: its Record buffer too
//	shard.Step(clock.Now(), &in, &out)  // decide + apply in memory + encode
//	if len(out.Record) > 0 {
//		journal.Append(out.Record)      // durable (group commit) ...
//	}
//	reply(out.Code, out.Available, out.Seq) // ... before this
//
// Step decides, applies the effect to the in-memory shard and writes the
// record that the caller must make durable before it replies. Because the
// effect is applied before the record is durable, a journal write failure
// leaves the shard ahead of the journal: the gateway must then stop serving
// the shard and rebuild it from snapshot + journal (it must not reply).
//
// # Records and replay
//
// A record holds the inputs of a decision, its code, the shard sequence
// number (1, 2, 3, ... without gaps; the gateway uses it as the
// authorization reference), the gateway time, and the state of the account
// after the effect. Step itself applies a decision by building its record
// and running the same effect code that Apply runs, so replay cannot drift
// from live processing. Apply performs the recorded effect with the
// recorded code — policy (limits) is not decided again, so changing the
// limit table never makes an old journal unreplayable — and then compares
// the account's balance, held, floor, class and blocked flag with the
// record; any difference is corruption (ErrCorrupt), never silently fixed.
//
// Which outcomes are journaled:
//
//   - every approved effect (open, top-up, block, purchase, reversal, hold,
//     capture, release, set profile, journey expiry);
//   - declines of terminal ops (purchase, reversal, hold, capture,
//     release), including unknown account, so that the stored reply can be
//     rebuilt after a restart; these records change nothing but the
//     sequence;
//   - not journaled: balance inquiries; CodeOriginalNotFound for reversal,
//     capture and release; a second reversal of a reversed original
//     (CodeApproved, no effect); a repeated top-up ref (the first result,
//     no effect); declines of operator ops (open, top-up, block), which the
//     operator sees synchronously; a journey expiry with nothing due; and
//     refusals, which are not decisions:
//     CodeMalformed (bad shape: account kind, class, floor, empty TID/Txn,
//     top-up without Ref, strings over MaxFieldLen), CodeUnsupported (unknown
//     op), CodeIDConflict (account already open, terminal txn id or top-up
//     ref reused with other content), CodeBusy (HoldsMax live holds).
//
// # Rules
//
// available = balance - held - floor; a purchase or hold needs
// Amount <= available. Precedence for purchase and hold: a reused (TID, Txn)
// (refusal, CodeIDConflict), then the decisions invalid amount, unknown
// account, blocked, single limit, daily limit, annual limit, funds, and
// last a full hold table (CodeBusy, holds only).
// Limits apply to "ecny" accounts by class; day counters reset at the
// Asia/Shanghai midnight of the step's time and year counters at the
// calendar year. Credits that would lift an e-CNY wallet over its class
// balance cap are declined with CodeLimitBalance (a reversal is exempt: it
// restores money that was already the holder's). Blocked accounts refuse
// purchases, holds and balance inquiries (the inquiry still reports the
// available balance); top-ups (paying off debt), reversals, captures and
// releases of existing holds proceed.
//
// Holds are two-phase (pending, post, void): a hold reserves its amount
// and is checked against the single, daily and annual limits as if spent
// now, but it counts toward the daily and annual counters only when, and on
// the day that, it is captured; a capture is checked against the daily and
// annual limits again and can be declined by them. Captures may be partial
// and repeated; release voids the remainder once; a fully captured or
// released hold is gone (CodeOriginalNotFound).
//
// A reversal finds its original in a FIFO table of the last ReversibleMax
// approved purchases, must name the same account and carry the same amount
// (else CodeInvalidAmount), credits it back exactly once, and takes it off
// the day/year counters if they are still those of the purchase's day/year.
//
// Money is int64 fen; every sum is overflow-checked and an overflow is
// CodeInvalidAmount. Invariants (held >= 0, balance - held >= floor,
// balance - floor representable, counters >= 0) are asserted after every
// effect; a violation in Step is a programmer error and panics, in Apply or
// Restore it is an ErrCorrupt error.
//
// # Record format (version 1, little endian)
//
//	off  size  field
//	  0     1  version (1)
//	  1     1  op (Op: 1 open, 2 top-up, 3 block, 4 purchase, 5 reversal, 7 hold, 8 capture, 9 release)
//	           (and the later ops: 10..15 below, 16 set profile, 17 journey expire)
//	  2     2  code, two ASCII characters (terminals.Code; approved or decline class only)
//	  4     4  shard id
//	  8     8  seq
//	 16     8  time, UTC Unix nanoseconds
//	 24     8  amount, fen (release: the remainder released)
//	 32     8  txn (terminal txn id)
//	 40     8  orig (original txn id: reversal, capture, release)
//	 48     8  hash (terminals.Request.ContentHash, for audit)
//	 56     8  floor of the account after apply
//	 64     8  balance of the account after apply (0 if no account)
//	 72     8  held of the account after apply (0 if no account)
//	 80     1  class of the account (e-CNY 1..4, else 0)
//	 81     1  flags: bit 0 blocked (account after apply); bit 1 unsynced (approved OpECNYOffline only); other bits 0
//	 82     1  length of account key   (<= 255)
//	 83     1  length of tid            (<= 255)
//	 84     1  length of merchant       (<= 255)
//	 85     1  length of ref            (<= 255)
//	 86     *  account key, tid, merchant, ref (bytes, in this order)
//	  n-4   4  CRC-32C (Castagnoli) of bytes 0..n-4
//
// Tap records (OpTapIn 10, OpTapOut 11) are version 2: the same layout,
// then before the CRC the tap extension:
//
//	route len u8, route, stop len u8, stop (each <= transit.IDLenMax)
//	fare, prev capture, capture, release, charge, hold: i64 fen each
//	reason u8 (transit.Reason), flags u16 (transit.Flags)
//	card state len u16, card state (transit.Card.AppendState; empty for declines)
//
// and amount is charge + hold + capture (what the reply reports). Other
// ops stay version 1, so journals from before taps replay unchanged.
//
// Market records (OpQRPay 12, OpRefund 13) are version 3: the version 1
// layout, then before the CRC the market extension:
//
//	class u8 (PBoC QR class 1..4 = A..D; 0 in declines)
//	flags u8 (bit 0: static merchant code, class D, no consumer code)
//	tag [16] (the consumer code's tag, its identity in the used set)
//	expiry i64 (Unix seconds the code stops verifying)
//	paid-at i64 (UTC Unix ns of the payment; a refund: the original's)
//	stall, operator i64 fen (the legs; a refund: the legs taken back)
//	operator merchant len u8 (<= market.MaxIDLen), operator merchant
//	QR day i32, QR spent i64 (the account's counter of the class after)
//
// Declines carry a zero extension. Ref is empty; Merchant is the stall.
//
// A version 1 record is 90 to 1110 bytes and self-checking, so DecodeRecord reports
// corruption whatever framing the journal adds. DecodeRecord accepts only
// what AppendBinary writes, so decode followed by encode is the identity.
//
// # Transit taps
//
// A card's transit state (transit.Card: caps, transfer anchor, open
// journey) lives on its account in the shard, so the fare decision and its
// ledger effect are one Step. Step runs transit.Engine.Tap (Config.Transit,
// swapped by Shard.SetTransit) on a copy of the card with the account's
// available balance; a tap-in is also declined when the account is blocked
// or by the e-CNY limits (on everything it debits or holds). The decision
// maps to the ledger as: Charge is a debit, Hold reserves the maximum fare
// of a distance journey (in held, keyed by the card, not by TID/Txn, since
// the tap-out may come from another reader), Capture/PrevCapture debit
// from that hold and Release frees the rest. Apply takes the amounts and
// the card state from the record, checks that they fit the card's journey
// before and after, and never consults the fare policy. Not journaled: a
// tap naming an unknown route or stop (CodeMalformed, a refusal).
//
// # Incomplete journeys closed by the sweep
//
// OpJourneyExpire (17, a version 2 record) closes a card's journey that is
// past its route's maximum journey time without waiting for the card's
// next tap (sweep.go): the gateway's sweep asks DueJourneys(now) for due
// cards, a bounded number per pass, and steps the op for each. The record
// captures the whole hold (Tap.Capture, Reason incomplete; a debt-backed
// part stays debt), carries the card state after, and names the boarding
// reader and its merchant in TID and Merchant (kept in the journey since
// card state version 2) so that settlement pays the bus company the card
// boarded with; Txn is the record's own Seq (no terminal asked), Orig and
// Hash are 0. Not journaled: an unknown account, a card with no journey
// or one not yet due (unless ExpireBeforeTap steps it for a tap that ends
// the journey, below). Apply runs the tap effect and checks that a
// journey was open, is closed after, and that nothing but the capture
// moves. The effect is the lazy path's (capture in full, counted on the
// boarding day), which then finds nothing left.
//
// A card's next online tap can end its journey as incomplete: one past
// its maximum journey time the sweep has not reached yet, or one still
// within it that the tap ends (a new tap-in, a tap-out on another distance
// route; the fare rules charge the maximum fare then too). The fare rules
// would close it inside the tap's record (a tap-in's PrevCapture, a
// tap-out's incomplete Capture), which names the new tap's reader and
// merchant, so settlement would pay the old journey's maximum fare to the
// bus company of the new tap. The caller therefore steps ExpireBeforeTap
// before every online tap: it steps the same OpJourneyExpire record the
// sweep would (journaled as its own entry, ahead of the tap's), for a
// due journey whatever the tap's outcome, and for one not yet due only
// when a dry run of the tap (decide without effect) approves it and
// closes the journey; the tap, stepped after, is then approved with the
// same amounts and closes nothing. So one terminal request can give two
// records, each with its own Seq. Both depend only on the card's state,
// the tap and the time, and replay applies them in journal order like any
// others (Apply does not ask whether an expiry was due). The lazy path
// stays the safety net of a caller that does not, and closes journeys in
// offline uploads, whose taps are applied in time order inside one record
// at their own times, between the batch's other taps.
//
// # Concession profiles
//
// OpSetProfile (16, a version 1 record) is the operator's change of a
// county card's concession profile (transit.Profile: adult, senior,
// student, disabled), which the fare rules price every tap by. Orig
// carries the new profile number and Amount is 0: no money moves. Apply
// writes the profile into the card (creating the card state of a card that
// never tapped); snapshots carry it in the card state. Refused
// (CodeMalformed, not journaled): another kind of account, a profile out
// of range; the profile the card already has is approved without a record.
// Journals from before profiles replay unchanged (every card adult).
//
// # Offline uploads and debt
//
// OpTapUpload (14, a version 2 record) is one card's part of a bus
// reader's offline upload: Input.Taps (at most UploadTapsMax) go through
// transit.Engine.ProcessUpload in time order on a copy of the card; a tap
// already applied (reader id + reader seq, the card's dedupe ring) is a
// duplicate, a fare the available balance cannot cover becomes debt on
// the card. The record's tap amounts are the sums over the part, Ref holds
// one outcome byte per tap (UploadCharged, UploadDebt, UploadNothing,
// UploadDuplicate, UploadTooOld, UploadRefused), and Card is the card
// after the upload with its dedupe ring (transit.Card.AppendBinary, at
// most uploadCardMax bytes), so duplicates are recognised after replay.
// An unknown account is a journaled decline (the gateway books it to the
// route's first-ride budget). Output.Flags carries transit.FlagDeny when
// the upload put debt on the card. A top-up pays debt first: Orig of a
// top-up record is the fen of debt it paid (to the bus company, not the
// balance); Output.DebtPaid reports it and Output.Flags FlagUndeny when
// the debt reached 0. Replay recomputes the part from the card's debt and
// checks it against Orig.
//
// # e-CNY double-offline payments
//
// OpECNYOffline (15, version 1 record) is a wallet's offline payment
// uploaded later by the payee's terminal: a debit of the wallet checked in
// one step against the offline caps (Config.Offline: per payment, default
// 500 CNY, declined CodeLimitSingle; count since the wallet's last online
// operation, default 10, declined CodeOfflineCountExceeded), the class
// limits and funds. Only e-CNY wallets pay double offline (another kind is
// refused CodeMalformed). An approved record has the Unsynced flag and
// carries the wallet's offline count after it in Orig; an approved online
// operation of the account (top-up, purchase, hold, QR payment, tap) resets
// the count. Counts are in snapshots since version 4.
//
// # Market payments
//
// A stall terminal's scan of a consumer payment code is OpQRPay on the
// shard of the account the code is bound to (the gateway reads the claimed
// account only to route; Step verifies the MAC under Config.PayCodeKeys).
// One Step verifies the code (form, MAC, issue time, lifetime, single use),
// checks the PBoC QR daily limit of its class (Config.Market), then the
// core rules (blocked, e-CNY limits, funds), and applies: code marked used
// until it expires, QR counter, debit, and the payment with its stall and
// operator legs (market.SplitPayment) in the shard's refund ledger, keyed
// "TID/Txn". Precedence: refusals (merchant or ids too long, txn id in
// use, malformed code, full used-code set: not journaled), then code
// invalid/expired/reused (a code bound to another account is invalid),
// amount, unknown account, blocked, QR class limit, e-CNY limits, funds.
// A declined payment does not burn the code. OpRefund names the payment by
// (TID, Orig) and has its own id (TID, Txn); it is refused as not found
// (not journaled) for another account or an unknown or evicted payment,
// declined REFUND_EXCEEDS past what remains, credits the account, takes
// the legs back in proportion (market.Ledger) and takes the amount off the
// QR and e-CNY counters when it is still the payment's day. A QR payment
// is not in the reversal table: a terminal that lost the reply repeats the
// request (idempotent) and refunds. Apply takes class, legs and code from
// the record (the fee ratio and limits are policy), re-derives the refund
// legs from the ledger, marks the code (a second use is corruption), and
// compares the QR counter after with the record. Replay purges expired
// codes at every QR record's time, as Step does, so the used set matches.
//
// # Snapshots
//
// Snapshot writes a deterministic image (sorted accounts, FIFO tables in
// eviction order, holds sorted, CRC-32C trailer; format in snapshot.go)
// tagged with the shard id and the last sequence number. Restore loads it
// into an empty shard and checks every invariant, including that each
// account's held total equals the sum of its live holds. Version 3 adds
// the market state (QR counters by account, used codes, refund ledger,
// each in the market package's own versioned encoding); versions 1 and 2
// still load, with empty market state. Replay then
// continues with record Seq()+1. The bounds in Config (ReversibleMax,
// RefsMax, HoldsMax) must be the same on replay as when the journal was
// written, because FIFO eviction is part of the state.
package core
