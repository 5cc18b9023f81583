package observe_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
)

// partialQueue's first Fetch hands out a delivery and fails: the
// consumer owns the job whatever the error says, as Redis's does when a
// later tenant's read fails after an earlier one's succeeded.
type partialQueue struct {
	*coretest.Queue
	failed atomic.Bool
}

func (q *partialQueue) Fetch(ctx context.Context, consumer string, max int, room func(string) int, block time.Duration) ([]core.Delivery, error) {
	if q.failed.CompareAndSwap(false, true) {
		ds, _ := q.Queue.Fetch(ctx, consumer, max, room, 0)
		return ds, errors.New("reading tenant u's stream: i/o timeout")
	}
	return q.Queue.Fetch(ctx, consumer, max, room, block)
}

// runWorker runs w until the test ends.
func runWorker(t *testing.T, w *observe.Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// TestWorkerRunsDeliveriesFetchedWithAnError: jobs a fetch delivered before
// it failed are run at once, not left pending until another consumer
// reclaims them a minute later.
func TestWorkerRunsDeliveriesFetchedWithAnError(t *testing.T) {
	q := &partialQueue{Queue: &coretest.Queue{}}
	// No notifier handles the kind: the job is dead-lettered when run.
	if err := q.Enqueue(context.Background(), []core.Job{{ID: "j1", Tenant: "t", Action: core.Action{Kind: "carrier-pigeon"}}}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, &observe.Worker{Queue: q, Breakers: observe.NewBreakers(nil, nil), MaxAttempts: 3, Consumer: "c1", Block: 10 * time.Millisecond})
	await.Until(t, 5*time.Second, "the delivery fetched with an error to be run", func() bool {
		return len(deadLetters(t, q.Queue, "t")) == 1
	})
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
	ctx := context.Background()
	clock := coretest.NewClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	now := clock.Now()
	q := &coretest.Queue{Now: clock.Now}
	w := &observe.Worker{Queue: q, Limiter: refuseAll{}, MaxAge: time.Hour, Now: clock.Now,
		Notifiers: map[string]core.Notifier{core.ActionWebhook: nil}}
	job := func(age time.Duration) core.Delivery {
		return core.Delivery{Job: core.Job{ID: "j", Tenant: "t", EnqueuedAt: now.Add(-age),
			Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}}}
	}
	for range 200 {
		w.Process(ctx, job(time.Minute))
	}
	if dls := deadLetters(t, q, "t"); len(dls) != 0 {
		t.Fatalf("young jobs dead-lettered: %v", dls)
	}
	// The limiter asked for a second: the jobs come back between 1 s and
	// 1.5 s from now, some in each half of that.
	back := 0
	for _, step := range []struct {
		at       time.Duration
		min, max int
	}{{999 * time.Millisecond, 0, 0}, {1250 * time.Millisecond, 1, 199}, {1500 * time.Millisecond, 200, 200}} {
		clock.Advance(now.Add(step.at).Sub(clock.Now()))
		ds, err := q.Fetch(ctx, "c", 1000, func(string) int { return 1000 }, 0)
		if err != nil {
			t.Fatal(err)
		}
		back += len(ds)
		if back < step.min || back > step.max {
			t.Fatalf("%v from now: %d of 200 deferred jobs due, want %d to %d", step.at, back, step.min, step.max)
		}
	}
	w.Process(ctx, job(2*time.Hour))
	if dls := deadLetters(t, q, "t"); len(dls) != 1 || !strings.Contains(dls[0].Reason, "max_job_age") {
		t.Fatalf("a job deferred two hours after it was enqueued: dead letters %v, want one naming max_job_age", dls)
	}
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
		name  string
		drain time.Duration
		acked bool
	}{{"drained", 5 * time.Second, true}, {"cut short", 0, false}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			// The queue's clock stands still: a delivery left pending is
			// never reclaimed, and a retry is due at once.
			q := &coretest.Queue{Now: coretest.NewClock(time.Now().Add(time.Hour)).Now}
			if err := q.Enqueue(ctx, []core.Job{{ID: "j1", Tenant: "t",
				Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}}}); err != nil {
				t.Fatal(err)
			}
			n := slowNotifier{started: make(chan struct{})}
			w := &observe.Worker{Queue: q, Notifiers: map[string]core.Notifier{core.ActionWebhook: n}, Drain: tt.drain, Block: 10 * time.Millisecond}
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- w.Run(wctx) }()
			<-n.started
			cancel()
			<-done // Run waits for its running jobs
			left := backlog(t, q, "t")
			if tt.acked && left != 0 {
				t.Fatalf("the delivery under way was cut short: backlog %d, want 0", left)
			}
			if !tt.acked {
				ds, _ := q.Fetch(ctx, "c2", 10, coretest.AnyRoom, 0)
				if left != 1 || len(ds) != 0 || len(deadLetters(t, q, "t")) != 0 {
					t.Fatalf("backlog %d, %d due, want the job left pending with the stopped worker", left, len(ds))
				}
			}
		})
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
			w := &observe.Worker{Queue: &coretest.Queue{}, MaxAttempts: 3,
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

// scriptedNotifier answers each call with the next of its errors.
type scriptedNotifier struct {
	errs []error
	n    int
}

func (s *scriptedNotifier) Notify(context.Context, core.Message) error {
	err := s.errs[s.n]
	s.n++
	return err
}

// brokenLog is a delivery log that cannot be reached.
type brokenLog struct{ core.DeliveryLog }

func (brokenLog) Record(context.Context, string, string, core.DeliveryAttempt) error {
	return &core.Error{Op: "test.Record", Code: core.CodeUnavailable, Message: "down"}
}

// TestWorkerRecordsDeliveries: every run that reaches an outcome goes to
// its rule's recent deliveries, newest first, with its attempt, the
// target's status and its error redacted of the target's secret URL; a
// log that cannot be written is counted and the delivery goes on.
func TestWorkerRecordsDeliveries(t *testing.T) {
	const secretURL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
	unavailable := &core.DeliveryError{Status: 503, Err: errors.New("POST " + secretURL + ": 503 Service Unavailable")}
	gone := &core.DeliveryError{Status: 410, Permanent: true, Err: errors.New("410 Gone")}
	type row struct {
		status     string
		attempt    int
		httpStatus int
	}
	for _, tc := range []struct {
		name   string
		answer []error
		want   []row // newest first
	}{
		{"delivered at once", []error{nil}, []row{{core.DeliveryDelivered, 1, 0}}},
		{"failed, retried, delivered", []error{unavailable, nil},
			[]row{{core.DeliveryDelivered, 2, 0}, {core.DeliveryFailed, 1, 503}}},
		{"failed until given up", []error{unavailable, unavailable},
			[]row{{core.DeliveryDead, 2, 503}, {core.DeliveryFailed, 1, 503}}},
		{"refused for good", []error{gone}, []row{{core.DeliveryDead, 1, 410}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clock := coretest.NewClock(time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC))
			q, log := &coretest.Queue{Now: clock.Now}, &coretest.DeliveryLog{}
			w := &observe.Worker{Queue: q, Deliveries: log, MaxAttempts: 2, Now: clock.Now,
				Notifiers: map[string]core.Notifier{core.ActionSlack: &scriptedNotifier{errs: tc.answer}}}
			if err := q.Enqueue(ctx, []core.Job{{ID: "j1", Tenant: "t", RuleID: "rule-1", RuleName: "posts to slack",
				EnqueuedAt: clock.Now(), Action: core.Action{Kind: core.ActionSlack, URL: secretURL}}}); err != nil {
				t.Fatal(err)
			}
			for range tc.answer {
				clock.Advance(time.Hour) // past any backoff
				ds, err := q.Fetch(ctx, "c", 1, coretest.AnyRoom, 0)
				if err != nil || len(ds) != 1 {
					t.Fatalf("fetch: %v %v, want the job", ds, err)
				}
				w.Process(ctx, ds[0])
			}
			got, err := log.Recent(ctx, "t", "rule-1", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %d attempts", got, len(tc.want))
			}
			for i, d := range got {
				w := tc.want[i]
				if d.Status != w.status || d.Attempt != w.attempt || d.HTTPStatus != w.httpStatus || d.JobID != "j1" || d.Kind != core.ActionSlack || d.At.IsZero() {
					t.Errorf("attempt %d: got %+v, want %+v", i, d, w)
				}
				if (d.Error == "") != (w.status == core.DeliveryDelivered) || strings.Contains(d.Error, "XXXXXXXX") {
					t.Errorf("attempt %d: error %q, want one only for a failure, without the secret URL", i, d.Error)
				}
			}
		})
	}
	t.Run("a log that cannot be written", func(t *testing.T) {
		q := &coretest.Queue{}
		w := &observe.Worker{Queue: q, Deliveries: brokenLog{},
			Notifiers: map[string]core.Notifier{core.ActionWebhook: &scriptedNotifier{errs: []error{nil}}}}
		w.Process(context.Background(), core.Delivery{Job: core.Job{ID: "j", Tenant: "t", RuleID: "r",
			Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}}})
		if w.Stats().Delivered.Load() != 1 || w.Stats().DeliveryLogFailures.Load() != 1 {
			t.Fatalf("delivered %d, log failures %d: want the delivery counted as delivered and the log's failure counted",
				w.Stats().Delivered.Load(), w.Stats().DeliveryLogFailures.Load())
		}
	})
}
