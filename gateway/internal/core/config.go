package core

import (
	"time"
	_ "time/tzdata" // Asia/Shanghai must load on hosts without a zoneinfo database.

	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/scene/transit"
)

// ClassLimits are the limits of one e-CNY wallet class, in fen. Zero means
// "no limit" so that the table can express class 1's missing annual cap.
type ClassLimits struct {
	Balance int64 // cap on the wallet balance after a credit
	Single  int64 // cap on one payment (purchase, hold)
	Daily   int64 // cap on the sum of debits in one business day
	Annual  int64 // cap on the sum of debits in one calendar year
}

// Config is the policy of a shard. It governs decisions only: Apply never
// consults the limits, so a limit change between a crash and its replay
// cannot make the journal unreplayable. The bounds do matter to replay
// (FIFO eviction decides which originals a reversal can still find), so
// replay must use the same bounds as the run that wrote the journal.
type Config struct {
	// Loc is the zone of business days and years (Asia/Shanghai).
	Loc *time.Location
	// ECNY holds the wallet class limits at index 1..4; index 0 is unused.
	ECNY [5]ClassLimits
	// Offline holds the e-CNY double-offline caps (zero fields: defaults).
	Offline OfflineCaps
	// ReversibleMax bounds the per-shard table of approved purchases that a
	// reversal can still find (entries, FIFO eviction).
	ReversibleMax int
	// RefsMax bounds the per-shard table of operator top-up refs remembered
	// for dedupe (entries, FIFO eviction).
	RefsMax int
	// HoldsMax bounds the per-shard table of live holds (entries). A full
	// table answers CodeBusy instead of evicting: evicting a hold would
	// strand its reserved money.
	HoldsMax int
	// Transit is the bus fare policy (routes, caps, transfers) that tap
	// ops decide with; nil means DefaultTransit. Like the limits it governs
	// decisions only: a tap record carries its amounts and the card state
	// after it, so Apply never consults fares. Operators' config pushes
	// replace it on a live shard with Shard.SetTransit.
	Transit *transit.Engine
	// Market is the market scene policy (PBoC QR class limits, code
	// lifetime, fee ratio, operator merchant, ledger bounds); nil means
	// market.DefaultConfig. Like the limits it governs decisions only: a
	// market record carries its class, legs and counters. Its bounds
	// (UsedCodesMax, PaymentsMax, RefundsPerPaymentMax) size the shard's
	// tables at NewShard; Shard.SetMarket swaps the policy only.
	Market *market.Rules
	// PayCodeKeys are the consumer payment code issuer keys by key id
	// (market.IssuerKey of the master key). Without keys every code is
	// refused PAYCODE_INVALID.
	PayCodeKeys map[uint8][]byte
}

// Default bounds. maxTableEntries keeps slot numbers inside int32.
const (
	DefaultReversibleMax = 1 << 16
	DefaultRefsMax       = 1 << 12
	DefaultHoldsMax      = 1 << 14
	maxTableEntries      = 1 << 24
)

// fenPerCNY converts the DOMAIN.md table (CNY) into fen.
const fenPerCNY = 100

// DefaultConfig returns the Asia/Shanghai business calendar, the e-CNY
// class table of DOMAIN.md in fen, and the default bounds.
func DefaultConfig() *Config {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		// Unreachable with time/tzdata embedded; China has kept UTC+8
		// without daylight saving since 1991, so a fixed zone is exact.
		loc = time.FixedZone("CST", 8*3600)
	}
	return &Config{
		Loc: loc,
		ECNY: [5]ClassLimits{
			1: {Balance: 500_000 * fenPerCNY, Single: 50_000 * fenPerCNY, Daily: 100_000 * fenPerCNY, Annual: 0},
			2: {Balance: 10_000 * fenPerCNY, Single: 5_000 * fenPerCNY, Daily: 10_000 * fenPerCNY, Annual: 300_000 * fenPerCNY},
			3: {Balance: 2_000 * fenPerCNY, Single: 2_000 * fenPerCNY, Daily: 2_000 * fenPerCNY, Annual: 50_000 * fenPerCNY},
			4: {Balance: 1_000 * fenPerCNY, Single: 500 * fenPerCNY, Daily: 1_000 * fenPerCNY, Annual: 10_000 * fenPerCNY},
		},
		ReversibleMax: DefaultReversibleMax,
		RefsMax:       DefaultRefsMax,
		HoldsMax:      DefaultHoldsMax,
		Transit:       DefaultTransit(),
		Market:        DefaultMarket(),
	}
}

// normalized returns a copy of c with zero or out-of-range fields replaced
// by defaults (nil Loc, an all-zero ECNY table, bounds <= 0), so that a
// partly filled Config is usable.
func (c *Config) normalized() Config {
	d := DefaultConfig()
	if c == nil {
		return *d
	}
	n := *c
	if n.Loc == nil {
		n.Loc = d.Loc
	}
	// An all-zero table is a Config that did not set limits, not a wish
	// for unlimited wallets: regulatory limits must never vanish by omission.
	if n.ECNY == ([5]ClassLimits{}) {
		n.ECNY = d.ECNY
	}
	n.ReversibleMax = bound(n.ReversibleMax, DefaultReversibleMax)
	n.RefsMax = bound(n.RefsMax, DefaultRefsMax)
	n.HoldsMax = bound(n.HoldsMax, DefaultHoldsMax)
	if n.Transit == nil {
		n.Transit = DefaultTransit()
	}
	if n.Market == nil {
		n.Market = DefaultMarket()
	}
	return n
}

func bound(v, def int) int {
	if v <= 0 {
		return def
	}
	if v > maxTableEntries {
		return maxTableEntries
	}
	return v
}

// DefaultTransit returns the transit defaults of DOMAIN.md (transit day
// from 04:30, 90-minute free transfers, daily cap 10 CNY) with two demo
// routes, so a fresh gateway answers taps before an operator pushes its
// own fare table: "B1", flat 2 CNY; and "D1", a distance route over stops
// S1, S2 (zone 1), S3 (zone 2) and S4 (zone 3), 2 CNY within a zone,
// 3 CNY for neighbouring zones, 6 CNY end to end (also the hold at
// tap-in and the fare of an incomplete journey), 90 minutes at most.
func DefaultTransit() *transit.Engine {
	c := transit.DefaultConfig()
	c.Routes = []transit.Route{
		{ID: "B1", Kind: transit.KindFlat, Fare: 200},
		{ID: "D1", Kind: transit.KindDistance, MaxFare: 600, MaxJourneySeconds: 5400,
			Stops: []transit.Stop{{ID: "S1", Zone: 1}, {ID: "S2", Zone: 1}, {ID: "S3", Zone: 2}, {ID: "S4", Zone: 3}},
			ZoneFares: []transit.ZoneFare{{From: 1, To: 1, Fare: 200}, {From: 1, To: 2, Fare: 300}, {From: 1, To: 3, Fare: 600},
				{From: 2, To: 2, Fare: 200}, {From: 2, To: 3, Fare: 300}, {From: 3, To: 3, Fare: 200}}},
	}
	e, err := transit.New(c)
	if err != nil {
		panic("core: default transit config: " + err.Error()) // a constant config: a programmer error
	}
	return e
}

// DefaultMarket returns the market defaults of DOMAIN.md (PBoC QR class
// limits B 5,000, C 1,000, D 500 CNY a day; 60 s consumer codes; 1%
// management fee to "market-operator").
func DefaultMarket() *market.Rules {
	r, err := market.NewRules(market.DefaultConfig())
	if err != nil {
		panic("core: default market config: " + err.Error()) // a constant config: a programmer error
	}
	return r
}
