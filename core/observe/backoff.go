package observe

import (
	"math/rand/v2"
	"time"
)

// MaxBackoff caps every retry delay.
const MaxBackoff = 5 * time.Minute

// Backoff computes retry delays: exponential with full jitter, a uniformly
// random delay in [0, min(Cap, Base·2^attempt)), which spreads the retries
// of many failing jobs instead of sending them back in waves.
type Backoff struct {
	Base time.Duration
	Cap  time.Duration // at most MaxBackoff; MaxBackoff when zero
	// Rand returns a uniform int64 in [0, n); math/rand/v2's when nil.
	// Tests inject their own to be exact.
	Rand func(n int64) int64
}

// Delay returns the delay before retry number attempt (0 for the first retry).
func (b Backoff) Delay(attempt int) time.Duration {
	limit := b.Ceiling(attempt)
	if limit <= 0 {
		return 0
	}
	r := b.Rand
	if r == nil {
		r = rand.Int64N
	}
	return time.Duration(r(int64(limit)))
}

// Ceiling returns the upper bound of the delay before retry number attempt.
func (b Backoff) Ceiling(attempt int) time.Duration {
	capd := b.Cap
	if capd <= 0 || capd > MaxBackoff {
		capd = MaxBackoff
	}
	base := b.Base
	if base <= 0 {
		base = time.Second
	}
	if attempt < 0 {
		attempt = 0
	}
	if attempt > 30 || base<<attempt <= 0 || base<<attempt > capd {
		return capd
	}
	return base << attempt
}
