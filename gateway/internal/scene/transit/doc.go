// Package transit owns the bus fare rules of the transit scene: routes and
// their fare tables, the charge for each tap, transfers, daily and weekly
// capping, concessions, incomplete and cancelled journeys, offline uploads
// with debt, the versioned deny list, and the first-ride risk budget per
// route (issue 3; facts and defaults from DOMAIN.md, "Transit (bus)").
//
// # Model
//
// The package is a pure rule engine, shaped to run inside the core's shard
// step (one writer per account shard): no I/O, no goroutines, no locks, no
// clock — time is an argument. An Engine is a validated Config (versioned,
// strict JSON, pushed to readers as a retained message). Per-card state is
// a Card owned by the caller and mutated only here; DenyList and RiskBook
// are the scene-wide state. All three have a deterministic binary form
// (AppendBinary / Decode*) for shard snapshots. Every event returns a
// Decision value — int64 fen amounts, a terminals.Code when declined, a
// Reason and Flags — that the core turns into ledger effects in the same
// atomic step as its own checks, and journals.
//
// # Charging model: holds
//
// A flat route charges its fare at tap-in (a debit) and needs no tap-out.
// A distance (zone) route places a hold of the route's maximum fare at
// tap-in; the tap-out computes the actual zone fare and captures it, and
// releases the rest. Holds rather than a debit plus a credit because a
// hold already is the provisional charge the core knows how to keep
// honest: it counts against the available balance at once, it is never
// "refunded" (so the merchant never sees a charge and a credit for one
// ride, and settlement sees one capture), and a journey that is never
// closed is captured in full, which is exactly "the maximum fare stands".
// The decision lists PrevCapture, Capture, Release, Charge, Hold and Debt
// in the order the core applies them.
//
// # Rules (DOMAIN.md, Transit)
//
//   - Fare: flat fare, or the zone-pair fare of the boarding and alighting
//     stops (a pair given once applies in both directions), never above the
//     route's maximum fare.
//   - Concession by card profile (adult, senior, student, disabled): the
//     percent of the fare payable (defaults 100, 0, 50, 0).
//   - Transfer: a boarding on another route within the transfer window
//     (default 90 min) of the last paid boarding pays TransferPayable percent
//     (default 0: free). The window starts at the paid boarding, so chained
//     transfers cannot stretch it; a return on the same route is not a
//     transfer. A cancelled journey gives the window back to the boarding
//     before it.
//   - Percent rounding: floor(fare × percent / 100) in fen, the fraction in
//     the rider's favour; concession first, then transfer.
//   - Cap: what a card pays per transit day (default start 04:30
//     Asia/Shanghai) never exceeds DailyCap, nor WeeklyCap per transit week
//     (Monday's transit day on). Best fare: each charge, hold and capture is
//     reduced to what the caps leave, so no refund is ever needed. A journey
//     counts on the transit day of its boarding.
//   - Incomplete journey: no tap-out within the route's maximum journey
//     time, a tap-out on another route, or a new tap-in: the whole hold is
//     captured. The card's next tap does this lazily; the gateway's sweep
//     calls Expire(now) for journeys found due by ExpiresAt, so a card
//     that never comes back does not keep its money held.
//   - Cancelled journey: tap-out at the boarding stop within the grace
//     period (default 2 min) releases the hold; nothing is charged.
//   - Online: a card with debt is declined (CodeInstrumentBlocked, it is on
//     the deny list); a charge or hold above the available balance is
//     declined (CodeInsufficientFunds). A declined tap changes no state.
//   - Offline: readers approve within floor limits (amount per tap, taps
//     since the card's last online tap) against their deny list and upload
//     later. ProcessUpload sorts a card's batch by time and applies each tap
//     once (key: reader id + reader seq; the card remembers its last SeenMax
//     keys, and taps older than UploadMaxAge are refused CodeReplay) through
//     the same rules; what the balance cannot cover becomes debt
//     (FlagDeny when debt becomes positive). Taps beyond the floor limits
//     are still charged (the ride happened) and flagged FlagOverFloor for
//     the operator. TopUp pays debt first and sets FlagUndeny at zero.
//   - Deny list: versioned; Add/Remove make a new version; Delta(from) gives
//     the net changes since from, or the full list when from is older than
//     the DenyHistoryMax changes kept; readers Report the version applied
//     and Lagging(min) lists those behind.
//   - First-ride risk: an uploaded tap by a card the bank does not know is a
//     loss (flat fare, or maximum fare at a distance tap-in) booked to the
//     route's budget for the transit day; at the budget, FlagStopFirstRides
//     tells the route's readers to refuse first rides until the next
//     transit day (FirstRidesAllowed gives the value to push).
//
// # Known limits
//
// An uploaded tap from a transit day the card's counters have already left
// (a batch arriving after later taps) pays its fare at once and does not
// take part in transfers or journeys. Its cap: the card remembers what it
// paid on each of the PastDaysMax (8) transit days before its current one
// (Card.Past), so a late tap of such a day is capped together with that
// day's online and earlier late taps, and by the weekly cap when that
// week's spend is known (the card's current week, or an earlier week whose
// days are all remembered). A tap of an older day is charged
// alone, bounded by one daily cap, and not remembered (the default upload
// age limit, 7 days, refuses such taps before they get there).
//
// Incomplete journeys are closed lazily by the card's next tap, and
// actively by the gateway's sweep: Expire with the journey's boarding
// reader and merchant (Journey.Reader, Journey.Merchant, filled by the
// core) so that the maximum fare is paid to the bus company that carried
// the rider.
//
// Result codes used: 00, 13, 51, 62, A2 (unknown route or stop, bad tap),
// A4 (upload older than the age limit). No new codes were needed.
package transit
