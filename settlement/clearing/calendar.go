package clearing

// Business days and cut-offs. A window is named by the business date it
// ends on: window D holds [cut-off of D-1, cut-off of D). With the default
// 23:00 cut-off a payment at 23:00:00 on March 1 belongs to window
// 2026-03-02, one at 22:59:59.999999 to 2026-03-01. Windows are
// contiguous, so every instant is in exactly one of them.

import (
	"time"
	_ "time/tzdata" // Asia/Shanghai without a system zoneinfo database

	"scenepay/settlement/store"
)

// DefaultCutOff is the time of day (Asia/Shanghai) at which a window ends.
const DefaultCutOff = 23 * time.Hour

// Shanghai is the business time zone.
var Shanghai = loadShanghai()

func loadShanghai() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		// Unreachable with time/tzdata embedded; China has kept UTC+8
		// without daylight saving since 1991.
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}

// Calendar maps instants to windows.
type Calendar struct {
	// CutOff is the time of day at which a window ends, in (0, 24h];
	// 24h means midnight (window D is then exactly calendar day D).
	CutOff time.Duration
}

func (c Calendar) cutOff() time.Duration {
	if c.CutOff <= 0 || c.CutOff > 24*time.Hour {
		return DefaultCutOff
	}
	return c.CutOff
}

// day returns the business date d (midnight in Shanghai) plus n days.
func day(y int, m time.Month, d, n int) time.Time {
	return time.Date(y, m, d+n, 0, 0, 0, 0, Shanghai)
}

// ForDate returns the window of business date d (its Y-M-D in Shanghai).
func (c Calendar) ForDate(d time.Time) store.Window {
	y, m, dd := d.In(Shanghai).Date()
	end := day(y, m, dd, 0).Add(c.cutOff())
	start := day(y, m, dd, -1).Add(c.cutOff())
	return store.Window{ID: day(y, m, dd, 0).Format(time.DateOnly), Start: start.UTC(), CutOff: end.UTC(), State: store.WindowOpen}
}

// Of returns the window that holds instant t.
func (c Calendar) Of(t time.Time) store.Window {
	l := t.In(Shanghai)
	y, m, d := l.Date()
	w := c.ForDate(day(y, m, d, 0))
	if !t.Before(w.CutOff) {
		w = c.ForDate(day(y, m, d, 1))
	}
	return w
}

// ByID returns the window named id (YYYY-MM-DD), or false.
func (c Calendar) ByID(id string) (store.Window, bool) {
	d, err := time.ParseInLocation(time.DateOnly, id, Shanghai)
	if err != nil || d.Format(time.DateOnly) != id {
		return store.Window{}, false
	}
	return c.ForDate(d), true
}

// Next returns the window after w.
func (c Calendar) Next(w store.Window) store.Window { return c.Of(w.CutOff) }

// Prev returns the window before w.
func (c Calendar) Prev(w store.Window) store.Window { return c.Of(w.Start.Add(-time.Microsecond)) }
