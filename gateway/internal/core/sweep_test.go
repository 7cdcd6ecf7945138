package core

// Scripted sweep scenarios: testdata/*.txt, one command per line, for a
// domain person. The runner drives a real shard with the default fares
// (route D1: distance, maximum fare 6 CNY, maximum journey time 90 min;
// B1: flat 2 CNY) and keeps every journaled record, so that "restart" can
// rebuild the shard from a snapshot plus the records after it and from
// the records alone, and compare both with the live shard.
//
//	open county:C1 balance=5000
//	at 2026-03-10T08:00+08:00 tap_in county:C1 route=D1 stop=S1 reader=BUS1 merchant=busco -> 00 amount=600
//	sweep at 2026-03-10T09:31+08:00 -> county:C1 capture=600 to BUS1/busco
//	expect county:C1 balance=4400 held=0 journey=none day_spent=600
//	paid busco=600                (transit money per merchant, as settlement pays it)
//	snapshot                      (remember a snapshot of the shard here)
//
// A tap line steps ExpireBeforeTap first, as the gateway does; its result
// then ends with "closed=N to READER/MERCHANT" when that closed a journey
// with its own record (one past its maximum journey time, or one the tap
// ends as incomplete). The word "lazy" on a tap line skips it (the tap's
// own record closes the journey, the core's safety net).
//	restart                       (snapshot + later records, and all records, must give the live state)
//	route D2                      (add a distance route with D1's stops, fares and times)

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

type sweepScript struct {
	t     *testing.T
	file  string
	line  int
	s     *Shard
	recs  [][]byte
	snap  []byte // snapshot taken by "snapshot"
	snapN int    // records in it
	txn   uint64
	fares *transit.Engine // the fare table after "route" lines (nil: the default)
}

func TestSweepScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := &sweepScript{t: t, file: f, s: NewShard(3, nil)}
			lines := bufio.NewScanner(bytes.NewReader(b))
			for lines.Scan() {
				sc.line++
				text, _, _ := strings.Cut(lines.Text(), "#")
				if text = strings.TrimSpace(text); text == "" {
					continue
				}
				cmd, want, has := strings.Cut(text, "->")
				sc.exec(strings.Fields(cmd), strings.TrimSpace(want), has)
			}
		})
	}
}

func (sc *sweepScript) failf(format string, a ...any) {
	sc.t.Helper()
	sc.t.Fatalf("%s:%d: %s", sc.file, sc.line, fmt.Sprintf(format, a...))
}

func (sc *sweepScript) time(v string) time.Time {
	sc.t.Helper()
	tm, err := time.Parse("2006-01-02T15:04Z07:00", v)
	if err != nil {
		sc.failf("not a time: %q", v)
	}
	return tm
}

func (sc *sweepScript) check(what, got, want string, has bool) {
	sc.t.Helper()
	if !has {
		sc.failf("%s: missing \"-> expected\" (got %q)", what, got)
	}
	if got != want {
		sc.failf("%s:\n  got  %s\n  want %s", what, got, want)
	}
}

func (sc *sweepScript) step(at time.Time, in *Input) Output {
	sc.t.Helper()
	var out Output
	sc.s.Step(at, in, &out)
	sc.keep(out.Record)
	return out
}

// keep journals a record the shard stepped (none when empty) and checks
// the shard's invariants.
func (sc *sweepScript) keep(rec []byte) {
	sc.t.Helper()
	if len(rec) > 0 {
		sc.recs = append(sc.recs, bytes.Clone(rec))
	}
	if err := sc.s.CheckInvariants(); err != nil {
		sc.failf("%v", err)
	}
}

// paid sums, over the journaled records, the transit money each merchant
// is paid as the settlement handoff maps it (gateway/internal/handoff
// rows.go: a tap or journey expiry record pays Charge + PrevCapture +
// Capture to the merchant it names), as "merchant=fen" sorted by merchant.
func (sc *sweepScript) paid() string {
	sc.t.Helper()
	sums := map[string]int64{}
	for _, b := range sc.recs {
		var r Record
		if err := DecodeRecord(b, &r); err != nil {
			sc.failf("%v", err)
		}
		if r.Code != terminals.CodeApproved || !r.Op.tap() {
			continue
		}
		if amt := r.Tap.Charge + r.Tap.PrevCapture + r.Tap.Capture; amt != 0 {
			sums[r.Merchant] += amt
		}
	}
	var parts []string
	for m, v := range sums {
		parts = append(parts, m+"="+strconv.FormatInt(v, 10))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (sc *sweepScript) exec(f []string, want string, has bool) {
	sc.t.Helper()
	kv := map[string]string{}
	for _, a := range f {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		}
	}
	num := func(k string) int64 {
		n, err := strconv.ParseInt(kv[k], 10, 64)
		if err != nil {
			sc.failf("%s: not a number: %q", k, kv[k])
		}
		return n
	}
	switch f[0] {
	case "open":
		in := open(f[1], num("balance"))
		if out := sc.step(t0, &in); out.Code != terminals.CodeApproved {
			sc.failf("open: %s", out.Code)
		}
	case "at":
		at := sc.time(f[1])
		sc.txn++
		in := Input{Account: f[3], Route: kv["route"], Stop: kv["stop"], TID: kv["reader"], Txn: sc.txn, Merchant: kv["merchant"]}
		switch f[2] {
		case "tap_in":
			in.Op = OpTapIn
		case "tap_out":
			in.Op = OpTapOut
		default:
			sc.failf("unknown tap %q", f[2])
		}
		// As the gateway does: an expired journey is closed with its own
		// record first ("lazy" leaves it to the tap's record, the safety
		// net of a caller that does not).
		expired := ""
		if !slices.Contains(f, "lazy") {
			var pre Output
			if sc.s.ExpireBeforeTap(at, &in, &pre) {
				sc.keep(pre.Record)
				var r Record
				if err := DecodeRecord(pre.Record, &r); err != nil {
					sc.failf("%v", err)
				}
				if r.Op != OpJourneyExpire || r.Seq != pre.Seq {
					sc.failf("closed first by op %s seq %d (output seq %d)", r.Op, r.Seq, pre.Seq)
				}
				expired = fmt.Sprintf(" closed=%d to %s/%s", r.Tap.Capture, r.TID, r.Merchant)
			}
		}
		out := sc.step(at, &in)
		got := string(out.Code)
		if out.Code == terminals.CodeApproved {
			got += " amount=" + strconv.FormatInt(out.Amount, 10)
			var r Record
			if err := DecodeRecord(out.Record, &r); err != nil {
				sc.failf("%v", err)
			}
			if r.Tap.PrevCapture > 0 {
				got += " prev-capture=" + strconv.FormatInt(r.Tap.PrevCapture, 10)
			}
		}
		sc.check(f[2], got+expired, want, has)
	case "sweep":
		// sweep at T [scan=N] [due=N]: one pass as the gateway runs it.
		at := sc.time(f[2])
		scan, due := 1<<20, 1<<20
		if _, ok := kv["scan"]; ok {
			scan = int(num("scan"))
		}
		if _, ok := kv["due"]; ok {
			due = int(num("due"))
		}
		keys := sc.s.DueJourneys(at, scan, due, nil)
		var got []string
		for _, k := range keys {
			in := Input{Op: OpJourneyExpire, Account: k}
			out := sc.step(at, &in)
			if len(out.Record) == 0 {
				got = append(got, k+" nothing")
				continue
			}
			var r Record
			if err := DecodeRecord(out.Record, &r); err != nil {
				sc.failf("%v", err)
			}
			got = append(got, fmt.Sprintf("%s capture=%d to %s/%s", k, r.Tap.Capture, r.TID, r.Merchant))
		}
		slices.Sort(got)
		res := strings.Join(got, ", ")
		if res == "" {
			res = "none"
		}
		sc.check("sweep", res, want, has)
	case "expire":
		// expire T ACCOUNT: an expiry step for one account, whether due or not.
		in := Input{Op: OpJourneyExpire, Account: f[2]}
		out := sc.step(sc.time(f[1]), &in)
		got := string(out.Code) + " journaled=" + strconv.FormatBool(len(out.Record) > 0)
		sc.check("expire", got, want, has)
	case "expect":
		v, ok := sc.s.Account(f[1])
		if !ok {
			sc.failf("no account %s", f[1])
		}
		c, _ := sc.s.Card(f[1])
		for k, w := range kv {
			var got string
			switch k {
			case "balance":
				got = strconv.FormatInt(v.Balance, 10)
			case "held":
				got = strconv.FormatInt(v.Held, 10)
			case "journey":
				got = map[bool]string{true: "open", false: "none"}[c.Open]
			case "day_spent":
				got = strconv.FormatInt(c.DaySpent, 10)
			case "open_journeys":
				got = strconv.Itoa(sc.s.OpenJourneys())
			default:
				sc.failf("unknown key %q", k)
			}
			sc.check(f[1]+" "+k, got, w, true)
		}
	case "paid":
		// paid M1=fen M2=fen ...: what settlement pays each merchant for
		// the transit records journaled so far.
		sc.check("paid", sc.paid(), strings.Join(f[1:], " "), true)
	case "snapshot":
		var b bytes.Buffer
		if err := sc.s.Snapshot(&b); err != nil {
			sc.failf("snapshot: %v", err)
		}
		sc.snap, sc.snapN = b.Bytes(), len(sc.recs)
	case "restart":
		// From the snapshot plus the records after it...
		r := NewShard(sc.s.ID(), nil)
		if sc.snap != nil {
			if err := r.Restore(bytes.NewReader(sc.snap)); err != nil {
				sc.failf("restore: %v", err)
			}
		}
		for i, b := range sc.recs[sc.snapN:] {
			var rec Record
			if err := DecodeRecord(b, &rec); err != nil {
				sc.failf("record %d: %v", i, err)
			}
			if err := r.Apply(&rec); err != nil {
				sc.failf("record %d: %v", sc.snapN+i, err)
			}
		}
		assertSame(sc.t, "snapshot + journal", sc.s, r)
		r.SetTransit(sc.fares) // Apply never consults fares; the taps after the restart do
		// ... and from the whole journal.
		replay(sc.t, sc.s, nil, sc.recs)
		if r.OpenJourneys() != sc.s.OpenJourneys() {
			sc.failf("open journeys after restart %d, live %d", r.OpenJourneys(), sc.s.OpenJourneys())
		}
		sc.s = r
	case "route":
		// route ID: a distance route like D1 (stops S1..S4, maximum fare
		// 6 CNY, 90 minutes) under another id.
		cfg := sc.s.cfg.Transit.Config()
		routes := slices.Clone(cfg.Routes)
		i := slices.IndexFunc(routes, func(r transit.Route) bool { return r.ID == "D1" })
		if i < 0 || len(f) != 2 {
			sc.failf("route: want \"route ID\" and a D1 to copy")
		}
		r := routes[i]
		r.ID = f[1]
		cfg.Routes = append(routes, r)
		e, err := transit.New(cfg)
		if err != nil {
			sc.failf("route: %v", err)
		}
		sc.fares = e
		sc.s.SetTransit(e)
	default:
		sc.failf("unknown command %q", f[0])
	}
}

// TestJourneyExpireApplyRefuses: a journey expiry record that does not fit
// the card (no journey open, or moving more than the hold) is corruption.
func TestJourneyExpireApplyRefuses(t *testing.T) {
	s := NewShard(1, nil)
	var out Output
	in := open("county:C1", 5000)
	s.Step(t0, &in, &out)
	in = tapIn("county:C1", "D1", "S1", 1)
	s.Step(t0, &in, &out)
	in = Input{Op: OpJourneyExpire, Account: "county:C1"}
	s.Step(t0.Add(2*time.Hour), &in, &out)
	if out.Code != terminals.CodeApproved || len(out.Record) == 0 {
		t.Fatalf("expiry: %s, %d bytes", out.Code, len(out.Record))
	}
	var rec Record
	if err := DecodeRecord(out.Record, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Op != OpJourneyExpire || rec.TID != "BUS1" || rec.Merchant != "busco" || rec.Tap.Capture != 600 || rec.Amount != 600 || rec.Txn != rec.Seq {
		t.Fatalf("record %+v", rec)
	}
	// Applied again to the shard, now without a journey: refused.
	rec.Seq = s.Seq() + 1
	if err := s.Apply(&rec); err == nil {
		t.Fatal("expiry of a card without a journey applied")
	}
	// A second expiry step finds nothing to do.
	s2 := NewShard(1, nil)
	for _, in := range []Input{open("county:C1", 5000), tapIn("county:C1", "D1", "S1", 1)} {
		s2.Step(t0, &in, &out)
	}
	bad := rec
	bad.Seq = s2.Seq() + 1
	bad.Tap.Charge = 100
	if err := s2.Apply(&bad); err == nil {
		t.Fatal("expiry with a charge applied")
	}
}

// TestDueJourneysBounded: one pass looks at no more than scanMax cards and
// returns no more than dueMax; passes from the rotating cursor cover every
// due journey, and the index follows the cards.
func TestDueJourneysBounded(t *testing.T) {
	s := NewShard(1, nil)
	var out Output
	const cards = 10
	for i := range cards {
		key := fmt.Sprintf("county:C%d", i)
		for _, in := range []Input{open(key, 5000), tapIn(key, "D1", "S1", uint64(i+1))} {
			s.Step(t0, &in, &out)
			if out.Code != terminals.CodeApproved {
				t.Fatalf("%s: %s", key, out.Code)
			}
		}
	}
	if got := s.DueJourneys(t0.Add(89*time.Minute), cards, cards, nil); len(got) != 0 {
		t.Fatalf("due before the maximum journey time: %v", got)
	}
	due := t0.Add(90 * time.Minute)
	seen := map[string]bool{}
	for pass := 0; s.OpenJourneys() > 0; pass++ {
		if pass > cards {
			t.Fatalf("%d journeys still open after %d passes", s.OpenJourneys(), pass)
		}
		keys := s.DueJourneys(due, 3, 2, nil)
		if len(keys) == 0 || len(keys) > 2 {
			t.Fatalf("pass %d: %d keys, want 1..2", pass, len(keys))
		}
		for _, k := range keys {
			if seen[k] {
				t.Fatalf("%s returned again after its expiry", k)
			}
			seen[k] = true
			in := Input{Op: OpJourneyExpire, Account: k}
			s.Step(due, &in, &out)
			if len(out.Record) == 0 {
				t.Fatalf("%s: due but nothing journaled", k)
			}
		}
	}
	if len(seen) != cards {
		t.Fatalf("expired %d of %d", len(seen), cards)
	}
}

// TestWriteJourneyExpireSeed writes the journey expiry seed of the record
// fuzz corpus (run with -write-seeds).
func TestWriteJourneyExpireSeed(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to regenerate the seed corpus")
	}
	s := NewShard(1, nil)
	var out Output
	for i, in := range []Input{open("county:C1", 5000), tapIn("county:C1", "D1", "S1", 1), {Op: OpJourneyExpire, Account: "county:C1"}} {
		s.Step(t0.Add(time.Duration(i)*2*time.Hour), &in, &out)
	}
	if len(out.Record) == 0 {
		t.Fatal("no journey expiry record")
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", out.Record)
	if err := os.WriteFile(filepath.Join("testdata", "fuzz", "FuzzDecodeRecord", "seed-journey-expire"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExpireBeforeTap: an online tap of a card whose journey is due at the
// tap's time steps a journey expiry record (seq before the tap's); other
// ops, taps that would not close a journey not yet due, and unknown
// accounts step none.
func TestExpireBeforeTap(t *testing.T) {
	s := NewShard(1, nil)
	var out Output
	for _, in := range []Input{open("county:C1", 5000), tapIn("county:C1", "D1", "S1", 1)} {
		s.Step(t0, &in, &out)
		if out.Code != terminals.CodeApproved {
			t.Fatalf("%s: %s", in.Op, out.Code)
		}
	}
	due := t0.Add(90 * time.Minute)
	seq := s.Seq()
	for _, c := range []struct {
		name string
		at   time.Time
		in   Input
	}{
		{"tap-out on the journey's route", t0.Add(89 * time.Minute), tapOut("county:C1", "D1", "S3", 2)},
		{"tap-out on a flat route", t0.Add(89 * time.Minute), tapOut("county:C1", "B1", "", 2)},
		{"tap-in on an unknown route", t0.Add(89 * time.Minute), tapIn("county:C1", "X9", "", 2)},
		{"purchase", due, buy("county:C1", 100, 3)},
		{"offline upload", due, Input{Op: OpTapUpload, Account: "county:C1", TID: "BUS9", Txn: 4}},
		{"unknown account", due, tapIn("county:C9", "B1", "", 5)},
	} {
		if s.ExpireBeforeTap(c.at, &c.in, &out) || s.Seq() != seq {
			t.Fatalf("%s: stepped a record (seq %d -> %d)", c.name, seq, s.Seq())
		}
	}
	late := t0.Add(3 * time.Hour) // past the transfer window too: B1's full fare
	in := tapIn("county:C1", "B1", "", 6)
	in.TID, in.Merchant = "BUS7", "otherco"
	if !s.ExpireBeforeTap(late, &in, &out) || out.Seq != seq+1 {
		t.Fatalf("due journey: no record (seq %d)", out.Seq)
	}
	var r Record
	if err := DecodeRecord(out.Record, &r); err != nil {
		t.Fatal(err)
	}
	if r.Op != OpJourneyExpire || r.TID != "BUS1" || r.Merchant != "busco" || r.Tap.Capture != 600 {
		t.Fatalf("record %+v", r)
	}
	if s.ExpireBeforeTap(late, &in, &out) {
		t.Fatal("a second call closed the journey again")
	}
	s.Step(late, &in, &out)
	if err := DecodeRecord(out.Record, &r); err != nil {
		t.Fatal(err)
	}
	if out.Code != terminals.CodeApproved || r.Seq != seq+2 || r.Tap.PrevCapture != 0 || r.Tap.Charge != 200 || r.Merchant != "otherco" {
		t.Fatalf("tap after the expiry: %s %+v", out.Code, r)
	}
}
