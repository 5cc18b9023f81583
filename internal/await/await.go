// Package await waits, in tests, for a condition that no event announces.
// Tests prefer channels and injected clocks; this is for the rest (a row
// written by another process, a server that has no readiness hook), so that
// every such wait polls the same way and fails with a deadline, never sleeps a
// guessed time.
package await

import (
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 5 * time.Millisecond

// Until polls cond until it holds, failing tb (naming what was awaited) when d
// passes first.
func Until(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Within(d, cond) {
		tb.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Within polls cond until it holds or d passes and reports whether it held.
func Within(d time.Duration, cond func() bool) bool {
	return WithinEvery(d, Interval, cond)
}

// WithinEvery is Within polling every interval, for a condition that costs a
// request to a server.
func WithinEvery(d, interval time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}
