package transit

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"scenepay/terminals"
)

func testConfig(t testing.TB) Config {
	t.Helper()
	c := DefaultConfig()
	c.Routes = []Route{
		{ID: "B1", Kind: KindFlat, Fare: 200},
		{ID: "D1", Kind: KindDistance, MaxFare: 600, MaxJourneySeconds: 5400,
			Stops:     []Stop{{"S1", 1}, {"S2", 1}, {"S3", 2}, {"S4", 3}},
			ZoneFares: []ZoneFare{{1, 1, 200}, {1, 2, 300}, {1, 3, 600}, {2, 2, 200}, {2, 3, 300}, {3, 3, 200}}},
	}
	return c
}

func TestPercentMatchesDecimal(t *testing.T) {
	cases := []struct {
		pct  string
		fare int64
		want int64
	}{
		{"100", 250, 250},
		{"0", 250, 0},
		{"50", 251, 125},   // half a fen in the rider's favour
		{"62.5", 333, 208}, // 208.125
		{"33.3333", 300, 99},
		{"99.9999", 9_223_372_036_854_775_807, 9_223_362_813_482_738_952},
		{"12.5", 1, 0},
	}
	for _, c := range cases {
		p, err := PercentOf(c.pct)
		if err != nil {
			t.Fatalf("%s: %v", c.pct, err)
		}
		if got := p.Apply(c.fare); got != c.want {
			t.Errorf("%s%% of %d: got %d want %d", c.pct, c.fare, got, c.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		micro := r.Int64N(1_000_001)
		d := decimal.New(micro, -4)
		p, err := percentFromDecimal(d)
		if err != nil {
			t.Fatal(err)
		}
		fare := r.Int64N(1 << 40)
		want := decimal.NewFromInt(fare).Mul(d).Div(decimal.NewFromInt(100)).Floor().IntPart()
		if got := p.Apply(fare); got != want {
			t.Fatalf("%s%% of %d: got %d, decimal says %d", d, fare, got, want)
		}
	}
	for _, bad := range []string{"-1", "100.01", "12.34567", "x", "", "1e-2000000000", "1e2000000000"} {
		if _, err := PercentOf(bad); err == nil {
			t.Errorf("PercentOf(%q) accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(c *Config)
		field string // "" = valid
	}{
		{"default", func(c *Config) {}, ""},
		{"no version", func(c *Config) { c.Version = 0 }, "version"},
		{"negative cap", func(c *Config) { c.DailyCap = -1 }, "daily_cap_fen"},
		{"weekly below daily", func(c *Config) { c.WeeklyCap = 500 }, "weekly_cap_fen"},
		{"window too long", func(c *Config) { c.TransferWindowSeconds = TransferWindowMax + 1 }, "transfer_window_s"},
		{"unknown profile", func(c *Config) { c.Concessions["pilot"] = mustPercent("0") }, "concessions"},
		{"flat without fare", func(c *Config) { c.Routes[0].Fare = 0 }, `routes["B1"].fare_fen`},
		{"duplicate route", func(c *Config) { c.Routes[1].ID = "B1" }, "routes"},
		{"zone fare above max", func(c *Config) { c.Routes[1].ZoneFares[2].Fare = 601 }, `routes["D1"].zone_fares`},
		{"missing zone pair", func(c *Config) { c.Routes[1].ZoneFares = c.Routes[1].ZoneFares[:5] }, `routes["D1"].zone_fares`},
		{"duplicate stop", func(c *Config) { c.Routes[1].Stops[1].ID = "S1" }, `routes["D1"].stops`},
		{"zone 0", func(c *Config) { c.Routes[1].Stops[0].Zone = 0 }, `routes["D1"].stops`},
		{"no journey time", func(c *Config) { c.Routes[1].MaxJourneySeconds = 0 }, `routes["D1"].max_journey_s`},
		{"bad kind", func(c *Config) { c.Routes[0].Kind = "boat" }, `routes["B1"].kind`},
		{"bad route id", func(c *Config) { c.Routes[0].ID = "B 1" }, "routes"},
		{"floor taps", func(c *Config) { c.Offline.TapsMax = OfflineTapsMax + 1 }, "offline.taps_max"},
	}
	for _, tc := range cases {
		c := testConfig(t)
		tc.edit(&c)
		err := c.Validate()
		var ce *ConfigError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: got %v, want valid", tc.name, err)
		case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field):
			t.Errorf("%s: got %v, want an error on %s", tc.name, err, tc.field)
		}
	}
}

func TestDecodeConfigStrict(t *testing.T) {
	c := testConfig(t)
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeConfig(b)
	if err != nil {
		t.Fatalf("round trip: %v\n%s", err, b)
	}
	b2, _ := back.Encode()
	if string(b) != string(b2) {
		t.Fatalf("round trip differs:\n%s\n%s", b, b2)
	}
	for name, doc := range map[string]string{
		"unknown field":  strings.Replace(string(b), `"version":1`, `"version":1,"colour":"red"`, 1),
		"trailing data":  string(b) + "{}",
		"bad day start":  strings.Replace(string(b), `"04:30"`, `"4:30"`, 1),
		"float percent":  strings.Replace(string(b), `"transfer_payable_pct":"0"`, `"transfer_payable_pct":"1e400"`, 1),
		"not an object":  `[1,2]`,
		"invalid config": strings.Replace(string(b), `"version":1`, `"version":0`, 1),
	} {
		if _, err := DecodeConfig([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if !strings.Contains(string(b), `"day_start":"04:30"`) {
		t.Errorf("day start not encoded as HH:MM: %s", b)
	}
}

func TestTransitDay(t *testing.T) {
	e, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	base, _ := e.TransitDay(time.Date(2026, 3, 2, 12, 0, 0, 0, shanghai)) // Monday
	cases := []struct {
		at        string
		day, week int32 // relative to Monday 2 March
	}{
		{"2026-03-02T04:29:59+08:00", -1, -7},
		{"2026-03-02T04:30:00+08:00", 0, 0},
		{"2026-03-01T20:30:00Z", 0, 0}, // 04:30 Shanghai on 2 March, given in UTC
		{"2026-03-08T23:59:00+08:00", 6, 0},
		{"2026-03-09T04:29:00+08:00", 6, 0},
		{"2026-03-09T04:30:00+08:00", 7, 7},
	}
	for _, c := range cases {
		at, _ := time.Parse(time.RFC3339, c.at)
		d, w := e.TransitDay(at)
		if d-base != c.day || w-base != c.week {
			t.Errorf("%s: got day %+d week %+d, want %+d %+d", c.at, d-base, w-base, c.day, c.week)
		}
	}
}

// exampleCard is a card in the middle of a journey with a full seen ring.
func exampleCard() Card {
	c := Card{Profile: ProfileStudent, Day: 20514, Week: 20510, DaySpent: 300, WeekSpent: 900,
		Anchor: 1_772_400_000_000_000_000, AnchorRoute: "B1", Debt: 200, OfflineTaps: 3, Open: true,
		Journey: Journey{Route: "D1", Stop: "S1", BoardAt: 1_772_400_600_000_000_000, Day: 20514, Week: 20510,
			Held: 300, Transfer: true, PrevAnchor: 5, PrevAnchorRoute: "B2"}}
	for i := 0; i < SeenMax+3; i++ {
		c.seenAdd(TapKey{Reader: uint64(i) * 7, Seq: uint64(i)})
	}
	return c
}

func TestCardBinary(t *testing.T) {
	for _, c := range []Card{{}, exampleCard()} {
		b := c.AppendBinary(nil)
		var back Card
		if err := DecodeCard(b, &back); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if back != c {
			t.Fatalf("round trip:\n got %+v\nwant %+v", back, c)
		}
		for n := 0; n < len(b); n++ {
			if err := DecodeCard(b[:n], &back); err == nil {
				t.Fatalf("prefix of %d/%d bytes accepted", n, len(b))
			}
		}
		if err := DecodeCard(append(b, 0), &back); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("trailing byte: got %v", err)
		}
	}
	ex := exampleCard()
	b := ex.AppendBinary(nil)
	b[0] = 9
	var c Card
	if err := DecodeCard(b, &c); !errors.Is(err, ErrVersion) {
		t.Fatalf("version: got %v", err)
	}
}

func TestDenyListDelta(t *testing.T) {
	l := NewDenyList()
	if _, err := l.Add(""); !errors.Is(err, ErrBadKey) {
		t.Fatalf("empty key: %v", err)
	}
	for i := 0; i < DenyHistoryMax+10; i++ {
		if _, err := l.Add("C" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			l.Remove("C" + strconv.Itoa(i/2))
		}
	}
	d := l.Delta(1)
	if !d.Full || d.To != l.Version() || len(d.Add) != l.Len() {
		t.Fatalf("too old: got full=%v to=%d adds=%d, want full list of %d at %d", d.Full, d.To, len(d.Add), l.Len(), l.Version())
	}
	d = l.Delta(l.Version() - 1)
	if d.Full || len(d.Add)+len(d.Remove) != 1 {
		t.Fatalf("one step: %+v", d)
	}
	back, err := DecodeDenyList(l.AppendBinary(nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(back.AppendBinary(nil)) != string(l.AppendBinary(nil)) {
		t.Fatal("deny list round trip differs")
	}
	if dd := back.Delta(1); !dd.Full || len(dd.Add) != l.Len() {
		t.Fatal("decoded list lost its history bound")
	}
}

func TestTapAllocs(t *testing.T) {
	e, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var c Card
	at := time.Date(2026, 3, 2, 8, 0, 0, 0, shanghai)
	in := Tap{Kind: TapIn, Route: "D1", Stop: "S1"}
	out := Tap{Kind: TapOut, Route: "D1", Stop: "S3"}
	allocs := testing.AllocsPerRun(1000, func() {
		at = at.Add(time.Hour)
		in.At, out.At = at, at.Add(20*time.Minute)
		if d := e.Tap(&c, &in, 1<<40); d.Code != terminals.CodeApproved {
			t.Fatal(d)
		}
		if d := e.Tap(&c, &out, 1<<40); d.Code != terminals.CodeApproved {
			t.Fatal(d)
		}
	})
	if allocs != 0 {
		t.Fatalf("a journey allocates %v times, want 0", allocs)
	}
}

func TestExpiresAt(t *testing.T) {
	e, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var c Card
	if _, ok := e.ExpiresAt(&c); ok {
		t.Fatal("no journey, yet an expiry")
	}
	board := time.Date(2026, 3, 2, 8, 0, 0, 0, shanghai)
	if d := e.Tap(&c, &Tap{Kind: TapIn, Route: "D1", Stop: "S1", At: board}, 10000); d.Hold != 600 {
		t.Fatalf("tap-in: %v", d)
	}
	at, ok := e.ExpiresAt(&c)
	if want := board.Add(90 * time.Minute); !ok || !at.Equal(want) {
		t.Fatalf("expiry: got %v %v, want %v", at, ok, want)
	}
	if d := e.Expire(&c, at.Add(-time.Nanosecond)); d.Capture != 0 || !c.Open {
		t.Fatalf("expired early: %v", d)
	}
	if d := e.Expire(&c, at); d.Capture != 600 || d.Reason != ReasonIncomplete || c.Open {
		t.Fatalf("expire: got %v open=%v", d, c.Open)
	}
	if c.DaySpent != 600 {
		t.Fatalf("day spent %d, want 600", c.DaySpent)
	}
}

func TestCardStateRoundTripKeepsSeenRing(t *testing.T) {
	long := strings.Repeat("r", IDLenMax)
	c := Card{Profile: ProfileStudent, Day: 20000, Week: 19998, DaySpent: 300, WeekSpent: 900,
		Anchor: 1, AnchorRoute: long, Open: true,
		Journey: Journey{Route: long, Stop: long, BoardAt: 5, Day: 20000, Week: 19998, Held: 600, Transfer: true, PrevAnchor: 1, PrevAnchorRoute: long,
			Reader: strings.Repeat("t", PartyLenMax), Merchant: strings.Repeat("m", PartyLenMax)}}
	for i := range c.Past {
		c.Past[i] = int64(100 + i)
	}
	st := c.AppendState(nil)
	if len(st) != StateBytesMax {
		t.Fatalf("maximal state is %d bytes, StateBytesMax is %d", len(st), StateBytesMax)
	}
	var d Card
	d.seenAdd(TapKey{Reader: 7, Seq: 9})
	if err := d.SetState(st); err != nil {
		t.Fatal(err)
	}
	if !d.seenHas(TapKey{Reader: 7, Seq: 9}) {
		t.Fatal("SetState dropped the seen ring")
	}
	d.seen, d.seenN, d.seenNext = c.seen, c.seenN, c.seenNext
	if d != c {
		t.Fatalf("round trip:\n got %+v\nwant %+v", d, c)
	}
	if err := d.SetState(append(st, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if err := d.SetState(st[:len(st)-1]); err == nil {
		t.Fatal("truncated state accepted")
	}
}

// The debt payee: the default when unset, the configured merchant when
// set, and a malformed one refused by the strict decoder.
func TestDebtPayee(t *testing.T) {
	c := DefaultConfig()
	if got := c.DebtPayeeMerchant(); got != DefaultDebtPayee {
		t.Fatalf("default debt payee %q, want %q", got, DefaultDebtPayee)
	}
	c.DebtPayee = "BUS-CO"
	body, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeConfig(body)
	if err != nil || d.DebtPayeeMerchant() != "BUS-CO" {
		t.Fatalf("decoded debt payee %q, %v", d.DebtPayee, err)
	}
	for _, bad := range []string{"BUS CO", strings.Repeat("B", 65), "BUS\n"} {
		c.DebtPayee = bad
		if err := c.Validate(); err == nil {
			t.Errorf("debt payee %q accepted", bad)
		}
	}
}

// A based list starts at its base: a reader below the base gets the full
// list, one at the base or after gets the changes; the base survives the
// binary encoding, and only a never changed list takes one.
func TestDenyListBase(t *testing.T) {
	const base = 1 << 40
	l := NewDenyList()
	if err := l.Report("R1", 0); err != nil {
		t.Fatal(err)
	}
	if err := l.SetBase(base); err != nil { // reports of version 0 stay true
		t.Fatal(err)
	}
	if l.Version() != base {
		t.Fatalf("version %d, want %d", l.Version(), base)
	}
	if err := l.SetBase(base + 1); !errors.Is(err, ErrBaseSet) {
		t.Fatalf("second base: %v", err)
	}
	if v, err := l.Add("C1"); err != nil || v != base+1 {
		t.Fatalf("first add: %d %v", v, err)
	}
	if d := l.Delta(5); !d.Full || !slices.Equal(d.Add, []string{"C1"}) {
		t.Fatalf("a reader below the base: %+v", d)
	}
	if d := l.Delta(base); d.Full || !slices.Equal(d.Add, []string{"C1"}) || d.To != base+1 {
		t.Fatalf("a reader at the base: %+v", d)
	}
	back, err := DecodeDenyList(l.AppendBinary(nil))
	if err != nil || back.Version() != base+1 {
		t.Fatalf("decoded: %v %v", back, err)
	}
	if d := back.Delta(base); d.Full || len(d.Add) != 1 {
		t.Fatalf("decoded list's history from the base: %+v", d)
	}
	used := NewDenyList()
	used.Add("C1")
	used.Remove("C1")
	if err := used.SetBase(base); !errors.Is(err, ErrBaseSet) {
		t.Fatalf("base on a list in use: %v", err)
	}
}
