package transit

// Configuration: a versioned, strictly decoded JSON document that operators
// change without a restart and that the gateway pushes to readers as a
// retained MQTT message. Config is the document; Engine is its validated,
// indexed form that the fare functions read (built once per version, so the
// per-tap path does no parsing and no allocation).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"scenepay/internal/strictjson"

	"github.com/shopspring/decimal"
)

// Named bounds of the configuration.
const (
	RoutesMax          = 1024      // routes in one config
	StopsPerRouteMax   = 256       // stops on one route
	ZonesMax           = 32        // zones on one distance route (zone numbers 1..ZonesMax)
	IDLenMax           = 32        // bytes of a route or stop id
	ConfigBytesMax     = 1 << 20   // bytes of one JSON config document
	FareMax            = 1_000_000 // fen: one fare (10,000 CNY) — far above any bus fare, catches typos
	CapMax             = 100_000_000
	JourneyTimeMax     = 24 * 3600 // seconds: longest configurable journey
	TransferWindowMax  = 24 * 3600 // seconds
	CancelGraceMax     = 3600      // seconds
	OfflineTapsMax     = 1000      // taps a reader may approve offline per card
	UploadAgeMax       = 90 * 86400
	percentScale       = 1_000_000 // Percent is held as millionths of the fare: 4 decimal places of a percent
	percentDecimalsMax = 4
)

// Profile is a card's concession profile.
type Profile uint8

// Profiles. Adult pays full fare unless configured otherwise.
const (
	ProfileAdult Profile = iota
	ProfileSenior
	ProfileStudent
	ProfileDisabled
	profileCount
)

var profileNames = [profileCount]string{"adult", "senior", "student", "disabled"}

func (p Profile) String() string {
	if p < profileCount {
		return profileNames[p]
	}
	return "profile(" + strconv.Itoa(int(p)) + ")"
}

// ParseProfile maps a profile name to its Profile.
func ParseProfile(s string) (Profile, bool) {
	for i, n := range profileNames {
		if n == s {
			return Profile(i), true
		}
	}
	return 0, false
}

// Percent is the share of a fare that a rider pays, 0 to 100 with at most
// four decimal places, written in JSON as a decimal string ("62.5").
//
// Rounding rule: payable = floor(fare × percent / 100) in whole fen, i.e.
// any fraction of a fen is in the rider's favour. The product is computed
// exactly in 128-bit integers (equal to shopspring/decimal's Floor of the
// same product, which a test checks), so applying a percent never
// allocates and never overflows.
type Percent struct {
	d     decimal.Decimal
	micro uint64 // percent × 10^4, i.e. millionths of the fare
}

// PercentOf builds a Percent from a decimal string.
func PercentOf(s string) (Percent, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Percent{}, &ConfigError{Field: "percent", Msg: "not a decimal: " + strconv.Quote(s)}
	}
	return percentFromDecimal(d)
}

func percentFromDecimal(d decimal.Decimal) (Percent, error) {
	// Bound the exponent and coefficient before any arithmetic: "1e-2000000000"
	// would otherwise make the comparisons below build enormous integers.
	if e := d.Exponent(); e < -18 || e > 3 || d.Coefficient().BitLen() > 64 {
		return Percent{}, &ConfigError{Field: "percent", Msg: "must be 0..100 with at most 4 decimal places"}
	}
	if d.Sign() < 0 || d.GreaterThan(decimal.NewFromInt(100)) {
		return Percent{}, &ConfigError{Field: "percent", Msg: "must be 0..100: " + d.String()}
	}
	scaled := d.Shift(percentDecimalsMax)
	if !scaled.Equal(scaled.Truncate(0)) {
		return Percent{}, &ConfigError{Field: "percent", Msg: "more than 4 decimal places: " + d.String()}
	}
	return Percent{d: d, micro: uint64(scaled.IntPart())}, nil
}

func mustPercent(s string) Percent {
	p, err := PercentOf(s)
	if err != nil {
		panic(err) // programmer error: literal in DefaultConfig
	}
	return p
}

// Full is 100 percent.
func (p Percent) Full() bool { return p.micro == percentScale }

// Decimal returns the percent as a decimal.
func (p Percent) Decimal() decimal.Decimal { return p.d }

// Apply returns floor(fare × p / 100) for fare >= 0.
func (p Percent) Apply(fare int64) int64 {
	if fare <= 0 || p.micro == 0 {
		return 0
	}
	if p.micro == percentScale {
		return fare
	}
	hi, lo := bits.Mul64(uint64(fare), p.micro)
	q, _ := bits.Div64(hi, lo, percentScale) // hi < percentScale because micro <= percentScale
	return int64(q)
}

// MarshalJSON writes the percent as a decimal string.
func (p Percent) MarshalJSON() ([]byte, error) { return json.Marshal(p.d.String()) }

// UnmarshalJSON reads a decimal string (or a bare JSON number).
func (p *Percent) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if len(s) >= 2 && s[0] == '"' {
		var err error
		if s, err = strconv.Unquote(s); err != nil {
			return &ConfigError{Field: "percent", Msg: "bad string"}
		}
	}
	q, err := PercentOf(s)
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ClockTime is a time of day in Asia/Shanghai, "HH:MM" in JSON.
type ClockTime int32 // minutes after midnight

// MarshalJSON writes "HH:MM".
func (c ClockTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(fmt.Sprintf("%02d:%02d", c/60, c%60))
}

// UnmarshalJSON reads "HH:MM".
func (c *ClockTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &ConfigError{Field: "day_start", Msg: "want \"HH:MM\""}
	}
	v, err := ParseClock(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ParseClock parses "HH:MM" (00:00 to 23:59).
func ParseClock(s string) (ClockTime, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, &ConfigError{Field: "day_start", Msg: "want HH:MM: " + strconv.Quote(s)}
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, &ConfigError{Field: "day_start", Msg: "want HH:MM: " + strconv.Quote(s)}
	}
	return ClockTime(hh*60 + mm), nil
}

// Kind is the fare model of a route.
type Kind string

// Route kinds.
const (
	KindFlat     Kind = "flat"     // one fare charged at tap-in; no tap-out
	KindDistance Kind = "distance" // tap-in holds MaxFare, tap-out captures the zone fare
)

// Stop is one stop of a distance route and its zone.
type Stop struct {
	ID   string `json:"id"`
	Zone int    `json:"zone"` // 1..ZonesMax
}

// ZoneFare is the fare between two zones (either direction).
type ZoneFare struct {
	From int   `json:"from"`
	To   int   `json:"to"`
	Fare int64 `json:"fare_fen"`
}

// Route is one bus route.
type Route struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// Fare is the flat fare (flat routes only).
	Fare int64 `json:"fare_fen,omitempty"`
	// Stops, ZoneFares, MaxFare and MaxJourneySeconds are for distance
	// routes: every zone pair used by the stops must have a fare, and no
	// fare may exceed MaxFare (the amount held at tap-in and charged for
	// an incomplete journey).
	Stops             []Stop     `json:"stops,omitempty"`
	ZoneFares         []ZoneFare `json:"zone_fares,omitempty"`
	MaxFare           int64      `json:"max_fare_fen,omitempty"`
	MaxJourneySeconds int        `json:"max_journey_s,omitempty"`
	// FirstRideBudget overrides Config.FirstRideBudget for this route
	// (fen per transit day); 0 means "use the default", -1 means "no loss
	// accepted" (first rides on unknown cards are never allowed).
	FirstRideBudget int64 `json:"first_ride_budget_fen,omitempty"`
}

// Offline holds the floor limits readers apply when they approve offline.
type Offline struct {
	AmountMax int64 `json:"amount_max_fen"` // largest fare a reader approves offline
	TapsMax   int   `json:"taps_max"`       // taps per card since its last online check
}

// Config is the transit fare configuration (JSON, strict).
type Config struct {
	Version uint32 `json:"version"`
	// DayStart is when the transit day begins (Asia/Shanghai).
	DayStart ClockTime `json:"day_start"`
	// DailyCap and WeeklyCap bound what a card pays per transit day and
	// per transit week (Monday's transit day start to the next); 0 = none.
	DailyCap  int64 `json:"daily_cap_fen"`
	WeeklyCap int64 `json:"weekly_cap_fen"`
	// TransferWindowSeconds after a paid boarding, a boarding on another
	// route pays TransferPayable of its fare.
	TransferWindowSeconds int     `json:"transfer_window_s"`
	TransferPayable       Percent `json:"transfer_payable_pct"`
	// CancelGraceSeconds: a tap-out at the boarding stop within this time
	// cancels the journey (nothing charged).
	CancelGraceSeconds int `json:"cancel_grace_s"`
	// Concessions maps a profile name to the percent of the fare payable;
	// a profile not listed pays 100.
	Concessions map[string]Percent `json:"concessions"`
	Offline     Offline            `json:"offline"`
	// UploadMaxAgeSeconds: an uploaded tap older than this (against the
	// upload time) is refused, because the duplicate filter only
	// remembers the last SeenMax taps of a card.
	UploadMaxAgeSeconds int `json:"upload_max_age_s"`
	// FirstRideBudget is the loss (fen per route per transit day) the bank
	// accepts from offline first rides that cannot be charged; 0 = no loss
	// accepted (readers never let an unknown card ride).
	FirstRideBudget int64   `json:"first_ride_budget_fen"`
	Routes          []Route `json:"routes"`
	// DebtPayee is the merchant id of the bus company, payee of transit
	// debt that a card's top-up pays (settlement's debt_recovery rows);
	// empty means DefaultDebtPayee.
	DebtPayee string `json:"debt_payee_merchant,omitempty"`
}

// DefaultDebtPayee is the debt payee when the config names none: the
// merchant id the transit operator (bus company) is expected to have.
const DefaultDebtPayee = "transit-operator"

// DebtPayeeMerchant is the merchant that recovered transit debt is paid to.
func (c *Config) DebtPayeeMerchant() string {
	if c.DebtPayee == "" {
		return DefaultDebtPayee
	}
	return c.DebtPayee
}

// DefaultConfig returns the DOMAIN.md defaults: day start 04:30, 90-minute
// free transfers, 2-minute cancel grace, daily cap 10 CNY, no weekly cap,
// seniors and disabled riders free, students half fare, offline floor of
// 5 CNY per tap and 10 taps, and no routes (operators add them).
func DefaultConfig() Config {
	return Config{
		Version:               1,
		DayStart:              4*60 + 30,
		DailyCap:              1000,
		WeeklyCap:             0,
		TransferWindowSeconds: 90 * 60,
		TransferPayable:       mustPercent("0"),
		CancelGraceSeconds:    120,
		Concessions: map[string]Percent{
			"adult":    mustPercent("100"),
			"senior":   mustPercent("0"),
			"student":  mustPercent("50"),
			"disabled": mustPercent("0"),
		},
		Offline:             Offline{AmountMax: 500, TapsMax: 10},
		UploadMaxAgeSeconds: 7 * 86400,
		FirstRideBudget:     5000,
	}
}

// ConfigError is a configuration problem (decode or validation).
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "transit config: " + e.Field + ": " + e.Msg }

func cerr(field, format string, a ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks every field and bound.
func (c *Config) Validate() error {
	if len(c.DebtPayee) > debtPayeeLenMax {
		return cerr("debt_payee_merchant", "longer than %d bytes", debtPayeeLenMax)
	}
	for i := 0; i < len(c.DebtPayee); i++ {
		if c.DebtPayee[i] < 0x21 || c.DebtPayee[i] > 0x7e {
			return cerr("debt_payee_merchant", "only printable ASCII without spaces allowed")
		}
	}
	_, err := compile(c)
	return err
}

// debtPayeeLenMax is settlement's bound on a merchant id.
const debtPayeeLenMax = 64

// DecodeConfig decodes a JSON config strictly (unknown fields, trailing
// data and oversize documents are errors) and validates it.
func DecodeConfig(b []byte) (Config, error) {
	if len(b) > ConfigBytesMax {
		return Config{}, cerr("document", "larger than %d bytes", ConfigBytesMax)
	}
	var c Config
	if err := strictjson.Decode(b, &c); err != nil {
		if _, ok := err.(*ConfigError); ok {
			return Config{}, err
		}
		return Config{}, cerr("document", "%v", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Encode writes the config as JSON: the body of the retained message
// pushed to readers.
func (c Config) Encode() ([]byte, error) { return json.Marshal(c) }

// route is the indexed form of a Route.
type route struct {
	id       string
	flat     bool
	fare     int64 // flat fare
	maxFare  int64
	maxDur   time.Duration
	stops    map[string]int // stop id -> zone
	zoneFare [ZonesMax + 1][ZonesMax + 1]int64
	budget   int64 // first-ride loss budget per transit day; 0 none
}

// Engine is a validated Config in the form the fare functions read. It is
// immutable and may be shared by every shard.
type Engine struct {
	cfg        Config
	dayStart   time.Duration
	transferW  time.Duration
	grace      time.Duration
	uploadAge  time.Duration
	concession [profileCount]Percent
	routes     map[string]*route
}

// New validates cfg and builds its Engine.
func New(cfg Config) (*Engine, error) { return compile(&cfg) }

// Config returns the configuration the engine was built from.
func (e *Engine) Config() Config { return e.cfg }

func validID(s string) bool {
	if len(s) == 0 || len(s) > IDLenMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func compile(c *Config) (*Engine, error) {
	if c.Version == 0 {
		return nil, cerr("version", "must be >= 1")
	}
	if c.DayStart < 0 || c.DayStart >= 24*60 {
		return nil, cerr("day_start", "out of range")
	}
	if c.DailyCap < 0 || c.DailyCap > CapMax {
		return nil, cerr("daily_cap_fen", "must be 0..%d", CapMax)
	}
	if c.WeeklyCap < 0 || c.WeeklyCap > CapMax {
		return nil, cerr("weekly_cap_fen", "must be 0..%d", CapMax)
	}
	if c.WeeklyCap > 0 && c.DailyCap > c.WeeklyCap {
		return nil, cerr("weekly_cap_fen", "below the daily cap")
	}
	if c.TransferWindowSeconds < 0 || c.TransferWindowSeconds > TransferWindowMax {
		return nil, cerr("transfer_window_s", "must be 0..%d", TransferWindowMax)
	}
	if c.TransferPayable.d.IsZero() && c.TransferPayable.micro != 0 {
		return nil, cerr("transfer_payable_pct", "inconsistent")
	}
	if _, err := percentFromDecimal(c.TransferPayable.d); err != nil {
		return nil, cerr("transfer_payable_pct", "%v", err)
	}
	if c.CancelGraceSeconds < 0 || c.CancelGraceSeconds > CancelGraceMax {
		return nil, cerr("cancel_grace_s", "must be 0..%d", CancelGraceMax)
	}
	if c.Offline.AmountMax < 0 || c.Offline.AmountMax > FareMax {
		return nil, cerr("offline.amount_max_fen", "must be 0..%d", FareMax)
	}
	if c.Offline.TapsMax < 0 || c.Offline.TapsMax > OfflineTapsMax {
		return nil, cerr("offline.taps_max", "must be 0..%d", OfflineTapsMax)
	}
	if c.UploadMaxAgeSeconds <= 0 || c.UploadMaxAgeSeconds > UploadAgeMax {
		return nil, cerr("upload_max_age_s", "must be 1..%d", UploadAgeMax)
	}
	if c.FirstRideBudget < 0 || c.FirstRideBudget > CapMax {
		return nil, cerr("first_ride_budget_fen", "must be 0..%d", CapMax)
	}
	e := &Engine{
		cfg:       *c,
		dayStart:  time.Duration(c.DayStart) * time.Minute,
		transferW: time.Duration(c.TransferWindowSeconds) * time.Second,
		grace:     time.Duration(c.CancelGraceSeconds) * time.Second,
		uploadAge: time.Duration(c.UploadMaxAgeSeconds) * time.Second,
		routes:    make(map[string]*route, len(c.Routes)),
	}
	for i := range e.concession {
		e.concession[i] = mustPercent("100")
	}
	for name, p := range c.Concessions {
		prof, ok := ParseProfile(name)
		if !ok {
			return nil, cerr("concessions", "unknown profile %q", name)
		}
		if _, err := percentFromDecimal(p.d); err != nil {
			return nil, cerr("concessions."+name, "%v", err)
		}
		e.concession[prof] = p
	}
	if len(c.Routes) > RoutesMax {
		return nil, cerr("routes", "more than %d", RoutesMax)
	}
	for i := range c.Routes {
		r, err := compileRoute(&c.Routes[i], c.FirstRideBudget)
		if err != nil {
			return nil, err
		}
		if _, dup := e.routes[r.id]; dup {
			return nil, cerr("routes", "duplicate route %q", r.id)
		}
		e.routes[r.id] = r
	}
	return e, nil
}

func compileRoute(rc *Route, defBudget int64) (*route, error) {
	f := "routes[" + strconv.Quote(rc.ID) + "]"
	if !validID(rc.ID) {
		return nil, cerr("routes", "bad route id %q (1..%d printable bytes)", rc.ID, IDLenMax)
	}
	r := &route{id: rc.ID, budget: defBudget}
	switch {
	case rc.FirstRideBudget == -1:
		r.budget = 0
	case rc.FirstRideBudget > 0 && rc.FirstRideBudget <= CapMax:
		r.budget = rc.FirstRideBudget
	case rc.FirstRideBudget != 0:
		return nil, cerr(f+".first_ride_budget_fen", "must be -1, 0 or 1..%d", CapMax)
	}
	switch rc.Kind {
	case KindFlat:
		if rc.Fare <= 0 || rc.Fare > FareMax {
			return nil, cerr(f+".fare_fen", "must be 1..%d", FareMax)
		}
		if len(rc.Stops) != 0 || len(rc.ZoneFares) != 0 || rc.MaxFare != 0 || rc.MaxJourneySeconds != 0 {
			return nil, cerr(f, "a flat route has no stops, zone fares, max fare or journey time")
		}
		r.flat, r.fare, r.maxFare = true, rc.Fare, rc.Fare
		return r, nil
	case KindDistance:
	default:
		return nil, cerr(f+".kind", "must be %q or %q", KindFlat, KindDistance)
	}
	if rc.Fare != 0 {
		return nil, cerr(f+".fare_fen", "a distance route uses zone_fares")
	}
	if rc.MaxFare <= 0 || rc.MaxFare > FareMax {
		return nil, cerr(f+".max_fare_fen", "must be 1..%d", FareMax)
	}
	if rc.MaxJourneySeconds <= 0 || rc.MaxJourneySeconds > JourneyTimeMax {
		return nil, cerr(f+".max_journey_s", "must be 1..%d", JourneyTimeMax)
	}
	if len(rc.Stops) < 2 || len(rc.Stops) > StopsPerRouteMax {
		return nil, cerr(f+".stops", "must be 2..%d", StopsPerRouteMax)
	}
	r.maxFare = rc.MaxFare
	r.maxDur = time.Duration(rc.MaxJourneySeconds) * time.Second
	r.stops = make(map[string]int, len(rc.Stops))
	var used [ZonesMax + 1]bool
	for _, s := range rc.Stops {
		if !validID(s.ID) {
			return nil, cerr(f+".stops", "bad stop id %q", s.ID)
		}
		if s.Zone < 1 || s.Zone > ZonesMax {
			return nil, cerr(f+".stops", "stop %q: zone must be 1..%d", s.ID, ZonesMax)
		}
		if _, dup := r.stops[s.ID]; dup {
			return nil, cerr(f+".stops", "duplicate stop %q", s.ID)
		}
		r.stops[s.ID] = s.Zone
		used[s.Zone] = true
	}
	if len(rc.ZoneFares) > ZonesMax*ZonesMax {
		return nil, cerr(f+".zone_fares", "more than %d", ZonesMax*ZonesMax)
	}
	for i := range r.zoneFare {
		for j := range r.zoneFare[i] {
			r.zoneFare[i][j] = -1
		}
	}
	for _, z := range rc.ZoneFares {
		if z.From < 1 || z.From > ZonesMax || z.To < 1 || z.To > ZonesMax {
			return nil, cerr(f+".zone_fares", "zone out of range %d-%d", z.From, z.To)
		}
		if z.Fare < 0 || z.Fare > rc.MaxFare {
			return nil, cerr(f+".zone_fares", "fare %d-%d must be 0..max_fare_fen", z.From, z.To)
		}
		if r.zoneFare[z.From][z.To] >= 0 {
			return nil, cerr(f+".zone_fares", "duplicate pair %d-%d", z.From, z.To)
		}
		r.zoneFare[z.From][z.To] = z.Fare
	}
	for a := 1; a <= ZonesMax; a++ {
		for b := 1; b <= ZonesMax; b++ {
			if !used[a] || !used[b] {
				continue
			}
			// one direction given: the fare is symmetric
			if r.zoneFare[a][b] < 0 {
				r.zoneFare[a][b] = r.zoneFare[b][a]
			}
			if r.zoneFare[a][b] < 0 {
				return nil, cerr(f+".zone_fares", "no fare for zones %d-%d", a, b)
			}
		}
	}
	return r, nil
}
