package observe

import (
	"fmt"
	"time"
)

// Policy is what the dispatcher does when a tenant's queue grows past its
// memory bound.
type Policy string

// The policies. None loses an event: fail-fast parks jobs in the
// dead-letter stream (replayable), adaptive and queue-all keep them in
// PostgreSQL's outbox or in the queue.
const (
	// PolicyFailFast dead-letters jobs of a tenant whose queue is full,
	// with reason "backpressure", keeping every other tenant moving.
	PolicyFailFast Policy = "fail-fast"
	// PolicyQueueAll always enqueues, bounded only by Redis itself.
	PolicyQueueAll Policy = "queue-all"
	// PolicyAdaptive slows enqueuing down past the threshold and pauses
	// the dispatcher (events wait in the outbox) when the queue is full.
	PolicyAdaptive Policy = "adaptive"
)

// ParsePolicy checks a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyFailFast, PolicyQueueAll, PolicyAdaptive:
		return p, nil
	}
	return "", fmt.Errorf("backpressure policy: want fail-fast, queue-all or adaptive, got %q", s)
}

// Backpressure applies a policy to a tenant queue's estimated size.
type Backpressure struct {
	Policy Policy
	// MaxBytes bounds a tenant's queued jobs (their encoded size).
	MaxBytes int64
	// ThresholdPercent of MaxBytes is where adaptive starts slowing down.
	ThresholdPercent int
	// MaxDelay is adaptive's longest pause between batches below the bound.
	MaxDelay time.Duration
	// MaxPause bounds how long adaptive holds the dispatcher, every
	// tenant's events with it, for one tenant whose queue stays full (1 min
	// when zero; negative: no bound): past it that tenant's jobs are
	// dead-lettered (replayable) as fail-fast does, so a tenant whose
	// target is down cannot stop the others.
	MaxPause time.Duration
}

// maxPause returns MaxPause with its default; 0 means no bound.
func (b Backpressure) maxPause() time.Duration {
	switch {
	case b.MaxPause < 0:
		return 0
	case b.MaxPause == 0:
		return time.Minute
	}
	return b.MaxPause
}

// Verdict is what to do with a tenant's jobs now.
type Verdict int

// The verdicts.
const (
	Admit      Verdict = iota // enqueue
	Slow                      // enqueue after the returned delay
	Pause                     // do not enqueue; wait and ask again
	DeadLetter                // send the jobs to the dead-letter stream
)

// Decide returns the verdict for a queue holding queuedBytes.
func (b Backpressure) Decide(queuedBytes int64) (Verdict, time.Duration) {
	if b.MaxBytes <= 0 || b.Policy == PolicyQueueAll || b.Policy == "" {
		return Admit, 0
	}
	full := queuedBytes >= b.MaxBytes
	switch b.Policy {
	case PolicyFailFast:
		if full {
			return DeadLetter, 0
		}
	case PolicyAdaptive:
		if full {
			return Pause, b.maxDelay()
		}
		pct := b.ThresholdPercent
		if pct <= 0 || pct > 100 {
			pct = 80
		}
		threshold := b.MaxBytes * int64(pct) / 100
		if queuedBytes >= threshold && b.MaxBytes > threshold {
			frac := float64(queuedBytes-threshold) / float64(b.MaxBytes-threshold)
			return Slow, time.Duration(frac * float64(b.maxDelay()))
		}
	}
	return Admit, 0
}

func (b Backpressure) maxDelay() time.Duration {
	if b.MaxDelay <= 0 {
		return time.Second
	}
	return b.MaxDelay
}
