package merchant

import "strconv"

// yuan renders fen as yuan with two decimals ("-12.05"), by integer
// arithmetic: money never passes through a float. math.MinInt64 is
// handled by working on the unsigned magnitude.
func yuan(fen int64) string {
	neg := fen < 0
	mag := uint64(fen)
	if neg {
		mag = -mag
	}
	b := make([]byte, 0, 24)
	if neg {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, mag/100, 10)
	b = append(b, '.')
	c := mag % 100
	b = append(b, byte('0'+c/10), byte('0'+c%10))
	return string(b)
}
