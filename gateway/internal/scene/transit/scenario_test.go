package transit

// Scripted scenarios: testdata/*.txt, one command per line, written for a
// domain person. The runner plays the core's part: it keeps a small ledger
// per card (balance, held), applies each Decision to it, keeps the deny
// list in step with FlagDeny/FlagUndeny, and checks "-> outcome" exactly.
//
//	config daily_cap=1000 day_start=04:30 transfer_window=90m transfer_pct=50
//	route R1 flat fare=200
//	route R2 distance max=600 maxtime=90m stops=S1:1,S5:2 fares=1-1:200,1-2:400,2-2:200
//	card C1 profile=adult balance=5000
//	at 2026-03-02T07:58+08:00 tap_in C1 route=R2 stop=S1      -> hold 600
//	at 2026-03-02T08:20+08:00 tap_out C1 route=R2 stop=S5     -> capture 400 release 200
//	at T expire C1 -> ...         at T topup C1 amount=500 -> ...
//	upload C1 at T                (then "+ T tap_in ... reader=RD1 seq=1 -> ..." lines, then "end")
//	at T unknown tap_in route=R1 reader=RD1 seq=9 -> loss 200
//	deny add C9 | deny remove C9 | deny delta from=1 -> v3 +C1 -C2
//	report T1 version=2 | lagging min=3 -> T1@2
//	expect C1 day_spent=650 debt=0 balance=4350 held=0 journey=none denied=no
//	expect C1 spent_2026-03-01=1000  (what the card paid on that transit day)
//	expect risk R1 loss=200 first_rides=no at=T
//	restart                       (encode all state, decode into fresh structs, continue)

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"scenepay/terminals"
)

type simCard struct {
	card    Card
	balance int64
	held    int64
}

type scenario struct {
	t      *testing.T
	file   string
	line   int
	cfg    Config
	eng    *Engine
	cards  map[string]*simCard
	deny   *DenyList
	risk   RiskBook
	upload *pendingUpload
}

type pendingUpload struct {
	card  string
	now   time.Time
	taps  []Tap
	want  map[TapKey]string
	lines map[TapKey]int
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScenario(t, f) })
	}
}

func runScenario(t *testing.T, file string) {
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	s := &scenario{t: t, file: file, cfg: DefaultConfig(), cards: map[string]*simCard{}, deny: NewDenyList()}
	s.rebuild()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		s.line++
		text := sc.Text()
		if i := strings.Index(text, "#"); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		cmd, want, hasWant := strings.Cut(text, "->")
		cmd, want = strings.TrimSpace(cmd), strings.TrimSpace(want)
		s.exec(strings.Fields(cmd), want, hasWant)
	}
	if s.upload != nil {
		s.failf("upload without end")
	}
}

func (s *scenario) failf(format string, a ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, a...))
}

func (s *scenario) rebuild() {
	s.t.Helper()
	e, err := New(s.cfg)
	if err != nil {
		s.failf("config: %v", err)
	}
	s.eng = e
}

func kv(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}

func (s *scenario) int(v string) int64 {
	s.t.Helper()
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		s.failf("not a number: %q", v)
	}
	return n
}

func (s *scenario) dur(v string) int {
	s.t.Helper()
	d, err := time.ParseDuration(v)
	if err != nil {
		s.failf("not a duration: %q", v)
	}
	return int(d / time.Second)
}

func (s *scenario) time(v string) time.Time {
	s.t.Helper()
	for _, layout := range []string{"2006-01-02T15:04Z07:00", time.RFC3339} {
		if tm, err := time.Parse(layout, v); err == nil {
			return tm
		}
	}
	s.failf("not a time: %q", v)
	return time.Time{}
}

func (s *scenario) pct(v string) Percent {
	s.t.Helper()
	p, err := PercentOf(v)
	if err != nil {
		s.failf("%v", err)
	}
	return p
}

func (s *scenario) card(name string) *simCard {
	s.t.Helper()
	c := s.cards[name]
	if c == nil {
		s.failf("unknown card %s", name)
	}
	return c
}

func (s *scenario) check(what, got, want string, hasWant bool) {
	s.t.Helper()
	if !hasWant {
		s.failf("%s: missing \"-> expected\" (got %q)", what, got)
	}
	if got != want {
		s.failf("%s:\n  got  %s\n  want %s", what, got, want)
	}
}

// apply plays the core: ledger effects and deny-list membership.
func (s *scenario) apply(name string, c *simCard, d Decision) {
	s.t.Helper()
	if d.Code != terminals.CodeApproved {
		return
	}
	c.held -= d.PrevCapture + d.Capture + d.Release
	c.balance -= d.PrevCapture + d.Capture + d.Charge
	c.held += d.Hold
	if d.Reason == ReasonTopUp {
		c.balance += d.Debt // the part of the top-up that paid debt is not the card's
	}
	if d.Has(FlagDeny) {
		if _, err := s.deny.Add(name); err != nil {
			s.failf("deny add: %v", err)
		}
	}
	if d.Has(FlagUndeny) {
		s.deny.Remove(name)
	}
	if c.held < 0 || c.balance-c.held < 0 {
		s.failf("ledger invariant broken: balance %d held %d", c.balance, c.held)
	}
}

func (s *scenario) tap(kind string, args []string, at time.Time) Tap {
	s.t.Helper()
	m := kv(args)
	t := Tap{Route: m["route"], Stop: m["stop"], At: at, Reader: m["reader"]}
	switch kind {
	case "tap_in":
		t.Kind = TapIn
	case "tap_out":
		t.Kind = TapOut
	default:
		s.failf("unknown tap kind %q", kind)
	}
	if v, ok := m["seq"]; ok {
		t.Seq = uint64(s.int(v))
	}
	return t
}

func (s *scenario) exec(f []string, want string, hasWant bool) {
	s.t.Helper()
	if s.upload != nil && f[0] != "+" && f[0] != "end" {
		s.failf("inside an upload only \"+ TIME tap ...\" and \"end\" lines")
	}
	switch f[0] {
	case "config":
		for k, v := range kv(f[1:]) {
			switch k {
			case "daily_cap":
				s.cfg.DailyCap = s.int(v)
			case "weekly_cap":
				s.cfg.WeeklyCap = s.int(v)
			case "day_start":
				c, err := ParseClock(v)
				if err != nil {
					s.failf("%v", err)
				}
				s.cfg.DayStart = c
			case "transfer_window":
				s.cfg.TransferWindowSeconds = s.dur(v)
			case "transfer_pct":
				s.cfg.TransferPayable = s.pct(v)
			case "grace":
				s.cfg.CancelGraceSeconds = s.dur(v)
			case "floor_amount":
				s.cfg.Offline.AmountMax = s.int(v)
			case "floor_taps":
				s.cfg.Offline.TapsMax = int(s.int(v))
			case "upload_age":
				s.cfg.UploadMaxAgeSeconds = s.dur(v)
			case "first_ride_budget":
				s.cfg.FirstRideBudget = s.int(v)
			case "adult_pct", "senior_pct", "student_pct", "disabled_pct":
				s.cfg.Concessions[strings.TrimSuffix(k, "_pct")] = s.pct(v)
			default:
				s.failf("unknown config key %q", k)
			}
		}
		s.rebuild()
	case "route":
		if len(f) < 3 {
			s.failf("route ID flat|distance ...")
		}
		m := kv(f[3:])
		r := Route{ID: f[1], Kind: Kind(f[2])}
		if v, ok := m["budget"]; ok {
			r.FirstRideBudget = s.int(v)
		}
		if r.Kind == KindFlat {
			r.Fare = s.int(m["fare"])
		} else {
			r.MaxFare = s.int(m["max"])
			r.MaxJourneySeconds = s.dur(m["maxtime"])
			for _, st := range strings.Split(m["stops"], ",") {
				id, z, _ := strings.Cut(st, ":")
				r.Stops = append(r.Stops, Stop{ID: id, Zone: int(s.int(z))})
			}
			for _, zf := range strings.Split(m["fares"], ",") {
				pair, fare, _ := strings.Cut(zf, ":")
				a, b, _ := strings.Cut(pair, "-")
				r.ZoneFares = append(r.ZoneFares, ZoneFare{From: int(s.int(a)), To: int(s.int(b)), Fare: s.int(fare)})
			}
		}
		s.cfg.Routes = append(s.cfg.Routes, r)
		s.rebuild()
	case "card":
		m := kv(f[2:])
		c := &simCard{}
		if p, ok := m["profile"]; ok {
			prof, ok := ParseProfile(p)
			if !ok {
				s.failf("unknown profile %q", p)
			}
			c.card.Profile = prof
		}
		if v, ok := m["balance"]; ok {
			c.balance = s.int(v)
		}
		s.cards[f[1]] = c
	case "at":
		if len(f) < 4 {
			s.failf("at TIME command CARD ...")
		}
		at := s.time(f[1])
		switch f[2] {
		case "tap_in", "tap_out":
			c := s.card(f[3])
			tp := s.tap(f[2], f[4:], at)
			d := s.eng.Tap(&c.card, &tp, c.balance-c.held)
			s.apply(f[3], c, d)
			s.check(f[2], d.String(), want, hasWant)
		case "expire":
			c := s.card(f[3])
			d := s.eng.Expire(&c.card, at)
			s.apply(f[3], c, d)
			s.check("expire", d.String(), want, hasWant)
		case "topup":
			c := s.card(f[3])
			amt := s.int(kv(f[4:])["amount"])
			d := s.eng.TopUp(&c.card, amt)
			if d.Code == terminals.CodeApproved {
				c.balance += amt
			}
			s.apply(f[3], c, d)
			s.check("topup", d.String(), want, hasWant)
		case "unknown":
			if len(f) < 4 {
				s.failf("at TIME unknown tap_in route=...")
			}
			tp := s.tap(f[3], f[4:], at)
			d := s.eng.FirstRideLoss(&s.risk, &tp, at)
			s.check("first ride", d.String(), want, hasWant)
		default:
			s.failf("unknown event %q", f[2])
		}
	case "upload":
		if len(f) != 4 || f[2] != "at" {
			s.failf("upload CARD at TIME")
		}
		s.card(f[1])
		s.upload = &pendingUpload{card: f[1], now: s.time(f[3]), want: map[TapKey]string{}, lines: map[TapKey]int{}}
	case "+":
		if s.upload == nil || len(f) < 3 {
			s.failf("\"+ TIME tap_in ...\" outside an upload")
		}
		tp := s.tap(f[2], f[3:], s.time(f[1]))
		if !hasWant {
			s.failf("upload tap without \"-> expected\"")
		}
		k := tp.Key()
		if _, dup := s.upload.want[k]; dup {
			k.Seq |= 1 << 63 // a deliberate duplicate in one batch: expect on the second line
		}
		s.upload.want[k] = want
		s.upload.lines[k] = s.line
		s.upload.taps = append(s.upload.taps, tp)
	case "end":
		u := s.upload
		if u == nil {
			s.failf("end without upload")
		}
		s.upload = nil
		c := s.card(u.card)
		ds := s.eng.ProcessUpload(&c.card, u.taps, c.balance-c.held, u.now, nil)
		seen := map[TapKey]bool{}
		for _, d := range ds {
			s.apply(u.card, c, d)
			k := d.Tap
			if seen[k] {
				k.Seq |= 1 << 63
			}
			seen[k] = true
			line := s.line
			s.line = u.lines[k]
			s.check("uploaded tap", d.String(), u.want[k], true)
			s.line = line
		}
	case "deny":
		if len(f) < 2 {
			s.failf("deny add|remove|delta")
		}
		switch f[1] {
		case "add":
			if _, err := s.deny.Add(f[2]); err != nil {
				s.failf("%v", err)
			}
		case "remove":
			s.deny.Remove(f[2])
		case "delta":
			d := s.deny.Delta(uint64(s.int(kv(f[2:])["from"])))
			var b []string
			b = append(b, "v"+strconv.FormatUint(d.To, 10))
			if d.Full {
				b = append(b, "full")
			}
			for _, c := range d.Add {
				b = append(b, "+"+c)
			}
			for _, c := range d.Remove {
				b = append(b, "-"+c)
			}
			s.check("deny delta", strings.Join(b, " "), want, hasWant)
		default:
			s.failf("deny %s?", f[1])
		}
	case "report":
		err := s.deny.Report(f[1], uint64(s.int(kv(f[2:])["version"])))
		got := "ok"
		if err != nil {
			got = "error"
		}
		if hasWant || err != nil {
			s.check("report", got, want, true)
		}
	case "lagging":
		var b []string
		for _, tv := range s.deny.Lagging(uint64(s.int(kv(f[1:])["min"]))) {
			b = append(b, tv.Terminal+"@"+strconv.FormatUint(tv.Version, 10))
		}
		got := strings.Join(b, " ")
		if got == "" {
			got = "none"
		}
		s.check("lagging", got, want, hasWant)
	case "expect":
		s.expect(f[1:])
	case "restart":
		s.restart()
	default:
		s.failf("unknown command %q", f[0])
	}
}

func (s *scenario) expect(f []string) {
	s.t.Helper()
	if len(f) < 2 {
		s.failf("expect CARD k=v ... | expect risk ROUTE ...")
	}
	if f[0] == "risk" {
		m := kv(f[2:])
		for k, v := range m {
			switch k {
			case "loss":
				s.check("risk loss", strconv.FormatInt(s.risk.Loss[f[1]], 10), v, true)
			case "first_rides":
				got := "no"
				if s.eng.FirstRidesAllowed(&s.risk, f[1], s.time(m["at"])) {
					got = "yes"
				}
				s.check("first rides allowed", got, v, true)
			case "at":
			default:
				s.failf("unknown risk key %q", k)
			}
		}
		return
	}
	c := s.card(f[0])
	for k, v := range kv(f[1:]) {
		var got string
		switch k {
		case "day_spent":
			got = strconv.FormatInt(c.card.DaySpent, 10)
		case "week_spent":
			got = strconv.FormatInt(c.card.WeekSpent, 10)
		case "debt":
			got = strconv.FormatInt(c.card.Debt, 10)
		case "balance":
			got = strconv.FormatInt(c.balance, 10)
		case "held":
			got = strconv.FormatInt(c.held, 10)
		case "offline_taps":
			got = strconv.Itoa(int(c.card.OfflineTaps))
		case "journey":
			got = "none"
			if c.card.Open {
				got = "open"
			}
		case "denied":
			got = "no"
			if s.deny.Has(f[0]) {
				got = "yes"
			}
		default:
			date, ok := strings.CutPrefix(k, "spent_")
			if !ok {
				s.failf("unknown card key %q", k)
			}
			got = s.spentOn(c, date)
		}
		s.check(f[0]+" "+k, got, v, true)
	}
}

// spentOn reports what the card paid on the transit day named by date
// (YYYY-MM-DD): its day counter, an entry of its past days, or
// "forgotten" for a day before them ("-" for a day after the card's).
func (s *scenario) spentOn(c *simCard, date string) string {
	s.t.Helper()
	tm, err := time.Parse("2006-01-02", date)
	if err != nil {
		s.failf("spent_DATE: %v", err)
	}
	day := int32(tm.Unix() / 86400)
	switch back := int(c.card.Day - day); {
	case back == 0:
		return strconv.FormatInt(c.card.DaySpent, 10)
	case back < 0:
		return "-"
	case back <= PastDaysMax:
		return strconv.FormatInt(c.card.Past[back-1], 10)
	}
	return "forgotten"
}

// restart encodes every piece of state (cards, deny list, risk book, and
// the config through its JSON form), decodes into fresh values and goes on.
func (s *scenario) restart() {
	s.t.Helper()
	fresh := map[string]*simCard{}
	for name, c := range s.cards {
		b := c.card.AppendBinary(nil)
		n := &simCard{balance: c.balance, held: c.held}
		if err := DecodeCard(b, &n.card); err != nil {
			s.failf("restart: card %s: %v", name, err)
		}
		if string(n.card.AppendBinary(nil)) != string(b) {
			s.failf("restart: card %s: re-encoding differs", name)
		}
		fresh[name] = n
	}
	s.cards = fresh
	dl, err := DecodeDenyList(s.deny.AppendBinary(nil))
	if err != nil {
		s.failf("restart: deny list: %v", err)
	}
	s.deny = dl
	var rb RiskBook
	if err := DecodeRiskBook(s.risk.AppendBinary(nil), &rb); err != nil {
		s.failf("restart: risk book: %v", err)
	}
	s.risk = rb
	js, err := s.cfg.Encode()
	if err != nil {
		s.failf("restart: config: %v", err)
	}
	if s.cfg, err = DecodeConfig(js); err != nil {
		s.failf("restart: config: %v", err)
	}
	s.rebuild()
}
