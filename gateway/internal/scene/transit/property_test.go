package transit

import (
	"math/rand/v2"
	"testing"
	"time"

	"scenepay/terminals"
)

// TestRandomJourneys drives one card through random online taps over a few
// weeks and checks, with a model kept outside the engine:
//   - the sum paid per transit day never exceeds the daily cap, nor per
//     transit week the weekly cap (journeys count on their boarding day);
//   - holds never go negative and the card's open hold equals the model's;
//   - a twin card that is encoded and decoded after every event ("restart")
//     gets byte-identical decisions and state.
func TestRandomJourneys(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		cfg := testConfig(t)
		cfg.DailyCap, cfg.WeeklyCap = 900, 3000
		cfg.TransferPayable = mustPercent("50")
		cfg.Routes = append(cfg.Routes, Route{ID: "B2", Kind: KindFlat, Fare: 350})
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(seed, 99))
		var live, twin Card
		live.Profile = Profile(r.IntN(int(profileCount)))
		twin.Profile = live.Profile
		paidDay := map[int32]int64{}
		paidWeek := map[int32]int64{}
		var held int64
		var jday, jweek int32
		at := time.Date(2026, 3, 2, 5, 0, 0, 0, shanghai)
		stops := []string{"S1", "S2", "S3", "S4"}
		routes := []string{"B1", "B2", "D1", "D1"}
		for step := 0; step < 3000; step++ {
			at = at.Add(time.Duration(r.IntN(200)) * time.Minute)
			tp := Tap{Kind: TapKind(1 + r.IntN(2)), Route: routes[r.IntN(len(routes))], Stop: stops[r.IntN(len(stops))], At: at}
			if r.IntN(8) == 0 {
				tp.Stop = live.Journey.Stop // same-stop tap-outs
				tp.At = at.Add(-time.Duration(r.IntN(200)) * time.Minute / 100)
			}
			var d, d2 Decision
			if r.IntN(10) == 0 {
				d, d2 = e.Expire(&live, at), e.Expire(&twin, at)
			} else {
				avail := int64(1 << 30)
				d, d2 = e.Tap(&live, &tp, avail), e.Tap(&twin, &tp, avail)
			}
			if d != d2 {
				t.Fatalf("seed %d step %d: restarted twin decided %v, live %v", seed, step, d2, d)
			}
			if d.Code != terminals.CodeApproved {
				continue
			}
			day, week := e.TransitDay(at)
			// the open journey's hold is captured on its boarding day
			for _, c := range []int64{d.PrevCapture, d.Capture} {
				paidDay[jday] += c
				paidWeek[jweek] += c
			}
			held -= d.PrevCapture + d.Capture + d.Release
			paidDay[day] += d.Charge
			paidWeek[week] += d.Charge
			if d.Hold > 0 || live.Open {
				jday, jweek = live.Journey.Day, live.Journey.Week
			}
			held += d.Hold
			if held < 0 || (live.Open && held != live.Journey.Held) || (!live.Open && held != 0) {
				t.Fatalf("seed %d step %d: model hold %d, card %+v", seed, step, held, live.Journey)
			}
			if paidDay[day] > cfg.DailyCap || paidDay[jday] > cfg.DailyCap || paidWeek[week] > cfg.WeeklyCap {
				t.Fatalf("seed %d step %d: cap exceeded: day %d week %d (%v)", seed, step, paidDay[day], paidWeek[week], d)
			}
			// restart the twin
			b := twin.AppendBinary(nil)
			if err := DecodeCard(b, &twin); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if string(twin.AppendBinary(nil)) != string(live.AppendBinary(nil)) {
				t.Fatalf("seed %d step %d: twin state differs", seed, step)
			}
		}
	}
}

// TestUploadOrderAndIdempotence: the same offline taps uploaded in any
// order, or split over batches with repeats, leave the same card state and
// the same total effect; a full re-upload is all duplicates.
func TestUploadOrderAndIdempotence(t *testing.T) {
	e, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	at := time.Date(2026, 3, 2, 6, 0, 0, 0, shanghai)
	var taps []Tap
	for i := 0; i < 40; i++ {
		at = at.Add(time.Duration(5+r.IntN(60)) * time.Minute)
		route, stop := "B1", ""
		kind := TapIn
		if i%3 != 0 {
			route, stop = "D1", []string{"S1", "S2", "S3", "S4"}[r.IntN(4)]
			kind = TapKind(1 + i%2)
		}
		taps = append(taps, Tap{Kind: kind, Route: route, Stop: stop, At: at, Reader: "RD" + string(rune('A'+i%3)), Seq: uint64(i)})
	}
	now := at.Add(time.Hour)
	total := func(ds []Decision) (sum [4]int64) {
		for _, d := range ds {
			sum[0] += d.Charge
			sum[1] += d.Capture + d.PrevCapture
			sum[2] += d.Hold - d.Release
			sum[3] += d.Debt
		}
		return sum
	}
	var a Card
	first := e.ProcessUpload(&a, append([]Tap(nil), taps...), 800, now, nil)
	want := total(first)
	for _, d := range e.ProcessUpload(&a, append([]Tap(nil), taps...), 0, now, nil) {
		if d.Reason != ReasonDuplicate {
			t.Fatalf("re-upload: %v", d)
		}
	}
	for trial := 0; trial < 10; trial++ {
		shuffled := append([]Tap(nil), taps...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var b Card
		got := total(e.ProcessUpload(&b, shuffled, 800, now, nil))
		if got != want || string(b.AppendBinary(nil)) != string(a.AppendBinary(nil)) {
			t.Fatalf("trial %d: shuffled upload gives %v, want %v", trial, got, want)
		}
	}
	if a.Debt == 0 {
		t.Fatal("test setup: expected the small balance to leave debt")
	}
}
