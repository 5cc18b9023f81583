// Package admission decides whether the core takes on a request now, makes
// it wait, or refuses it: the backpressure a rate cannot express. A rate
// limit (envoyproxy/ratelimit at the gateway) bounds how often requests
// arrive; admission bounds how many run at once, globally and per tenant,
// queues a short burst for a bounded time instead of failing it, and
// refuses early when the heap nears the memory limit, so that overload
// slows the core down instead of collapsing it.
//
// Every kind of work the core takes on goes through it, each a Class with
// limits of its own (GraphQL requests, Flight exports, observer
// deliveries): Build makes a process's controllers from one Config, all
// sharing one memory guard and one set of Metrics labelled by class. A
// Controller is the core.Admitter the capabilities take.
package admission

import (
	"context"
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
	// ReasonOverloaded: the core is congested (see Options.Congestion) and
	// had no free slot, so the request was refused rather than queued.
	ReasonOverloaded Reason = "overloaded"
	ReasonMemory     Reason = "memory"
	ReasonCanceled   Reason = "canceled"
)

// Decision is one admission decision, reported to Options.Observe (the
// metric hook) for every call of Admit.
type Decision struct {
	Class  Class // the controller's Options.Class
	Result Result
	Reason Reason // set when Result is Refused
	Tenant string
	Wait   time.Duration // time spent in the queue
}

// Options configures a Controller. Each field says what its zero means:
// most zeros disable the bound they set, but a zero MaxQueue is no queue
// at all.
type Options struct {
	// Class names the kind of work the controller admits; its decisions
	// carry it, so that metrics tell the classes apart.
	Class Class
	// MaxConcurrent bounds the requests running at once across tenants.
	MaxConcurrent int
	// MaxPerTenant bounds the requests of one tenant running at once.
	MaxPerTenant int
	// MaxQueue bounds the requests waiting for a slot; zero refuses at once
	// when no slot is free.
	MaxQueue int
	// MaxQueuePerTenant bounds one tenant's waiting requests, so that one
	// tenant's burst cannot fill the whole queue; zero leaves them bounded
	// by MaxQueue alone.
	MaxQueuePerTenant int
	// QueueTimeout bounds how long a request waits before it is refused;
	// zero lets it wait until a slot frees or its context ends.
	QueueTimeout time.Duration
	// Congestion tells a burst from overload (default QueueTimeout). The
	// core is congested once requests have found it full (every slot
	// running) for this long with no pause as long, or once its queue has
	// not been empty for this long; it stays congested until a whole
	// Congestion passes with no request finding it full. A burst that
	// ends sooner is queued and served first come, first served, each
	// waiter bounded by QueueTimeout alone. Overload is what waiting
	// cannot drain: while congested, a request that finds no free slot is
	// refused at once (ReasonOverloaded), unless CongestedWait lets it
	// wait, and a released slot goes to the newest waiter (last in, first
	// out), so those admitted are those that waited least. Zero, with no
	// QueueTimeout, never deems the core congested.
	Congestion time.Duration
	// CongestedWait is how long a request may wait while the core is
	// congested. Zero (the default) lets none: waiting only serves bursts,
	// and an admitted request's latency under overload is its run time
	// alone, which is what keeps it near the unloaded latency; the cost is
	// a slot left idle between one request's end and the next arrival,
	// small unless the core runs very few requests at once. A positive
	// bound trades latency for that throughput: waiters join the queue
	// while congested, and those that waited longer are refused at the
	// next decision (adaptive LIFO with a CoDel-style bound, as in
	// Facebook's "Fail at scale", ACM Queue 13(8), 2015; DefaultCongestedWait
	// is CoDel's target). Never more than QueueTimeout.
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
	// Memory, when set, is the memory guard, shared with the controllers
	// of the other classes (Build); MemoryLimit, MemoryThreshold and
	// HeapInUse are then ignored.
	Memory *Memory
	// RetryAfter is the delay a refused client is told to wait (default 1s).
	RetryAfter time.Duration
	// Observe receives every decision, for metrics; it must not block.
	Observe func(Decision)
}

// DefaultCongestedWait is a CongestedWait for a core that would rather
// keep its slots busy under overload than keep latency down: CoDel's
// target delay, which is also what Facebook's request queues use. Under
// overload the queue only needs to hold enough requests to fill each slot
// as it frees; a waiter older than this would make its request slow, not
// the core faster.
const DefaultCongestedWait = 5 * time.Millisecond

// Refusal is the cause of an error Admit returns: why, and when to retry.
type Refusal struct {
	Reason     Reason
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return "admission refused: " + string(r.Reason) }

// Controller admits requests; it is safe for concurrent use.
type Controller struct {
	o   Options
	mem *Memory

	mu       sync.Mutex
	running  int
	byTenant map[string]int // running requests per tenant
	waiting  map[string]int // queued requests per tenant
	queue    []*waiter
	// lastEmpty is the last moment no waiter waited for the core alone
	// (coreBlocked): how long the queue has stood counts from it.
	lastEmpty time.Time
	// blockedSince is when requests began to find the core full, with no
	// pause of Congestion since; lastBlocked is when one last did.
	blockedSince, lastBlocked time.Time
}

type waiter struct {
	tenant  string
	since   time.Time // when it joined the queue
	ready   chan struct{}
	granted bool // set under mu, before ready closes, when given a slot
	shed    bool // set under mu, before ready closes, when refused for waiting too long while congested
}

// New returns a Controller for o.
func New(o Options) *Controller {
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Congestion <= 0 {
		o.Congestion = o.QueueTimeout
	}
	if o.CongestedWait < 0 {
		o.CongestedWait = 0
	}
	if o.QueueTimeout > 0 && o.QueueTimeout < o.CongestedWait {
		o.CongestedWait = o.QueueTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	mem := o.Memory
	if mem == nil {
		mem = NewMemory(o.MemoryLimit, o.MemoryThreshold, o.HeapInUse)
	}
	return &Controller{o: o, mem: mem, byTenant: map[string]int{}, waiting: map[string]int{}}
}

// Memory is the memory guard: it refuses new work while the heap is above
// a share of the process's memory budget. The heap is the process's, so
// one guard serves every class: whichever kind of work filled it, none is
// taken on until it drains.
type Memory struct {
	threshold uint64 // heap bytes above which work is refused; 0: none
	heap      func() uint64
}

// NewMemory returns the guard for a heap budget of limit bytes (zero: the
// runtime's soft memory limit, GOMEMLIMIT, when one is set, and otherwise
// no guard), refusing above threshold of it (default 0.8); heap reports
// the heap in use (nil: the runtime's live heap objects).
func NewMemory(limit uint64, threshold float64, heap func() uint64) *Memory {
	if threshold <= 0 || threshold > 1 {
		threshold = 0.8
	}
	if heap == nil {
		heap = liveHeap
	}
	if limit == 0 {
		if l := debug.SetMemoryLimit(-1); l > 0 && l < math.MaxInt64 {
			limit = uint64(l)
		}
	}
	m := &Memory{heap: heap}
	if limit > 0 {
		m.threshold = uint64(float64(limit) * threshold)
	}
	return m
}

// Over reports whether the heap is above the threshold work is refused at.
func (m *Memory) Over() bool {
	return m.threshold > 0 && m.heap() > m.threshold
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
// may and its queue at its bound (503, queue_full) or congested with no
// wait allowed (503, overloaded), or when its heap is above the memory
// threshold (503, memory), the request is refused without calling
// tenant, since no tenant could be admitted; refusing is then cheap,
// which is what keeps an overloaded core serving those it admits. Such a
// refusal's Decision has no Tenant. Otherwise it calls tenant and is
// Admit.
func (c *Controller) AdmitFunc(ctx context.Context, tenant func() string) (release func(), err error) {
	if c.o.MaxConcurrent > 0 {
		c.mu.Lock()
		now := c.o.Now()
		reason := Reason("")
		if c.running >= c.o.MaxConcurrent {
			c.blocked(now)
			c.shedStale(now)
			switch {
			case c.failFast(now):
				reason = ReasonOverloaded
			case len(c.queue) >= c.o.MaxQueue:
				reason = ReasonQueueFull
			}
		}
		c.mu.Unlock()
		if reason != "" {
			return nil, c.refuse("", reason, 0)
		}
	}
	if c.overMemory() {
		return nil, c.refuse("", ReasonMemory, 0)
	}
	return c.admit(ctx, tenant())
}

// Admit returns once the request of tenant ("" for a request with no
// tenant, which only the global bounds apply to) may run; the caller must
// call release when it has finished. A refused request gets an *core.Error
// whose cause is a *Refusal: CodeRateLimited when the tenant is over its
// own share, CodeUnavailable when the core is overloaded (queue full,
// queue timeout, memory pressure) or ctx ended while waiting.
func (c *Controller) Admit(ctx context.Context, tenant string) (release func(), err error) {
	if c.overMemory() {
		return nil, c.refuse(tenant, ReasonMemory, 0)
	}
	return c.admit(ctx, tenant)
}

// overMemory reports whether the heap is above the threshold requests are
// refused at.
func (c *Controller) overMemory() bool { return c.mem.Over() }

// admit is Admit after its memory check, which AdmitFunc makes before it
// learns the tenant.
func (c *Controller) admit(ctx context.Context, tenant string) (release func(), err error) {
	c.mu.Lock()
	if c.canRun(tenant) {
		c.take(tenant)
		c.mu.Unlock()
		c.observe(Decision{Result: Admitted, Tenant: tenant})
		return c.releaser(tenant), nil
	}
	now := c.o.Now()
	tenantBound := c.tenantBound(tenant)
	if c.o.MaxConcurrent > 0 && c.running >= c.o.MaxConcurrent {
		c.blocked(now) // no free slot for anyone
	}
	c.shedStale(now)
	if c.failFast(now) {
		coreFull := c.o.MaxConcurrent > 0 && c.running >= c.o.MaxConcurrent
		c.mu.Unlock()
		if tenantBound && !coreFull {
			return nil, c.refuse(tenant, ReasonTenantQueueFull, 0)
		}
		return nil, c.refuse(tenant, ReasonOverloaded, 0)
	}
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
	if !c.coreBlocked() {
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
		return c.releaser(tenant), nil
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
	if !c.coreBlocked() {
		c.lastEmpty = c.o.Now()
	}
}

// coreBlocked reports whether some waiter waits for the core alone, its
// tenant being under its own bound. A waiter whose tenant is at its bound
// waits for its tenant: a tenant over its share is no sign that the core
// is overloaded, and must not make every other tenant's requests refused
// as if it were. Called with mu held.
func (c *Controller) coreBlocked() bool {
	// By tenant, not by waiter: a long queue is mostly a few tenants.
	for t, n := range c.waiting {
		if n > 0 && !c.tenantBound(t) {
			return true
		}
	}
	return false
}

// blocked records that a request found no free slot at now. Called with
// mu held.
func (c *Controller) blocked(now time.Time) {
	if c.blockedSince.IsZero() || now.Sub(c.lastBlocked) >= c.o.Congestion {
		c.blockedSince = now
	}
	c.lastBlocked = now
}

// congested reports whether the core is overloaded rather than in a
// burst: requests have found it full for the Congestion interval without
// a pause as long, or its queue has stood, never empty, that long.
// Called with mu held.
func (c *Controller) congested(now time.Time) bool {
	if c.o.Congestion <= 0 {
		return false
	}
	full := !c.blockedSince.IsZero() && now.Sub(c.lastBlocked) < c.o.Congestion && now.Sub(c.blockedSince) >= c.o.Congestion
	standing := now.Sub(c.lastEmpty) >= c.o.Congestion && c.coreBlocked()
	return full || standing
}

// failFast reports whether a request that finds no free slot now is to be
// refused at once rather than queued: the core is congested and no wait
// is allowed. Called with mu held.
func (c *Controller) failFast(now time.Time) bool {
	return c.o.CongestedWait <= 0 && c.congested(now)
}

// shedStale refuses, while the core is congested, the waiters that have
// waited longer than CongestedWait: under overload they would only be
// admitted late, or time out later still, while they keep fresher
// requests out of a full queue. With no CongestedWait the queue takes no
// new waiters while congested, and the ones it holds are served. Called
// with mu held.
func (c *Controller) shedStale(now time.Time) {
	if c.o.CongestedWait <= 0 || !c.congested(now) {
		return
	}
	bound := c.o.CongestedWait
	// The queue is in arrival order: the stale waiters are at its head.
	for len(c.queue) > 0 && now.Sub(c.queue[0].since) > bound {
		w := c.queue[0]
		c.dequeue(w)
		w.shed = true
		close(w.ready)
	}
}

// releaser returns the function that gives the slot of the request back,
// to the first waiter that fits (first come, first served among those
// whose tenant is not at its bound; newest first while congested).
// Calling it more than once is harmless.
func (c *Controller) releaser(tenant string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			now := c.o.Now()
			c.running--
			if tenant != "" {
				// Its waiters, if it was at its bound, now wait for the
				// core: their standing starts here, not when they queued.
				if !c.coreBlocked() {
					c.lastEmpty = now
				}
				if c.byTenant[tenant]--; c.byTenant[tenant] <= 0 {
					delete(c.byTenant, tenant)
				}
			}
			c.shedStale(now)
			// A congested core serves its newest waiter first; a burst, its
			// oldest.
			lifo := c.congested(now)
			for n := len(c.queue); n > 0 && len(c.queue) > 0; n-- {
				w := c.next(lifo)
				if w == nil {
					break
				}
				c.dequeue(w)
				c.take(w.tenant)
				w.granted = true
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
	return core.Errorf(code, "%s", msg).WithOp("admission.Admit").Wrap(&Refusal{Reason: reason, RetryAfter: c.o.RetryAfter})
}

func (c *Controller) observe(d Decision) {
	d.Class = c.o.Class
	if c.o.Observe != nil {
		c.o.Observe(d)
	}
}

// RetryDelay is the hint core.RetryAfter reads: the edges answer a
// refusal with it as Retry-After (HTTP) or RetryInfo (gRPC).
func (r *Refusal) RetryDelay() time.Duration { return r.RetryAfter }

// Admit satisfies the port Flight exports and observer deliveries are
// admitted through.
var _ core.Admitter = (*Controller)(nil)
