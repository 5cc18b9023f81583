package admission_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/admission"
)

// clock is a settable clock for congestion timing.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// queued starts a request of tenant that waits in c's queue, once the
// queue holds want requests, and returns what it gets: its id once
// admitted, or its error.
type outcome struct {
	id      int
	release func()
	err     error
}

func mustQueue(tb testing.TB, c *admission.Controller, id, want int, out chan<- outcome) {
	tb.Helper()
	go func() {
		release, err := c.Admit(context.Background(), "t")
		out <- outcome{id: id, release: release, err: err}
	}()
	waitQueued(tb, c, want)
}

func TestQueueOrderFollowsCongestion(t *testing.T) {
	tests := []struct {
		name string
		// stood is how long the queue has been non-empty when a slot frees.
		stood time.Duration
		want  []int // the waiters admitted, in order, as slots free one by one
	}{
		{name: "a burst is served first come, first served", stood: 500 * time.Millisecond, want: []int{1, 2, 3}},
		{name: "a standing queue serves its newest waiter first", stood: 2 * time.Second, want: []int{3, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{now: time.Unix(1000, 0)}
			c := admission.New(admission.Options{
				MaxConcurrent: 1, MaxQueue: 3, QueueTimeout: 10 * time.Second,
				Congestion: time.Second, CongestedWait: time.Hour, Now: clk.Now,
			})
			release := mustAdmit(t, c, "t")
			out := make(chan outcome, 3)
			for id := 1; id <= 3; id++ {
				mustQueue(t, c, id, id, out)
			}
			clk.advance(tt.stood)
			var got []int
			for range tt.want {
				release()
				o := <-out
				if o.err != nil {
					t.Fatalf("waiter %d: %v", o.id, o.err)
				}
				got = append(got, o.id)
				release = o.release
			}
			release()
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Fatalf("admitted in order %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestStandingQueueShedsStaleWaiters(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	rec := &recorder{}
	c := admission.New(admission.Options{
		MaxConcurrent: 1, MaxQueue: 2, QueueTimeout: 10 * time.Second,
		Congestion: time.Second, CongestedWait: 100 * time.Millisecond,
		RetryAfter: 2 * time.Second, Now: clk.Now, Observe: rec.observe,
	})
	release := mustAdmit(t, c, "")
	out := make(chan outcome, 3)
	mustQueue(t, c, 1, 1, out)
	mustQueue(t, c, 2, 2, out)

	// A full queue that has not stood for the Congestion interval refuses
	// the newcomer and keeps its waiters, however long they have waited.
	clk.advance(500 * time.Millisecond)
	_, err := c.Admit(context.Background(), "")
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonQueueFull)

	// Once it has stood that long, the waiters older than CongestedWait
	// are refused (a timeout, 503 with Retry-After) at the next decision,
	// making room for the newcomer.
	clk.advance(time.Second)
	start := time.Now()
	mustQueue(t, c, 3, 1, out)
	for i := 0; i < 2; i++ {
		o := <-out
		if o.id == 3 {
			t.Fatal("the fresh waiter was refused, want the stale ones")
		}
		wantRefusal(t, o.err, core.CodeUnavailable, admission.ReasonTimeout)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stale waiters refused after %v, want at once, not at QueueTimeout", d)
	}
	if n := rec.count(admission.Refused, admission.ReasonTimeout); n != 2 {
		t.Errorf("counted %d queue_timeout refusals, want 2", n)
	}

	// The fresh waiter gets the next slot.
	release()
	o := <-out
	if o.id != 3 || o.err != nil {
		t.Fatalf("got waiter %d (%v), want waiter 3 admitted", o.id, o.err)
	}
	o.release()
	if s := c.Stats(); s.Running != 0 || s.Queued != 0 {
		t.Fatalf("got %+v, want nothing running or queued", s)
	}
}

func TestAdmitFuncRefusesAFullCoreWithoutTheTenant(t *testing.T) {
	c := admission.New(admission.Options{
		MaxConcurrent: 1, MaxPerTenant: 1, MaxQueue: 1, QueueTimeout: 10 * time.Second, RetryAfter: 2 * time.Second,
	})
	asked := 0
	tenant := func() string { asked++; return "t" }

	release, err := c.AdmitFunc(context.Background(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	if asked != 1 {
		t.Fatalf("tenant asked %d times for a free core, want once", asked)
	}
	out := make(chan outcome, 1)
	mustQueue(t, c, 1, 1, out)

	// Running all it may, queue full: refused, and the tenant never asked.
	_, err = c.AdmitFunc(context.Background(), tenant)
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonQueueFull)
	if asked != 1 {
		t.Fatalf("tenant asked for a full core, want it refused without")
	}
	release()
	o := <-out
	if o.err != nil {
		t.Fatal(o.err)
	}
	o.release()
}

// TestCongestedCoreRefusesAtOnce shows the default under overload: a
// burst queues, but once requests have found the core full for the
// Congestion interval, one that finds no free slot is refused at once
// (overloaded, 503) however much room the queue has, without its tenant
// being asked; the waiters already queued are still served, newest first;
// and once a whole interval passes with no request finding the core
// full, requests queue again.
func TestCongestedCoreRefusesAtOnce(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	rec := &recorder{}
	c := admission.New(admission.Options{
		MaxConcurrent: 1, MaxQueue: 4, QueueTimeout: 10 * time.Second, RetryAfter: 2 * time.Second,
		Congestion: time.Second, Now: clk.Now, Observe: rec.observe,
	})
	release := mustAdmit(t, c, "t")
	out := make(chan outcome, 4)
	// A burst: the core has been full for less than the interval.
	mustQueue(t, c, 1, 1, out)
	clk.advance(600 * time.Millisecond)
	mustQueue(t, c, 2, 2, out)
	// Full, without a pause, for longer than the interval: overload.
	clk.advance(600 * time.Millisecond)
	start := time.Now()
	_, err := c.Admit(context.Background(), "t")
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonOverloaded)
	asked := false
	_, err = c.AdmitFunc(context.Background(), func() string { asked = true; return "t" })
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonOverloaded)
	if asked {
		t.Error("the tenant was asked for a request a congested core refuses anyway")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refused after %v, want at once", d)
	}
	if s := c.Stats(); s.Queued != 2 {
		t.Fatalf("got %d queued, want the burst's 2 still waiting", s.Queued)
	}
	if n := rec.count(admission.Refused, admission.ReasonOverloaded); n != 2 {
		t.Errorf("counted %d overloaded refusals, want 2", n)
	}
	// The queued waiters are served, newest first.
	for _, want := range []int{2, 1} {
		release()
		o := <-out
		if o.err != nil || o.id != want {
			t.Fatalf("got waiter %d (%v), want waiter %d admitted", o.id, o.err, want)
		}
		release = o.release
	}
	// Still full, and no pause yet: refused.
	clk.advance(900 * time.Millisecond)
	_, err = c.Admit(context.Background(), "t")
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonOverloaded)
	// A whole interval with no request finding it full: a burst again.
	clk.advance(1100 * time.Millisecond)
	mustQueue(t, c, 3, 1, out)
	release()
	if o := <-out; o.err != nil || o.id != 3 {
		t.Fatalf("got waiter %d (%v), want waiter 3 admitted after the overload passed", o.id, o.err)
	} else {
		o.release()
	}
	if s := c.Stats(); s.Running != 0 || s.Queued != 0 {
		t.Fatalf("got %+v, want nothing running or queued", s)
	}
}

// TestTenantOverItsShareDoesNotCongestTheCore: a tenant whose request waits
// only because the tenant is at its own bound says nothing of the core's
// load. However long it waits, another tenant that finds the core full
// for a moment queues (a burst), rather than being refused as if the core
// were overloaded.
func TestTenantOverItsShareDoesNotCongestTheCore(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	c := admission.New(admission.Options{
		MaxConcurrent: 2, MaxPerTenant: 1, MaxQueue: 10, QueueTimeout: time.Minute, RetryAfter: 2 * time.Second,
		Congestion: time.Second, Now: clk.Now,
	})
	releaseA := mustAdmit(t, c, "a")
	aOut := make(chan outcome, 1)
	go func() {
		release, err := c.Admit(context.Background(), "a") // waits for tenant a, not for the core
		aOut <- outcome{id: 1, release: release, err: err}
	}()
	waitQueued(t, c, 1)
	clk.advance(5 * time.Second)
	releaseB := mustAdmit(t, c, "b") // the core's last slot
	cOut := make(chan outcome, 1)
	go func() {
		release, err := c.Admit(context.Background(), "c")
		cOut <- outcome{id: 2, release: release, err: err}
	}()
	waitQueued(t, c, 2)
	releaseB()
	if o := <-cOut; o.err != nil {
		t.Fatalf("tenant c: got %v, want it queued and then admitted (tenant a's own wait is no overload)", o.err)
	} else {
		o.release()
	}
	releaseA()
	if o := <-aOut; o.err != nil {
		t.Fatalf("tenant a's waiter: %v", o.err)
	} else {
		o.release()
	}
}
