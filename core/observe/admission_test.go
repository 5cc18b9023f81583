package observe_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
)

// refusal is an admission refusal carrying a Retry-After hint, as the
// process's admission controller's are.
type refusal struct{ after time.Duration }

func (r refusal) Error() string             { return "over the tenant's share" }
func (r refusal) RetryDelay() time.Duration { return r.after }

// admitter is a core.Admitter that admits while refuse is nil and records
// who it admitted and released.
type admitter struct {
	refuse  error
	mu      sync.Mutex
	admits  []string
	holding map[string]int
	most    int
}

func (a *admitter) Admit(_ context.Context, tenant string) (func(), error) {
	if a.refuse != nil {
		return nil, a.refuse
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.holding == nil {
		a.holding = map[string]int{}
	}
	a.admits = append(a.admits, tenant)
	a.holding[tenant]++
	a.most = max(a.most, a.holding[tenant])
	return func() {
		a.mu.Lock()
		a.holding[tenant]--
		a.mu.Unlock()
	}, nil
}

// TestWorkerAdmitsEachDelivery: with an Admitter, each delivery is admitted
// for its tenant and released when it ends; a refusal defers the job for
// the delay the refusal asks (1 s when it says none), using no attempt;
// without one, the worker runs as it did.
func TestWorkerAdmitsEachDelivery(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name       string
		admitter   *admitter
		wantStatus string        // observe.Outcome*
		wantAfter  time.Duration // earliest the deferred job is due again
	}{
		{"no admitter", nil, observe.OutcomeDelivered, 0},
		{"admitted", &admitter{}, observe.OutcomeDelivered, 0},
		{"refused with a hint", &admitter{refuse: core.E("admission", core.CodeRateLimited, refusal{after: 4 * time.Second})},
			observe.OutcomeDeferred, 4 * time.Second},
		{"refused without one", &admitter{refuse: core.Errorf(core.CodeUnavailable, "overloaded")},
			observe.OutcomeDeferred, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := coretest.NewClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
			q := &coretest.Queue{Now: clock.Now}
			n := &countingNotifier{}
			m := &recordedMetrics{}
			w := &observe.Worker{Queue: q, Notifiers: map[string]core.Notifier{core.ActionWebhook: n}, Now: clock.Now, Metrics: m}
			if tt.admitter != nil {
				w.Admitter = tt.admitter
			}
			if err := q.Enqueue(ctx, []core.Job{{ID: "j1", Tenant: "t", EnqueuedAt: clock.Now(),
				Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}}}); err != nil {
				t.Fatal(err)
			}
			ds, err := q.Fetch(ctx, "c", 1, coretest.AnyRoom, 0)
			if err != nil || len(ds) != 1 {
				t.Fatalf("fetch: %v, %v", ds, err)
			}
			w.Process(ctx, ds[0])
			if jobs, _ := m.snapshot(); jobs[tt.wantStatus] != 1 {
				t.Fatalf("got outcomes %v, want one %s", jobs, tt.wantStatus)
			}
			if tt.admitter != nil && tt.admitter.refuse == nil {
				if len(tt.admitter.admits) != 1 || tt.admitter.holding["t"] != 0 {
					t.Errorf("admitted %v, still holding %v; want tenant t admitted once and released", tt.admitter.admits, tt.admitter.holding)
				}
			}
			if tt.wantStatus != observe.OutcomeDeferred {
				return
			}
			if n.delivered() != 0 {
				t.Fatalf("a refused delivery reached its target")
			}
			clock.Advance(tt.wantAfter - time.Millisecond)
			if ds, _ := q.Fetch(ctx, "c", 1, coretest.AnyRoom, 0); len(ds) != 0 {
				t.Fatalf("the deferred job was due again before %v", tt.wantAfter)
			}
			clock.Advance(tt.wantAfter) // past the jitter (at most half the delay)
			ds, _ = q.Fetch(ctx, "c", 1, coretest.AnyRoom, 0)
			if len(ds) != 1 {
				t.Fatalf("the deferred job was not due again after %v", 2*tt.wantAfter)
			}
			if ds[0].Job.Attempt != 0 {
				t.Errorf("got attempt %d after a refusal, want 0: admission uses no attempt", ds[0].Job.Attempt)
			}
			if dls := deadLetters(t, q, "t"); len(dls) != 0 {
				t.Errorf("dead letters %v, want none", dls)
			}
		})
	}
}

// TestWorkerAdmitterSeesEveryTenant: a running worker asks its Admitter for
// every delivery, with the delivery's tenant, and releases each.
func TestWorkerAdmitterSeesEveryTenant(t *testing.T) {
	q := &coretest.Queue{}
	var jobs []core.Job
	for i, tenant := range []string{"a", "b", "a", "c", "b", "a"} {
		jobs = append(jobs, core.Job{ID: "j" + string(rune('0'+i)), Tenant: tenant,
			Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}})
	}
	if err := q.Enqueue(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	a := &admitter{}
	n := &countingNotifier{}
	runWorker(t, &observe.Worker{Queue: q, Notifiers: map[string]core.Notifier{core.ActionWebhook: n},
		Admitter: a, Block: 10 * time.Millisecond})
	await.Until(t, 10*time.Second, "six deliveries", func() bool { return n.delivered() == 6 })
	await.Until(t, 10*time.Second, "every admission released", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, h := range a.holding {
			if h != 0 {
				return false
			}
		}
		return true
	})
	a.mu.Lock()
	got := strings.Join(slices.Sorted(slices.Values(a.admits)), "")
	a.mu.Unlock()
	if got != "aaabbc" {
		t.Errorf("admitted tenants %q, want aaabbc: one admission per delivery", got)
	}
}
