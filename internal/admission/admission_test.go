package admission_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/await"
)

// recorder collects decisions, as the metric hook would count them.
type recorder struct {
	mu sync.Mutex
	ds []admission.Decision
}

func (r *recorder) observe(d admission.Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ds = append(r.ds, d)
}

func (r *recorder) count(res admission.Result, reason admission.Reason) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.ds {
		if d.Result == res && d.Reason == reason {
			n++
		}
	}
	return n
}

func mustAdmit(tb testing.TB, c *admission.Controller, tenant string) func() {
	tb.Helper()
	release, err := c.Admit(context.Background(), tenant)
	if err != nil {
		tb.Fatalf("Admit(%q): %v", tenant, err)
	}
	return release
}

// waitQueued waits until n requests wait in c's queue.
func waitQueued(tb testing.TB, c *admission.Controller, n int) {
	tb.Helper()
	if !await.Within(5*time.Second, func() bool { return c.Stats().Queued == n }) {
		tb.Fatalf("got %d queued, want %d", c.Stats().Queued, n)
	}
}

func wantRefusal(tb testing.TB, err error, code core.Code, reason admission.Reason) {
	tb.Helper()
	if got := core.ErrorCode(err); got != code {
		tb.Fatalf("got code %q (%v), want %q", got, err, code)
	}
	var r *admission.Refusal
	if !errors.As(err, &r) || r.Reason != reason {
		tb.Fatalf("got %v, want a refusal for %s", err, reason)
	}
	if d, ok := core.RetryAfter(err); !ok || d != 2*time.Second {
		tb.Fatalf("got Retry-After %v, %v, want 2s", d, ok)
	}
}

func TestBurstQueuesWithinBoundAndRefusesBeyond(t *testing.T) {
	rec := &recorder{}
	c := admission.New(admission.Options{
		MaxConcurrent: 2, MaxQueue: 3, QueueTimeout: 10 * time.Second,
		RetryAfter: 2 * time.Second, Observe: rec.observe,
	})
	r1, r2 := mustAdmit(t, c, "a"), mustAdmit(t, c, "b")

	// A burst of three more: they wait instead of failing.
	var admitted atomic.Int32
	var wg sync.WaitGroup
	releases := make(chan func(), 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := c.Admit(context.Background(), "c")
			if err != nil {
				t.Errorf("queued request: %v", err)
				return
			}
			admitted.Add(1)
			releases <- release
		}()
	}
	waitQueued(t, c, 3)

	// Beyond the queue's bound: refused at once, 503-class, with Retry-After.
	start := time.Now()
	_, err := c.Admit(context.Background(), "d")
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonQueueFull)
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v, want it at once", d)
	}

	// Each released slot goes to a waiter, first come first served.
	r1()
	r1() // a second call must not free a second slot
	got := <-releases
	if s := c.Stats(); s.Running != 2 || s.Queued != 2 {
		t.Fatalf("after one release: got %+v, want 2 running, 2 queued", s)
	}
	r2()
	got()
	wg.Wait()
	close(releases)
	for r := range releases {
		r()
	}
	if admitted.Load() != 3 {
		t.Fatalf("got %d of the burst admitted, want 3", admitted.Load())
	}
	if s := c.Stats(); s.Running != 0 || s.Queued != 0 {
		t.Errorf("at the end: got %+v, want nothing running or queued", s)
	}
	if n := rec.count(admission.Waited, ""); n != 3 {
		t.Errorf("got %d waited decisions, want 3", n)
	}
	if n := rec.count(admission.Admitted, ""); n != 2 {
		t.Errorf("got %d immediate admissions, want 2", n)
	}
	if n := rec.count(admission.Refused, admission.ReasonQueueFull); n != 1 {
		t.Errorf("got %d queue-full refusals, want 1", n)
	}
}

func TestQueueTimeout(t *testing.T) {
	rec := &recorder{}
	c := admission.New(admission.Options{MaxConcurrent: 1, MaxQueue: 1, QueueTimeout: 20 * time.Millisecond, RetryAfter: 2 * time.Second, Observe: rec.observe})
	defer mustAdmit(t, c, "a")()
	start := time.Now()
	_, err := c.Admit(context.Background(), "b")
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonTimeout)
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("refused after %v, want after the 20ms queue timeout", d)
	}
	if s := c.Stats(); s.Queued != 0 {
		t.Errorf("got %d queued after the timeout, want 0", s.Queued)
	}
}

func TestPerTenantBound(t *testing.T) {
	c := admission.New(admission.Options{MaxConcurrent: 3, MaxPerTenant: 1, MaxQueue: 5, MaxQueuePerTenant: 1, QueueTimeout: 10 * time.Second, RetryAfter: 2 * time.Second})
	ra := mustAdmit(t, c, "a")
	// a's second request waits for a's slot, though the core has room...
	waited := make(chan func())
	go func() {
		release, err := c.Admit(context.Background(), "a")
		if err != nil {
			t.Errorf("a's queued request: %v", err)
		}
		waited <- release
	}()
	waitQueued(t, c, 1)
	// ...its third is over the tenant's share of the queue: 429-class...
	_, err := c.Admit(context.Background(), "a")
	wantRefusal(t, err, core.CodeRateLimited, admission.ReasonTenantQueueFull)
	// ...while another tenant runs at once, past a's waiting request.
	rb := mustAdmit(t, c, "b")
	rb()
	ra()
	(<-waited)()
	// Requests with no tenant count only against the global bound.
	r1, r2 := mustAdmit(t, c, ""), mustAdmit(t, c, "")
	r1()
	r2()
}

func TestTenantTimeoutIsRateLimited(t *testing.T) {
	c := admission.New(admission.Options{MaxPerTenant: 1, MaxQueue: 1, QueueTimeout: 10 * time.Millisecond, RetryAfter: 2 * time.Second})
	defer mustAdmit(t, c, "a")()
	_, err := c.Admit(context.Background(), "a")
	wantRefusal(t, err, core.CodeRateLimited, admission.ReasonTenantTimeout)
}

func TestRefusedUnderMemoryPressure(t *testing.T) {
	var heap atomic.Uint64
	rec := &recorder{}
	c := admission.New(admission.Options{
		MemoryLimit: 1000, MemoryThreshold: 0.8, HeapInUse: heap.Load,
		RetryAfter: 2 * time.Second, Observe: rec.observe,
	})
	tests := []struct {
		name   string
		heap   uint64
		refuse bool
	}{
		{"well below", 100, false},
		{"at the threshold", 800, false},
		{"just above the threshold", 801, true},
		{"over the limit", 5000, true},
		{"pressure gone", 799, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			heap.Store(tt.heap)
			release, err := c.Admit(context.Background(), "a")
			if !tt.refuse {
				if err != nil {
					t.Fatalf("got %v, want admitted", err)
				}
				release()
				return
			}
			wantRefusal(t, err, core.CodeUnavailable, admission.ReasonMemory)
		})
	}
	if n := rec.count(admission.Refused, admission.ReasonMemory); n != 2 {
		t.Errorf("got %d memory refusals counted, want 2", n)
	}
}

// TestAdmitFuncRefusesUnderMemoryPressureWithoutTheTenant shows a memory
// refusal as cheap as a full core's: the tenant, a signature check, is
// not asked for, and the refusal is counted as Admit's would be.
func TestAdmitFuncRefusesUnderMemoryPressureWithoutTheTenant(t *testing.T) {
	var heap atomic.Uint64
	rec := &recorder{}
	c := admission.New(admission.Options{
		MaxConcurrent: 4, MaxQueue: 4, MemoryLimit: 1000, MemoryThreshold: 0.8, HeapInUse: heap.Load,
		RetryAfter: 2 * time.Second, Observe: rec.observe,
	})
	asked := 0
	tenant := func() string { asked++; return "a" }

	heap.Store(900)
	_, err := c.AdmitFunc(context.Background(), tenant)
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonMemory)
	if asked != 0 {
		t.Errorf("tenant asked %d times for a request refused for memory, want never", asked)
	}
	if n := rec.count(admission.Refused, admission.ReasonMemory); n != 1 {
		t.Errorf("got %d memory refusals counted, want 1", n)
	}

	heap.Store(100)
	release, err := c.AdmitFunc(context.Background(), tenant)
	if err != nil {
		t.Fatalf("got %v once the pressure is gone, want admitted", err)
	}
	release()
	if asked != 1 {
		t.Errorf("tenant asked %d times for an admitted request, want once", asked)
	}
}

func TestCanceledWhileWaiting(t *testing.T) {
	c := admission.New(admission.Options{MaxConcurrent: 1, MaxQueue: 1, QueueTimeout: time.Minute, RetryAfter: 2 * time.Second})
	defer mustAdmit(t, c, "a")()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitQueued(t, c, 1)
		cancel()
	}()
	_, err := c.Admit(ctx, "b")
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonCanceled)
	if s := c.Stats(); s.Queued != 0 {
		t.Errorf("got %d queued after cancel, want 0", s.Queued)
	}
}

func TestNoQueueRefusesAtOnce(t *testing.T) {
	c := admission.New(admission.Options{MaxConcurrent: 1, RetryAfter: 2 * time.Second})
	defer mustAdmit(t, c, "a")()
	_, err := c.Admit(context.Background(), "b")
	wantRefusal(t, err, core.CodeUnavailable, admission.ReasonQueueFull)
}
