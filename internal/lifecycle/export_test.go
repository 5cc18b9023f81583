package lifecycle

import "time"

// SetClock makes Linger and Drain wait on the channels f returns instead
// of real time, until the test ends.
func SetClock(f func(time.Duration) <-chan time.Time) (restore func()) {
	prev := after
	after = f
	return func() { after = prev }
}
