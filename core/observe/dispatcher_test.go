package observe_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
)

// memLog is an outbox in memory.
type memLog struct {
	mu     sync.Mutex
	events []core.ChangeEvent
	cursor core.Position
}

func (l *memLog) add(id int64) { l.addFor("t1", id) }

// addFor appends an insert into tenant's public.orders at position id.
func (l *memLog) addFor(tenant string, id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, core.ChangeEvent{Pos: core.Position{XID: 1, ID: id}, Tenant: tenant, Table: "public.orders",
		Op: core.OpInsert, Key: json.RawMessage(`{"id":1}`), Before: json.RawMessage("null"), After: json.RawMessage(`{"id":1}`)})
}

func (l *memLog) Read(_ context.Context, after core.Position, limit int) ([]core.ChangeEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []core.ChangeEvent
	for _, e := range l.events {
		if after.Less(e.Pos) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (l *memLog) Cursor(context.Context, string) (core.Position, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cursor, nil
}

func (l *memLog) Advance(_ context.Context, _ string, p core.Position) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cursor.Less(p) {
		l.cursor = p
	}
	return nil
}

func (l *memLog) Wait(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(min(d, 10*time.Millisecond)):
		return nil
	}
}

// waitCursor waits until the dispatcher has passed event id.
func (l *memLog) waitCursor(tb testing.TB, id int64) {
	tb.Helper()
	var c core.Position
	if !await.Within(10*time.Second, func() bool {
		l.mu.Lock()
		c = l.cursor
		l.mu.Unlock()
		return c.ID >= id
	}) {
		tb.Fatalf("the dispatcher did not pass event %d (cursor %+v)", id, c)
	}
}

// silentRules is a rule store whose changes nobody is told of: as when the
// process was not leading, or its notification connection was lost.
type silentRules struct {
	mu      sync.Mutex
	rules   []core.Rule
	version int64
}

func (s *silentRules) set(rs ...core.Rule) {
	s.mu.Lock()
	s.rules = rs
	s.version++
	s.mu.Unlock()
}

func (s *silentRules) RulesVersion(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

func (s *silentRules) EnabledRules(context.Context) ([]core.Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]core.Rule(nil), s.rules...), nil
}

func (s *silentRules) Changed(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

// jobSink is a queue that keeps what is enqueued.
type jobSink struct {
	partialQueue
	mu   sync.Mutex
	jobs []core.Job
}

func (q *jobSink) Enqueue(_ context.Context, jobs []core.Job) error {
	q.mu.Lock()
	q.jobs = append(q.jobs, jobs...)
	q.mu.Unlock()
	return nil
}

func (q *jobSink) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.jobs)
}

// runPast runs d until it has passed event id, then stops it.
func runPast(tb testing.TB, d *observe.Dispatcher, log *memLog, id int64) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	log.waitCursor(tb, id)
	cancel()
	<-done
}

var ordersRule = core.Rule{ID: "r1", Tenant: "t1", Name: "orders", Table: "public.orders", Enabled: true,
	Actions: []core.Action{{Kind: core.ActionWebhook, URL: "http://hooks.example/orders"}}}

// TestDispatcherReloadsRulesWhenItLeadsAgain: a dispatcher that stopped
// leading and leads again matches the rules as they are now, not as they
// were when it stopped.
func TestDispatcherReloadsRulesWhenItLeadsAgain(t *testing.T) {
	log, rules, q := &memLog{}, &silentRules{}, &jobSink{}
	rules.set(ordersRule)
	d := &observe.Dispatcher{Events: log, Rules: rules, Queue: q, RulesRefresh: time.Hour}
	run := func(event int64) { runPast(t, d, log, event) }
	log.add(1)
	run(1)
	if n := q.count(); n != 1 {
		t.Fatalf("got %d jobs for the first event, want 1", n)
	}
	rules.set() // the rule is disabled while another process leads
	log.add(2)
	run(2)
	if n := q.count(); n != 1 {
		t.Fatalf("got %d jobs, want still 1: the disabled rule matched the second event", n)
	}
}

// TestDispatcherMatchesRulesCommittedBeforeTheEvent: a rule committed
// before a change must match it, although the notification that the
// rules changed has not reached the dispatcher (it comes on another
// connection, and may come after the change's event is read).
func TestDispatcherMatchesRulesCommittedBeforeTheEvent(t *testing.T) {
	log, rules, q := &memLog{}, &silentRules{}, &jobSink{}
	d := &observe.Dispatcher{Events: log, Rules: rules, Queue: q, RulesRefresh: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	log.add(1)
	log.waitCursor(t, 1)
	rules.set(ordersRule)
	log.add(2)
	log.waitCursor(t, 2)
	if n := q.count(); n != 1 {
		t.Fatalf("got %d jobs, want 1: the event after the rule's commit was matched against the rules before it", n)
	}
}

// TestDispatcherRefreshesRulesUnasked: rules changed without a
// notification reach a running dispatcher within RulesRefresh.
func TestDispatcherRefreshesRulesUnasked(t *testing.T) {
	log, rules, q := &memLog{}, &silentRules{}, &jobSink{}
	d := &observe.Dispatcher{Events: log, Rules: rules, Queue: q, RulesRefresh: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// Running, with no rule: the first event matches nothing.
	log.add(1)
	log.waitCursor(t, 1)
	rules.set(ordersRule)
	// Each poll writes one more event; one written after the refresh matches.
	id := int64(1)
	if !await.Within(10*time.Second, func() bool {
		if q.count() != 0 {
			return true
		}
		id++
		log.add(id)
		log.waitCursor(t, id)
		return false
	}) {
		t.Fatal("a rule added without a notification never matched")
	}
}

// fullTenant is a queue on which tenant t1's backlog never drains.
type fullTenant struct {
	jobSink
	dead []core.Job
}

func (q *fullTenant) Backlog(_ context.Context, tenant string) (int64, error) {
	if tenant == "t1" {
		return 1 << 40, nil
	}
	return 0, nil
}

func (q *fullTenant) DeadLetter(_ context.Context, _ core.Delivery, j core.Job, _ string) error {
	q.mu.Lock()
	q.dead = append(q.dead, j)
	q.mu.Unlock()
	return nil
}

// runTwoTenants dispatches, under backpressure bp, one event of tenant t1
// (whose queue q says is full) and then one of t2, each matching a rule
// of its tenant, and stops once both are passed.
func runTwoTenants(tb testing.TB, q core.JobQueue, bp observe.Backpressure) {
	tb.Helper()
	log, rules := &memLog{}, &silentRules{}
	r2 := ordersRule
	r2.ID, r2.Tenant = "r2", "t2"
	rules.set(ordersRule, r2)
	d := &observe.Dispatcher{Events: log, Rules: rules, Queue: q, RulesRefresh: time.Hour, Backpressure: bp}
	log.add(1)
	log.addFor("t2", 2)
	runPast(tb, d, log, 2)
}

// TestAdaptiveBackpressureHoldsOneTenantOnlySoLong: adaptive pauses the
// dispatcher for a tenant whose queue is full, but not past MaxPause:
// then that tenant's jobs are dead-lettered (replayable) and the other
// tenants' events flow again.
func TestAdaptiveBackpressureHoldsOneTenantOnlySoLong(t *testing.T) {
	q := &fullTenant{}
	runTwoTenants(t, q, observe.Backpressure{Policy: observe.PolicyAdaptive, MaxBytes: 1, MaxDelay: 5 * time.Millisecond, MaxPause: 50 * time.Millisecond})
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.dead) != 1 || q.dead[0].Tenant != "t1" {
		t.Errorf("dead-lettered %v, want t1's one job", q.dead)
	}
	if len(q.jobs) != 1 || q.jobs[0].Tenant != "t2" {
		t.Errorf("enqueued %v, want t2's one job", q.jobs)
	}
}

// flakyFull is fullTenant whose first Enqueue fails.
type flakyFull struct {
	fullTenant
	failed bool
}

func (q *flakyFull) Enqueue(ctx context.Context, jobs []core.Job) error {
	q.mu.Lock()
	first := !q.failed
	q.failed = true
	q.mu.Unlock()
	if first {
		return core.Errorf(core.CodeUnavailable, "redis: i/o timeout")
	}
	return q.fullTenant.Enqueue(ctx, jobs)
}

// TestFailFastDeadLettersOnce: a batch whose enqueue fails is read and
// decided again; the jobs backpressure refused are dead-lettered once.
func TestFailFastDeadLettersOnce(t *testing.T) {
	q := &flakyFull{}
	runTwoTenants(t, q, observe.Backpressure{Policy: observe.PolicyFailFast, MaxBytes: 1})
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.dead) != 1 || len(q.jobs) != 1 {
		t.Errorf("dead-lettered %d and enqueued %d jobs, want 1 and 1 (the failed batch's refusal parked once)", len(q.dead), len(q.jobs))
	}
}
