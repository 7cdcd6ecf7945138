package market

import (
	"time"
	_ "time/tzdata" // Asia/Shanghai must load on hosts without a zoneinfo database.
)

// shanghai is the zone of the PBoC customer day.
var shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		// Unreachable with time/tzdata embedded; China has kept UTC+8
		// without daylight saving since 1991, so a fixed zone is exact.
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}()

// DayOf is the Asia/Shanghai calendar day of t as days since 1970-01-01.
func DayOf(t time.Time) int32 {
	y, m, d := t.In(shanghai).Date()
	return int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}
