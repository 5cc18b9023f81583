package observe_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
)

// partialQueue's first Fetch hands out a delivery and fails: the
// consumer owns the job whatever the error says, as Redis's does when a
// later tenant's read fails after an earlier one's succeeded.
type partialQueue struct {
	mu      sync.Mutex
	fetches int
	done    chan string // receipts completed (acked, retried or dead-lettered)
}

func (q *partialQueue) Enqueue(context.Context, []core.Job) error { return nil }
func (q *partialQueue) Fetch(ctx context.Context, _ string, _ int, _ func(string) int, _ time.Duration) ([]core.Delivery, error) {
	q.mu.Lock()
	q.fetches++
	first := q.fetches == 1
	q.mu.Unlock()
	if first {
		d := core.Delivery{Receipt: "r1", Job: core.Job{ID: "j1", Tenant: "t", Action: core.Action{Kind: "carrier-pigeon"}}}
		return []core.Delivery{d}, errors.New("reading tenant u's stream: i/o timeout")
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
	return nil, nil
}
func (q *partialQueue) Ack(_ context.Context, d core.Delivery) error { q.done <- d.Receipt; return nil }
func (q *partialQueue) Retry(_ context.Context, d core.Delivery, _ core.Job, _ time.Time) error {
	q.done <- d.Receipt
	return nil
}
func (q *partialQueue) DeadLetter(_ context.Context, d core.Delivery, _ core.Job, _ string) error {
	q.done <- d.Receipt
	return nil
}
func (q *partialQueue) Backlog(context.Context, string) (int64, error) { return 0, nil }

// TestWorkerRunsDeliveriesFetchedWithAnError: jobs a fetch delivered before
// it failed are run at once, not left pending until another consumer
// reclaims them a minute later.
func TestWorkerRunsDeliveriesFetchedWithAnError(t *testing.T) {
	q := &partialQueue{done: make(chan string, 4)}
	w := &observe.Worker{Queue: q, Breakers: observe.NewBreakers(nil, nil), MaxAttempts: 3, Consumer: "c1", Block: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case r := <-q.done:
		if r != "r1" {
			t.Fatalf("completed %q, want r1", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the delivery fetched with an error was never run")
	}
}

// recQueue records what became of each delivery.
type recQueue struct {
	partialQueue
	mu       sync.Mutex
	retries  []time.Time
	dead     []string
	deadJobs []core.Job
}

func (q *recQueue) Retry(_ context.Context, _ core.Delivery, _ core.Job, at time.Time) error {
	q.mu.Lock()
	q.retries = append(q.retries, at)
	q.mu.Unlock()
	return nil
}

func (q *recQueue) DeadLetter(_ context.Context, _ core.Delivery, j core.Job, reason string) error {
	q.mu.Lock()
	q.dead = append(q.dead, reason)
	q.deadJobs = append(q.deadJobs, j)
	q.mu.Unlock()
	return nil
}

// refuseAll is a rate limiter over its limit for a second.
type refuseAll struct{}

func (refuseAll) Allow(context.Context, string, string) (bool, time.Duration, error) {
	return false, time.Second, nil
}

// TestWorkerDeferrals: a deferred job (rate limited here; an open breaker
// takes the same path) comes back at a spread of times, not all at once,
// and one deferred past MaxAge is dead-lettered instead of growing its
// tenant's queue for ever.
func TestWorkerDeferrals(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	q := &recQueue{}
	w := &observe.Worker{Queue: q, Limiter: refuseAll{}, MaxAge: time.Hour, Now: func() time.Time { return now },
		Notifiers: map[string]core.Notifier{core.ActionWebhook: nil}}
	job := func(age time.Duration) core.Delivery {
		return core.Delivery{Job: core.Job{ID: "j", Tenant: "t", EnqueuedAt: now.Add(-age),
			Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}}}
	}
	for range 200 {
		w.Process(context.Background(), job(time.Minute))
	}
	lo, hi := q.retries[0], q.retries[0]
	for _, at := range q.retries {
		if at.Before(now.Add(time.Second)) || at.After(now.Add(1500*time.Millisecond)) {
			t.Fatalf("deferred to %v, want between 1 s and 1.5 s from now", at.Sub(now))
		}
		if at.Before(lo) {
			lo = at
		}
		if at.After(hi) {
			hi = at
		}
	}
	if hi.Sub(lo) < 100*time.Millisecond {
		t.Errorf("200 deferrals spread over %v, want them spread out", hi.Sub(lo))
	}
	if len(q.dead) != 0 {
		t.Fatalf("young jobs dead-lettered: %v", q.dead)
	}
	w.Process(context.Background(), job(2*time.Hour))
	if len(q.dead) != 1 || !strings.Contains(q.dead[0], "max_job_age") {
		t.Fatalf("a job deferred two hours after it was enqueued: dead letters %v, want one naming max_job_age", q.dead)
	}
}

// oneJob hands out one delivery, then none.
type oneJob struct {
	partialQueue
	handed bool
}

func (q *oneJob) Fetch(ctx context.Context, _ string, _ int, _ func(string) int, _ time.Duration) ([]core.Delivery, error) {
	q.mu.Lock()
	first := !q.handed
	q.handed = true
	q.mu.Unlock()
	if first {
		return []core.Delivery{{Receipt: "r1", Job: core.Job{ID: "j1", Tenant: "t",
			Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}}}}, nil
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
	return nil, nil
}

// slowNotifier answers after a while, or gives up when its context ends.
type slowNotifier struct{ started chan struct{} }

func (n slowNotifier) Notify(ctx context.Context, _ core.Message) error {
	close(n.started)
	select {
	case <-time.After(300 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestWorkerDrainsOnShutdown: a delivery under way when the worker is told
// to stop finishes (and is acknowledged) within Drain, rather than being
// cut off, reclaimed a minute later and sent to its receiver twice.
func TestWorkerDrainsOnShutdown(t *testing.T) {
	for _, tt := range []struct {
		drain time.Duration
		acked bool
	}{{5 * time.Second, true}, {0, false}} {
		q := &oneJob{partialQueue: partialQueue{done: make(chan string, 1)}}
		n := slowNotifier{started: make(chan struct{})}
		w := &observe.Worker{Queue: q, Notifiers: map[string]core.Notifier{core.ActionWebhook: n}, Drain: tt.drain, Block: 10 * time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		<-n.started
		cancel()
		<-done // Run waits for its running jobs
		select {
		case r := <-q.done:
			if !tt.acked {
				t.Errorf("drain %v: %s completed, want it cut short and left pending", tt.drain, r)
			}
		default:
			if tt.acked {
				t.Errorf("drain %v: the delivery under way was cut short", tt.drain)
			}
		}
	}
}

// ctxKey marks the context Worker.Trace returns.
type ctxKey struct{}

// spanNotifier records whether the context it is called with is the one
// Worker.Trace returned, and answers with err.
type spanNotifier struct {
	err  error
	seen *[]any
}

func (n spanNotifier) Notify(ctx context.Context, _ core.Message) error {
	*n.seen = append(*n.seen, ctx.Value(ctxKey{}))
	return n.err
}

// TestWorkerRunsEachJobInItsSpan: each run of a job starts one span from
// the job's trace context, the notifier and the queue are called within
// it, and it ends with the run's outcome.
func TestWorkerRunsEachJobInItsSpan(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name        string
		notify      error
		kind        string
		wantOutcome string
		wantErr     bool
	}{
		{"delivered", nil, core.ActionWebhook, observe.OutcomeDelivered, false},
		{"retried", errors.New("503"), core.ActionWebhook, observe.OutcomeRetried, true},
		{"dead-lettered, permanent", &core.DeliveryError{Permanent: true, Err: errors.New("404")}, core.ActionWebhook, observe.OutcomeDeadLettered, true},
		{"dead-lettered, no notifier", nil, "carrier-pigeon", observe.OutcomeDeadLettered, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []any
			var started []string
			var ended []string
			var endErr error
			// Room for the one acknowledgement a delivered run sends.
			q := &recQueue{partialQueue: partialQueue{done: make(chan string, 1)}}
			w := &observe.Worker{Queue: q, MaxAttempts: 3,
				Notifiers: map[string]core.Notifier{core.ActionWebhook: spanNotifier{tc.notify, &seen}},
				Trace: func(ctx context.Context, j core.Job) (context.Context, func(string, error)) {
					started = append(started, j.TraceParent)
					return context.WithValue(ctx, ctxKey{}, "span"), func(o string, err error) { ended, endErr = append(ended, o), err }
				}}
			w.Process(context.Background(), core.Delivery{Receipt: "r1", Job: core.Job{ID: "j", Tenant: "t", TraceParent: tp,
				EnqueuedAt: time.Now(), Action: core.Action{Kind: tc.kind, URL: "http://hooks.example/x"}}})
			if len(started) != 1 || started[0] != tp {
				t.Fatalf("got spans started from %q, want one from %q", started, tp)
			}
			if len(ended) != 1 || ended[0] != tc.wantOutcome || (endErr != nil) != tc.wantErr {
				t.Fatalf("got spans ended %q with %v, want one %q (error %v)", ended, endErr, tc.wantOutcome, tc.wantErr)
			}
			for _, v := range seen {
				if v != "span" {
					t.Fatalf("the notifier ran outside the job's span")
				}
			}
		})
	}
}
