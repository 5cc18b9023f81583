// Package admission decides whether the core takes on a request now, makes
// it wait, or refuses it: the backpressure a rate cannot express. A rate
// limit (envoyproxy/ratelimit at the gateway) bounds how often requests
// arrive; admission bounds how many run at once, globally and per tenant,
// queues a short burst for a bounded time instead of failing it, and
// refuses early when the heap nears the memory limit, so that overload
// slows the core down instead of collapsing it.
package admission

import (
	"context"
	"errors"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// Result is what Admit decided.
type Result string

// The results of an admission decision.
const (
	Admitted Result = "admitted" // ran at once
	Waited   Result = "waited"   // ran after waiting in the queue
	Refused  Result = "refused"
)

// Reason says why a request was refused.
type Reason string

// The reasons for a refusal. Tenant reasons mean the tenant is over its own
// share (HTTP 429, RATE_LIMITED); the others that the core as a whole is
// overloaded (HTTP 503, UNAVAILABLE).
const (
	ReasonQueueFull       Reason = "queue_full"
	ReasonTenantQueueFull Reason = "tenant_queue_full"
	ReasonTimeout         Reason = "queue_timeout"
	ReasonTenantTimeout   Reason = "tenant_queue_timeout"
	ReasonMemory          Reason = "memory"
	ReasonCanceled        Reason = "canceled"
)

// Decision is one admission decision, reported to Options.Observe (the
// metric hook) for every call of Admit.
type Decision struct {
	Result Result
	Reason Reason // set when Result is Refused
	Tenant string
	Wait   time.Duration // time spent in the queue
}

// Options configures a Controller. Zero values disable the bound they set.
type Options struct {
	// MaxConcurrent bounds the requests running at once across tenants.
	MaxConcurrent int
	// MaxPerTenant bounds the requests of one tenant running at once.
	MaxPerTenant int
	// MaxQueue bounds the requests waiting for a slot; zero refuses at once
	// when no slot is free.
	MaxQueue int
	// MaxQueuePerTenant bounds one tenant's waiting requests, so that one
	// tenant's burst cannot fill the whole queue.
	MaxQueuePerTenant int
	// QueueTimeout bounds how long a request waits before it is refused.
	QueueTimeout time.Duration
	// Congestion tells a burst from overload: a queue that has not been
	// empty for this long is a standing queue, which waiting cannot drain
	// (default QueueTimeout). While it stands, a released slot goes to the
	// newest waiter (last in, first out), so those admitted are those that
	// waited least, and waiters older than CongestedWait are refused: the
	// queue stops adding its depth to every admitted request's latency.
	// A burst that drains within Congestion is served first come, first
	// served, each waiter bounded by QueueTimeout alone. Zero, with no
	// QueueTimeout, keeps the queue first in, first out always.
	Congestion time.Duration
	// CongestedWait bounds a request's wait while the queue stands. The
	// default adapts: the smaller of DefaultCongestedWait and the time a
	// request has recently taken to run (a moving average), so that a
	// standing queue never makes a request wait longer than serving one
	// takes; and never more than QueueTimeout.
	CongestedWait time.Duration
	// Now reads the clock congestion is timed by (default time.Now); tests
	// inject it.
	Now func() time.Time
	// MemoryLimit is the heap budget in bytes; zero uses the runtime's soft
	// memory limit (GOMEMLIMIT) when one is set, and otherwise checks no
	// memory.
	MemoryLimit uint64
	// MemoryThreshold is the share of MemoryLimit above which new requests
	// are refused (default 0.8).
	MemoryThreshold float64
	// HeapInUse reports the heap in use, in bytes; the default reads the
	// runtime's live heap objects. Tests inject it to be exact.
	HeapInUse func() uint64
	// RetryAfter is the delay a refused client is told to wait (default 1s).
	RetryAfter time.Duration
	// Observe receives every decision, for metrics; it must not block.
	Observe func(Decision)
}

// DefaultCongestedWait is the wait a standing queue allows by default:
// CoDel's target delay, which is also what Facebook's request queues use
// (“Fail at scale”, ACM Queue 13(8), 2015). Under overload the queue only
// needs to hold enough requests to fill each slot as it frees; a waiter
// older than this would make its request slow, not the core faster.
const DefaultCongestedWait = 5 * time.Millisecond

// Refusal is the cause of an error Admit returns: why, and when to retry.
type Refusal struct {
	Reason     Reason
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return "admission refused: " + string(r.Reason) }

// RetryAfter returns the delay err (from Admit) tells the client to wait,
// and whether err is an admission refusal at all.
func RetryAfter(err error) (time.Duration, bool) {
	var r *Refusal
	if errors.As(err, &r) {
		return r.RetryAfter, true
	}
	return 0, false
}

// Controller admits requests; it is safe for concurrent use.
type Controller struct {
	o         Options
	threshold uint64 // heap bytes above which requests are refused; 0: none

	mu       sync.Mutex
	running  int
	byTenant map[string]int // running requests per tenant
	waiting  map[string]int // queued requests per tenant
	queue    []*waiter
	// adaptive: the standing queue's wait bound follows runTime.
	adaptive bool
	// runTime is the moving average of the time requests run, from
	// admission to release (zero until one has been released).
	runTime time.Duration
	// lastEmpty is the last moment the queue was empty (set as a waiter
	// joins an empty queue; read only while it is not empty).
	lastEmpty time.Time
}

type waiter struct {
	tenant  string
	since   time.Time // when it joined the queue
	ready   chan struct{}
	granted bool      // set under mu, before ready closes, when given a slot
	grantAt time.Time // when it was given the slot
	shed    bool      // set under mu, before ready closes, when refused for waiting too long in a standing queue
}

// New returns a Controller for o.
func New(o Options) *Controller {
	if o.MemoryThreshold <= 0 || o.MemoryThreshold > 1 {
		o.MemoryThreshold = 0.8
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Congestion <= 0 {
		o.Congestion = o.QueueTimeout
	}
	adaptive := o.CongestedWait <= 0
	if adaptive {
		o.CongestedWait = DefaultCongestedWait
	}
	if o.QueueTimeout > 0 && o.QueueTimeout < o.CongestedWait {
		o.CongestedWait = o.QueueTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HeapInUse == nil {
		o.HeapInUse = liveHeap
	}
	if o.MemoryLimit == 0 {
		if l := debug.SetMemoryLimit(-1); l > 0 && l < math.MaxInt64 {
			o.MemoryLimit = uint64(l)
		}
	}
	c := &Controller{o: o, adaptive: adaptive, byTenant: map[string]int{}, waiting: map[string]int{}}
	if o.MemoryLimit > 0 {
		c.threshold = uint64(float64(o.MemoryLimit) * o.MemoryThreshold)
	}
	return c
}

// liveHeap reads the bytes of live and not yet swept heap objects: what a
// request's allocations add to, cheaply and without stopping the world.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Stats is a snapshot of the controller's state.
type Stats struct {
	Running, Queued int
}

// Stats returns how many requests run and wait now.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Running: c.running, Queued: len(c.queue)}
}

// AdmitFunc is Admit for a request whose tenant is costly to learn (a
// signature to verify): when the core as a whole is full, running all it
// may and its queue at its bound, the request is refused (503, queue_full)
// without calling tenant, since no tenant could be admitted; refusing is
// then cheap, which is what keeps an overloaded core serving those it
// admits. Otherwise it calls tenant and is Admit.
func (c *Controller) AdmitFunc(ctx context.Context, tenant func() string) (release func(), err error) {
	if c.o.MaxConcurrent > 0 {
		c.mu.Lock()
		c.shedStale(c.o.Now())
		full := c.running >= c.o.MaxConcurrent && len(c.queue) >= c.o.MaxQueue
		c.mu.Unlock()
		if full {
			return nil, c.refuse("", ReasonQueueFull, 0)
		}
	}
	return c.Admit(ctx, tenant())
}

// Admit returns once the request of tenant ("" for a request with no
// tenant, which only the global bounds apply to) may run; the caller must
// call release when it has finished. A refused request gets an *core.Error
// whose cause is a *Refusal: CodeRateLimited when the tenant is over its
// own share, CodeUnavailable when the core is overloaded (queue full,
// queue timeout, memory pressure) or ctx ended while waiting.
func (c *Controller) Admit(ctx context.Context, tenant string) (release func(), err error) {
	if c.threshold > 0 && c.o.HeapInUse() > c.threshold {
		return nil, c.refuse(tenant, ReasonMemory, 0)
	}
	c.mu.Lock()
	if c.canRun(tenant) {
		c.take(tenant)
		c.mu.Unlock()
		c.observe(Decision{Result: Admitted, Tenant: tenant})
		return c.releaser(tenant, c.o.Now()), nil
	}
	now := c.o.Now()
	c.shedStale(now)
	tenantBound := c.tenantBound(tenant)
	if len(c.queue) >= c.o.MaxQueue {
		c.mu.Unlock()
		if tenantBound {
			return nil, c.refuse(tenant, ReasonTenantQueueFull, 0)
		}
		return nil, c.refuse(tenant, ReasonQueueFull, 0)
	}
	if c.o.MaxQueuePerTenant > 0 && c.waiting[tenant] >= c.o.MaxQueuePerTenant {
		c.mu.Unlock()
		return nil, c.refuse(tenant, ReasonTenantQueueFull, 0)
	}
	w := &waiter{tenant: tenant, since: now, ready: make(chan struct{})}
	if len(c.queue) == 0 {
		c.lastEmpty = now
	}
	c.queue = append(c.queue, w)
	c.waiting[tenant]++
	c.mu.Unlock()

	start := time.Now()
	var timeout <-chan time.Time
	if c.o.QueueTimeout > 0 {
		t := time.NewTimer(c.o.QueueTimeout)
		defer t.Stop()
		timeout = t.C
	}
	reason := ReasonTimeout
	select {
	case <-w.ready:
	case <-timeout:
	case <-ctx.Done():
		reason = ReasonCanceled
	}
	c.mu.Lock()
	if w.granted {
		// Given a slot, perhaps as the timer fired: take it rather than
		// waste it.
		c.mu.Unlock()
		c.observe(Decision{Result: Waited, Tenant: tenant, Wait: time.Since(start)})
		return c.releaser(tenant, w.grantAt), nil
	}
	if w.shed {
		reason = ReasonTimeout // shedStale dequeued it
	} else {
		c.dequeue(w)
	}
	if reason == ReasonTimeout && c.tenantBound(tenant) {
		reason = ReasonTenantTimeout
	}
	c.mu.Unlock()
	return nil, c.refuse(tenant, reason, time.Since(start))
}

// canRun reports whether a request of tenant fits now. Called with mu held.
func (c *Controller) canRun(tenant string) bool {
	return (c.o.MaxConcurrent <= 0 || c.running < c.o.MaxConcurrent) && !c.tenantBound(tenant)
}

// tenantBound reports whether tenant is at its own concurrency bound.
// Called with mu held.
func (c *Controller) tenantBound(tenant string) bool {
	return tenant != "" && c.o.MaxPerTenant > 0 && c.byTenant[tenant] >= c.o.MaxPerTenant
}

func (c *Controller) take(tenant string) {
	c.running++
	if tenant != "" {
		c.byTenant[tenant]++
	}
}

func (c *Controller) dequeue(w *waiter) {
	for i, q := range c.queue {
		if q == w {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			break
		}
	}
	if c.waiting[w.tenant]--; c.waiting[w.tenant] <= 0 {
		delete(c.waiting, w.tenant)
	}
}

// congested reports whether the queue has stood, never empty, for the
// Congestion interval. Called with mu held.
func (c *Controller) congested(now time.Time) bool {
	return len(c.queue) > 0 && c.o.Congestion > 0 && now.Sub(c.lastEmpty) >= c.o.Congestion
}

// shedStale refuses, while the queue stands, the waiters that have waited
// longer than CongestedWait (by default no longer than the recent run
// time): under overload they would only be admitted late, or time out
// later still, while they keep fresher requests out of a full queue.
// Called with mu held.
func (c *Controller) shedStale(now time.Time) {
	if c.o.CongestedWait <= 0 || !c.congested(now) {
		return
	}
	bound := c.o.CongestedWait
	if c.adaptive && c.runTime > 0 && c.runTime < bound {
		bound = c.runTime
	}
	// The queue is in arrival order: the stale waiters are at its head.
	for len(c.queue) > 0 && now.Sub(c.queue[0].since) > bound {
		w := c.queue[0]
		c.dequeue(w)
		w.shed = true
		close(w.ready)
	}
}

// releaser returns the function that gives the slot of the request
// admitted at the given time back, to the first waiter that fits (first
// come, first served among those whose tenant is not at its bound; newest
// first while the queue stands), and counts the request's run time.
// Calling it more than once is harmless.
func (c *Controller) releaser(tenant string, admitted time.Time) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			now := c.o.Now()
			// An average over about the last eight requests: recent enough
			// to follow a change of load, steady enough to ignore one slow
			// request.
			if d := now.Sub(admitted); c.runTime == 0 {
				c.runTime = max(d, 1)
			} else {
				c.runTime += (d - c.runTime) / 8
			}
			c.running--
			if tenant != "" {
				if c.byTenant[tenant]--; c.byTenant[tenant] <= 0 {
					delete(c.byTenant, tenant)
				}
			}
			c.shedStale(now)
			// A standing queue serves its newest waiter first; a burst, its
			// oldest.
			lifo := c.congested(now)
			for n := len(c.queue); n > 0 && len(c.queue) > 0; n-- {
				w := c.next(lifo)
				if w == nil {
					break
				}
				c.dequeue(w)
				c.take(w.tenant)
				w.granted, w.grantAt = true, now
				close(w.ready)
				if c.o.MaxConcurrent > 0 && c.running >= c.o.MaxConcurrent {
					break
				}
			}
		})
	}
}

// next returns the waiter a free slot goes to: the oldest (or, lifo, the
// newest) whose tenant is not at its bound; nil when none fits. Called
// with mu held.
func (c *Controller) next(lifo bool) *waiter {
	if lifo {
		for i := len(c.queue) - 1; i >= 0; i-- {
			if c.canRun(c.queue[i].tenant) {
				return c.queue[i]
			}
		}
		return nil
	}
	for _, w := range c.queue {
		if c.canRun(w.tenant) {
			return w
		}
	}
	return nil
}

func (c *Controller) refuse(tenant string, reason Reason, wait time.Duration) error {
	c.observe(Decision{Result: Refused, Reason: reason, Tenant: tenant, Wait: wait})
	code := core.CodeUnavailable
	msg := "server overloaded, retry later"
	switch reason {
	case ReasonTenantQueueFull, ReasonTenantTimeout:
		code, msg = core.CodeRateLimited, "too many concurrent requests for this tenant, retry later"
	case ReasonCanceled:
		msg = "request cancelled while waiting"
	}
	return &core.Error{Op: "admission.Admit", Code: code, Message: msg,
		Err: &Refusal{Reason: reason, RetryAfter: c.o.RetryAfter}}
}

func (c *Controller) observe(d Decision) {
	if c.o.Observe != nil {
		c.o.Observe(d)
	}
}
