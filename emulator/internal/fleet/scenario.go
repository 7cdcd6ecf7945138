package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Scenarios: a day in the town as a rate profile. The shape gives the load
// as a fraction of the peak rate (Options.Rate) at each time of day; the
// mix says which scene the load goes to. Scenario time runs TimeScale times
// faster than the wall clock, so "morning rush" (three and a half hours)
// plays in 21 seconds at scale 600.

// Point is one corner of a piecewise linear shape: at time of day At the
// load is Level (0..1) of the peak.
type Point struct {
	At    time.Duration
	Level float64
}

// Scenario is a named rate profile.
type Scenario struct {
	Name  string
	Shape []Point    // ascending At; the scenario runs from the first to the last
	Mix   [3]float64 // weights of bus, stall, kiosk work
	// StallCodes: the stalls show merchant-presented codes (a static one
	// each, dynamic ones per sale) that the bank's wallet backend pays.
	StallCodes bool
}

func hm(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }

// Scenarios are the built-in profiles.
var Scenarios = map[string]Scenario{
	"morning-rush": {Name: "morning-rush", Mix: [3]float64{0.85, 0.10, 0.05},
		Shape: []Point{{hm(6, 0), 0.2}, {hm(7, 0), 0.7}, {hm(7, 30), 1}, {hm(8, 15), 1}, {hm(9, 0), 0.5}, {hm(9, 30), 0.3}}},
	"market-day": {Name: "market-day", Mix: [3]float64{0.15, 0.80, 0.05}, StallCodes: true,
		Shape: []Point{{hm(6, 0), 0.3}, {hm(8, 0), 1}, {hm(10, 30), 1}, {hm(12, 0), 0.4}, {hm(13, 0), 0.1}}},
	"hospital-morning": {Name: "hospital-morning", Mix: [3]float64{0.20, 0.10, 0.70},
		Shape: []Point{{hm(7, 30), 0.4}, {hm(8, 0), 1}, {hm(9, 30), 1}, {hm(11, 0), 0.5}, {hm(12, 0), 0.2}}},
	"town-day": {Name: "town-day", Mix: [3]float64{0.45, 0.35, 0.20}, StallCodes: true,
		Shape: []Point{{hm(5, 30), 0.1}, {hm(7, 30), 1}, {hm(9, 0), 0.6}, {hm(12, 0), 0.5},
			{hm(14, 0), 0.4}, {hm(17, 30), 1}, {hm(19, 0), 0.4}, {hm(21, 0), 0.1}}},
}

// ScenarioNames lists the known scenarios, "demo" first.
func ScenarioNames() string {
	names := make([]string, 0, len(Scenarios))
	for n := range Scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return "demo, " + strings.Join(names, ", ")
}

// LookupScenario returns the named scenario.
func LookupScenario(name string) (Scenario, error) {
	s, ok := Scenarios[name]
	if !ok {
		return Scenario{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownScenario, name, ScenarioNames())
	}
	return s, nil
}

// Start and End are the scenario's first and last time of day.
func (s Scenario) Start() time.Duration { return s.Shape[0].At }

// End is the scenario's last time of day.
func (s Scenario) End() time.Duration { return s.Shape[len(s.Shape)-1].At }

// Level is the load fraction at time of day t, linear between points and
// 0 outside the scenario.
func (s Scenario) Level(t time.Duration) float64 {
	if len(s.Shape) == 0 || t < s.Start() || t > s.End() {
		return 0
	}
	for i := 1; i < len(s.Shape); i++ {
		a, b := s.Shape[i-1], s.Shape[i]
		if t <= b.At {
			if b.At == a.At {
				return b.Level
			}
			f := float64(t-a.At) / float64(b.At-a.At)
			return a.Level + f*(b.Level-a.Level)
		}
	}
	return s.Shape[len(s.Shape)-1].Level
}

// Clock maps wall time since the start of the run to scenario time of day.
type Clock struct {
	Start time.Duration // time of day at wall 0
	Scale float64       // scenario seconds per wall second, >= 1
}

// At is the scenario time of day after wall elapsed.
func (c Clock) At(elapsed time.Duration) time.Duration {
	return c.Start + time.Duration(float64(elapsed)*c.Scale)
}

// WallLength is how long the scenario takes on the wall clock.
func (s Scenario) WallLength(scale float64) time.Duration {
	return time.Duration(float64(s.End()-s.Start()) / scale)
}
