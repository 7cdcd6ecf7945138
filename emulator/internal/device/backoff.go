package device

import (
	"math/rand/v2"
	"time"
)

// fullJitter returns a random wait in [0, min(limit, base*2^attempt)).
// Full jitter (rather than plain exponential backoff) spreads a fleet that
// lost its broker at the same instant over the whole window, so the broker's
// restart is not met by a reconnect storm in lockstep.
func fullJitter(base, limit time.Duration, attempt int) time.Duration {
	if base <= 0 || limit <= 0 {
		return 0
	}
	ceil := limit
	// base<<attempt overflows for large attempts; stop doubling at the cap.
	if attempt < 62 {
		if d := base << uint(attempt); d > 0 && d < limit && d>>uint(attempt) == base {
			ceil = d
		}
	}
	return rand.N(ceil)
}

// sleepCtx waits d or until done is closed; it reports whether the full
// wait elapsed.
func sleepCtx(done <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
