package observe

import (
	"sync"
	"time"
)

// BreakerState is a circuit breaker's state.
type BreakerState int

// The states: closed lets calls through and counts failures; open refuses
// them until its timeout passes; half-open lets probes through, closing
// again after enough successes and opening again on a failure.
const (
	BreakerClosed BreakerState = iota
	BreakerOpen
	BreakerHalfOpen
)

// String returns the state's name.
func (s BreakerState) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// BreakerSettings are the thresholds of one action kind's breakers.
type BreakerSettings struct {
	// FailureThreshold failures within Window open the breaker.
	FailureThreshold int
	Window           time.Duration
	// OpenTimeout is how long it stays open before probing.
	OpenTimeout time.Duration
	// SuccessThreshold successful probes close it again.
	SuccessThreshold int
}

func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.FailureThreshold <= 0 {
		s.FailureThreshold = 5
	}
	if s.Window <= 0 {
		s.Window = time.Minute
	}
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = 30 * time.Second
	}
	if s.SuccessThreshold <= 0 {
		s.SuccessThreshold = 1
	}
	return s
}

// Breaker is one target's circuit breaker. It is safe for concurrent use.
type Breaker struct {
	s   BreakerSettings
	now func() time.Time

	mu        sync.Mutex
	state     BreakerState
	failures  []time.Time // within the window, while closed
	openedAt  time.Time
	probing   bool // a half-open probe is running
	successes int  // successful probes while half-open
}

// NewBreaker returns a closed breaker; now is the clock (time.Now when nil).
func NewBreaker(s BreakerSettings, now func() time.Time) *Breaker {
	if now == nil {
		now = time.Now
	}
	return &Breaker{s: s.withDefaults(), now: now}
}

// State returns the state, moving from open to half-open when the timeout
// has passed.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tick()
	return b.state
}

func (b *Breaker) tick() {
	if b.state == BreakerOpen && !b.now().Before(b.openedAt.Add(b.s.OpenTimeout)) {
		b.state, b.probing, b.successes = BreakerHalfOpen, false, 0
	}
}

// Allow reports whether a call may go now; when not, how long until the
// breaker will let one through. In half-open, one probe runs at a time.
func (b *Breaker) Allow() (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tick()
	switch b.state {
	case BreakerOpen:
		return false, b.openedAt.Add(b.s.OpenTimeout).Sub(b.now())
	case BreakerHalfOpen:
		if b.probing {
			return false, b.s.OpenTimeout / 10
		}
		b.probing = true
	}
	return true, 0
}

// Success records a call that succeeded (or failed permanently: the target
// answered, so it is up).
func (b *Breaker) Success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerHalfOpen:
		b.probing = false
		b.successes++
		if b.successes >= b.s.SuccessThreshold {
			b.state, b.failures = BreakerClosed, b.failures[:0]
		}
	case BreakerClosed:
		b.failures = b.failures[:0]
	}
}

// Release gives back a call Allow let through that never reached the
// target (it could not be built): it counts as neither outcome.
func (b *Breaker) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerHalfOpen {
		b.probing = false
	}
}

// Failure records a call that failed transiently.
func (b *Breaker) Failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	switch b.state {
	case BreakerHalfOpen:
		b.state, b.openedAt, b.probing = BreakerOpen, now, false
	case BreakerClosed:
		keep := b.failures[:0]
		for _, t := range b.failures {
			if now.Sub(t) < b.s.Window {
				keep = append(keep, t)
			}
		}
		b.failures = append(keep, now)
		if len(b.failures) >= b.s.FailureThreshold {
			b.state, b.openedAt, b.failures = BreakerOpen, now, b.failures[:0]
		}
	}
}

// Breakers holds one breaker per tenant, action kind and target, with
// settings per kind.
type Breakers struct {
	settings map[string]BreakerSettings
	now      func() time.Time
	mu       sync.Mutex
	m        map[string]*Breaker
}

// NewBreakers returns an empty set; settings are per action kind.
func NewBreakers(settings map[string]BreakerSettings, now func() time.Time) *Breakers {
	return &Breakers{settings: settings, now: now, m: map[string]*Breaker{}}
}

// Get returns the breaker of tenant's target for kind, creating it closed.
// Breakers are per tenant too: one tenant's failures must not stop another
// tenant's deliveries to a shared host (every Slack webhook is on one).
func (bs *Breakers) Get(tenant, kind, target string) *Breaker {
	key := tenant + "\x00" + kind + "\x00" + target
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.m[key]
	if !ok {
		b = NewBreaker(bs.settings[kind], bs.now)
		bs.m[key] = b
	}
	return b
}
