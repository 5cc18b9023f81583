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
}

type waiter struct {
	tenant  string
	ready   chan struct{}
	granted bool // set under mu when the waiter was given a slot
}

// New returns a Controller for o.
func New(o Options) *Controller {
	if o.MemoryThreshold <= 0 || o.MemoryThreshold > 1 {
		o.MemoryThreshold = 0.8
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.HeapInUse == nil {
		o.HeapInUse = liveHeap
	}
	if o.MemoryLimit == 0 {
		if l := debug.SetMemoryLimit(-1); l > 0 && l < math.MaxInt64 {
			o.MemoryLimit = uint64(l)
		}
	}
	c := &Controller{o: o, byTenant: map[string]int{}, waiting: map[string]int{}}
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
		return c.releaser(tenant), nil
	}
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
	w := &waiter{tenant: tenant, ready: make(chan struct{})}
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
	var reason Reason
	select {
	case <-w.ready:
		c.observe(Decision{Result: Waited, Tenant: tenant, Wait: time.Since(start)})
		return c.releaser(tenant), nil
	case <-timeout:
		reason = ReasonTimeout
	case <-ctx.Done():
		reason = ReasonCanceled
	}
	c.mu.Lock()
	if w.granted {
		// Given a slot as the timer fired: take it rather than waste it.
		c.mu.Unlock()
		c.observe(Decision{Result: Waited, Tenant: tenant, Wait: time.Since(start)})
		return c.releaser(tenant), nil
	}
	c.dequeue(w)
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

// releaser returns the function that gives the request's slot back, to the
// first waiter that fits (first come, first served among those whose
// tenant is not at its bound). Calling it more than once is harmless.
func (c *Controller) releaser(tenant string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.running--
			if tenant != "" {
				if c.byTenant[tenant]--; c.byTenant[tenant] <= 0 {
					delete(c.byTenant, tenant)
				}
			}
			for i := 0; i < len(c.queue); {
				w := c.queue[i]
				if !c.canRun(w.tenant) {
					i++
					continue
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
