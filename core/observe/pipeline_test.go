package observe_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
)

// countingNotifier counts the messages it is sent, by idempotency key.
type countingNotifier struct {
	mu   sync.Mutex
	keys map[string]int
}

func (n *countingNotifier) Notify(_ context.Context, m core.Message) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.keys == nil {
		n.keys = map[string]int{}
	}
	n.keys[m.IdempotencyKey]++
	return nil
}

func (n *countingNotifier) delivered() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.keys)
}

// recordedMetrics is observe.Metrics in memory.
type recordedMetrics struct {
	mu                sync.Mutex
	jobs              map[string]int
	enqueued, logFail int
	degraded          []bool
}

func (m *recordedMetrics) JobRun(outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jobs == nil {
		m.jobs = map[string]int{}
	}
	m.jobs[outcome]++
}
func (m *recordedMetrics) DeliveryLogFailed() { m.mu.Lock(); m.logFail++; m.mu.Unlock() }
func (m *recordedMetrics) Enqueued(n int)     { m.mu.Lock(); m.enqueued += n; m.mu.Unlock() }
func (m *recordedMetrics) Degraded(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.degraded = append(m.degraded, on)
}

func (m *recordedMetrics) snapshot() (jobs map[string]int, enqueued int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := map[string]int{}
	for k, v := range m.jobs {
		j[k] = v
	}
	return j, m.enqueued
}

// pipelineFixture is a pipeline on the in-memory ports.
type pipelineFixture struct {
	events   *coretest.EventLog
	rules    *coretest.RuleStore
	queue    *coretest.Queue
	notifier *countingNotifier
	metrics  *recordedMetrics
	opts     observe.Options
}

func newPipelineFixture() *pipelineFixture {
	f := &pipelineFixture{events: coretest.NewEventLog(), rules: coretest.NewRuleStore(ordersRule),
		queue: &coretest.Queue{}, notifier: &countingNotifier{}, metrics: &recordedMetrics{}}
	f.opts = observe.Options{Events: f.events, History: f.events, Rules: f.rules, Queue: f.queue, QueueHistory: f.queue,
		Notifiers: map[string]core.Notifier{core.ActionWebhook: f.notifier}, Metrics: f.metrics,
		Block: 10 * time.Millisecond, ReconcileRetry: time.Millisecond}
	return f
}

// run runs a pipeline on f's options until the test ends, and checks
// that Run returns once its context ends.
func (f *pipelineFixture) run(t *testing.T) *observe.Pipeline {
	t.Helper()
	p, err := observe.NewPipeline(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil once its context ended", err)
		}
	})
	return p
}

// TestPipelineDeliversWhatItDispatches: events committed to the outbox
// reach their rule's target once each, and the pipeline reports what it
// did through its Metrics port.
func TestPipelineDeliversWhatItDispatches(t *testing.T) {
	f := newPipelineFixture()
	p := f.run(t)
	for i := range 3 {
		f.events.Commit(coretest.Inserted("t1", "public.orders", int64(i+1)))
	}
	await.Until(t, 10*time.Second, "three deliveries", func() bool { return f.notifier.delivered() == 3 })
	await.Until(t, 10*time.Second, "the queue drained", func() bool { return backlog(t, f.queue, "t1") == 0 })
	jobs, enqueued := f.metrics.snapshot()
	if enqueued != 3 || jobs[observe.OutcomeDelivered] != 3 {
		t.Errorf("metrics: got %d enqueued, %v runs; want 3 enqueued, 3 delivered", enqueued, jobs)
	}
	if p.Enqueued() != 3 || p.Stats().Delivered.Load() != 3 {
		t.Errorf("got Enqueued %d, Stats.Delivered %d; want 3 and 3", p.Enqueued(), p.Stats().Delivered.Load())
	}
}

// flakyHistory is an outbox history whose Generation fails until ok is
// set, counting the calls.
type flakyHistory struct {
	*coretest.EventLog
	ok    atomic.Bool
	calls atomic.Int64
}

func (h *flakyHistory) Generation(ctx context.Context) (core.Generation, error) {
	h.calls.Add(1)
	if !h.ok.Load() {
		return core.Generation{}, core.E("test.Generation", core.CodeUnavailable, errors.New("database unreachable"))
	}
	return h.EventLog.Generation(ctx)
}

// TestPipelineDeliversNothingBeforeReconciling: a job in the queue is not
// run until the queue is known to be reconciled with the outbox: after a
// restore, it may be the job of a change the database lost.
func TestPipelineDeliversNothingBeforeReconciling(t *testing.T) {
	f := newPipelineFixture()
	h := &flakyHistory{EventLog: f.events}
	f.opts.History = h
	if err := f.queue.Enqueue(context.Background(), []core.Job{{ID: "j1", Tenant: "t1",
		Action: core.Action{Kind: core.ActionWebhook, URL: "http://hooks.example/x"}}}); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	await.Until(t, 10*time.Second, "three attempts to reconcile", func() bool { return h.calls.Load() >= 3 })
	if n := f.notifier.delivered(); n != 0 {
		t.Fatalf("got %d deliveries before the queue was reconciled, want 0", n)
	}
	h.ok.Store(true)
	await.Until(t, 10*time.Second, "the job delivered once reconciled", func() bool { return f.notifier.delivered() == 1 })
}

// gate is a Leader that lets its dispatcher lead only once opened.
type gate struct {
	asked atomic.Int64
	open  chan struct{}
}

func (g *gate) Lead(ctx context.Context, _ string, fn func(context.Context) error) error {
	g.asked.Add(1)
	select {
	case <-g.open:
		return fn(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestPipelineDispatchesOnlyWhileLeading: a process that does not lead the
// cursor dispatches nothing (another process does), and starts to once it
// leads.
func TestPipelineDispatchesOnlyWhileLeading(t *testing.T) {
	f := newPipelineFixture()
	g := &gate{open: make(chan struct{})}
	f.opts.Leader = g
	p := f.run(t)
	f.events.Commit(coretest.Inserted("t1", "public.orders", 1))
	await.Until(t, 10*time.Second, "the pipeline to ask to lead", func() bool { return g.asked.Load() > 0 })
	if p.Enqueued() != 0 {
		t.Fatalf("enqueued %d jobs without leading, want 0", p.Enqueued())
	}
	close(g.open)
	await.Until(t, 10*time.Second, "the delivery once leading", func() bool { return f.notifier.delivered() == 1 })
}

// TestNewPipelineNamesMissingPorts: a pipeline missing a required port is
// refused, naming every missing one at once.
func TestNewPipelineNamesMissingPorts(t *testing.T) {
	f := newPipelineFixture()
	for _, tt := range []struct {
		name   string
		change func(*observe.Options)
		want   []string
	}{
		{"complete", func(*observe.Options) {}, nil},
		{"no events", func(o *observe.Options) { o.Events = nil }, []string{"Events"}},
		{"no queue, no notifier", func(o *observe.Options) { o.Queue, o.Notifiers = nil, nil }, []string{"Queue", "Notifiers"}},
		{"no rules", func(o *observe.Options) { o.Rules = nil }, []string{"Rules"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := f.opts
			tt.change(&o)
			_, err := observe.NewPipeline(o)
			if (err != nil) != (tt.want != nil) {
				t.Fatalf("got %v, want an error naming %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to name %s", err, w)
				}
			}
		})
	}
}

// fixedBacklog is an OutboxBacklog that answers what it is told.
type fixedBacklog struct {
	pending int64
	oldest  time.Time
	err     error
}

func (b fixedBacklog) Pending(context.Context, string) (int64, error) { return b.pending, b.err }
func (b fixedBacklog) OldestPending(context.Context, string) (time.Time, bool, error) {
	return b.oldest, !b.oldest.IsZero(), b.err
}

type pinger struct{ err error }

func (p pinger) Ping(context.Context) error { return p.err }

// TestPipelineBacklog: the gauges read at scrape time say unknown (-1)
// when they cannot be known, and the oldest event's age on the pipeline's
// clock.
func TestPipelineBacklog(t *testing.T) {
	clock := coretest.NewClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	down := errors.New("database down")
	for _, tt := range []struct {
		name    string
		backlog observe.OutboxBacklog
		health  observe.Pinger
		want    observe.Backlog
		up      bool
	}{
		{"no ports", nil, nil, observe.Backlog{Pending: -1, OldestAge: -time.Second}, false},
		{"unreachable", fixedBacklog{err: down}, pinger{down}, observe.Backlog{Pending: -1, OldestAge: -time.Second}, false},
		{"nothing waits", fixedBacklog{}, pinger{}, observe.Backlog{Pending: 0, OldestAge: 0}, true},
		{"waiting", fixedBacklog{pending: 7, oldest: clock.Now().Add(-30 * time.Second)}, pinger{},
			observe.Backlog{Pending: 7, OldestAge: 30 * time.Second}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newPipelineFixture()
			f.opts.Backlog, f.opts.QueueHealth, f.opts.Now = tt.backlog, tt.health, clock.Now
			p, err := observe.NewPipeline(f.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Backlog(context.Background()); got != tt.want {
				t.Errorf("Backlog: got %+v, want %+v", got, tt.want)
			}
			if got := p.QueueUp(context.Background()); got != tt.up {
				t.Errorf("QueueUp: got %v, want %v", got, tt.up)
			}
		})
	}
}

// flakyLeader fails its first Lead at once, as a lock whose database
// session broke does, and leads from then on.
type flakyLeader struct{ calls atomic.Int64 }

func (l *flakyLeader) Lead(ctx context.Context, _ string, fn func(context.Context) error) error {
	if l.calls.Add(1) == 1 {
		return errors.New("lock session lost")
	}
	return fn(ctx)
}

// TestPipelineLeadsAgainAfterLosingTheLead: a process whose lead ends
// stands in line again rather than stopping to dispatch for good.
func TestPipelineLeadsAgainAfterLosingTheLead(t *testing.T) {
	f := newPipelineFixture()
	l := &flakyLeader{}
	f.opts.Leader = l
	f.run(t)
	f.events.Commit(coretest.Inserted("t1", "public.orders", 1))
	await.Until(t, 10*time.Second, "the delivery after leading again", func() bool { return f.notifier.delivered() == 1 })
	if n := l.calls.Load(); n < 2 {
		t.Fatalf("Lead called %d times, want at least 2", n)
	}
}
