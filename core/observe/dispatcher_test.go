package observe_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
)

// commit commits one insert into tenant's public.orders to log and
// returns its position.
func commit(log *coretest.EventLog, tenant string) core.Position {
	return log.Commit(coretest.Inserted(tenant, "public.orders", 1))[0]
}

// waitCursor waits until the dispatcher has passed the event at p.
func waitCursor(tb testing.TB, log *coretest.EventLog, p core.Position) {
	tb.Helper()
	await.Until(tb, 10*time.Second, "the dispatcher passing event "+p.String(), func() bool {
		c, err := log.Cursor(context.Background(), "default")
		return err == nil && !c.Less(p)
	})
}

// silentRules returns a rule store whose changes nobody is told of: as
// when the process was not leading, or its notification connection was
// lost.
func silentRules(rules ...core.Rule) *coretest.RuleStore {
	s := coretest.NewRuleStore(rules...)
	s.SetSilent(true)
	return s
}

// backlog returns how many jobs q holds of tenant.
func backlog(tb testing.TB, q core.JobQueue, tenant string) int64 {
	tb.Helper()
	n, err := q.Backlog(context.Background(), tenant)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// runPast runs d until it has passed the event at p, then stops it.
func runPast(tb testing.TB, d *observe.Dispatcher, log *coretest.EventLog, p core.Position) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitCursor(tb, log, p)
	cancel()
	<-done
}

var ordersRule = core.Rule{ID: "r1", Tenant: "t1", Name: "orders", Table: "public.orders", Enabled: true,
	Actions: []core.Action{{Kind: core.ActionWebhook, URL: "http://hooks.example/orders"}}}

// TestDispatcherReloadsRulesWhenItLeadsAgain: a dispatcher that stopped
// leading and leads again matches the rules as they are now, not as they
// were when it stopped.
func TestDispatcherReloadsRulesWhenItLeadsAgain(t *testing.T) {
	log, rules, q := coretest.NewEventLog(), silentRules(ordersRule), &coretest.Queue{}
	d := &observe.Dispatcher{Events: log, Rules: rules, Queue: q, RulesRefresh: time.Hour}
	runPast(t, d, log, commit(log, "t1"))
	if n := backlog(t, q, "t1"); n != 1 {
		t.Fatalf("got %d jobs for the first event, want 1", n)
	}
	rules.Delete(ordersRule.ID) // the rule is deleted while another process leads
	runPast(t, d, log, commit(log, "t1"))
	if n := backlog(t, q, "t1"); n != 1 {
		t.Fatalf("got %d jobs, want still 1: the disabled rule matched the second event", n)
	}
}

// TestDispatcherMatchesRulesCommittedBeforeTheEvent: a rule committed
// before a change must match it, although the notification that the
// rules changed has not reached the dispatcher (it comes on another
// connection, and may come after the change's event is read).
func TestDispatcherMatchesRulesCommittedBeforeTheEvent(t *testing.T) {
	log, rules, q := coretest.NewEventLog(), silentRules(), &coretest.Queue{}
	d := &observe.Dispatcher{Events: log, Rules: rules, Queue: q, RulesRefresh: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitCursor(t, log, commit(log, "t1"))
	rules.Put(ordersRule)
	waitCursor(t, log, commit(log, "t1"))
	if n := backlog(t, q, "t1"); n != 1 {
		t.Fatalf("got %d jobs, want 1: the event after the rule's commit was matched against the rules before it", n)
	}
}

// TestDispatcherRefreshesRulesUnasked: rules changed without a
// notification reach a running dispatcher within RulesRefresh.
func TestDispatcherRefreshesRulesUnasked(t *testing.T) {
	log, rules, q := coretest.NewEventLog(), silentRules(), &coretest.Queue{}
	d := &observe.Dispatcher{Events: log, Rules: rules, Queue: q, RulesRefresh: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// Running, with no rule: the first event matches nothing.
	waitCursor(t, log, commit(log, "t1"))
	rules.Put(ordersRule)
	// Each poll writes one more event; one written after the refresh matches.
	if !await.Within(10*time.Second, func() bool {
		if backlog(t, q, "t1") != 0 {
			return true
		}
		waitCursor(t, log, commit(log, "t1"))
		return false
	}) {
		t.Fatal("a rule added without a notification never matched")
	}
}

// fullTenant is a queue on which tenant t1's backlog never drains.
type fullTenant struct{ *coretest.Queue }

func (q fullTenant) Backlog(ctx context.Context, tenant string) (int64, error) {
	if tenant == "t1" {
		return 1 << 40, nil
	}
	return q.Queue.Backlog(ctx, tenant)
}

// runTwoTenants dispatches, under backpressure bp, one event of tenant t1
// (whose queue q says is full) and then one of t2, each matching a rule
// of its tenant, and stops once both are passed.
func runTwoTenants(tb testing.TB, q core.JobQueue, bp observe.Backpressure) {
	tb.Helper()
	r2 := ordersRule
	r2.ID, r2.Tenant = "r2", "t2"
	log := coretest.NewEventLog()
	d := &observe.Dispatcher{Events: log, Rules: silentRules(ordersRule, r2), Queue: q, RulesRefresh: time.Hour, Backpressure: bp}
	commit(log, "t1")
	runPast(tb, d, log, commit(log, "t2"))
}

// deadLetters returns q's dead letters of tenant.
func deadLetters(tb testing.TB, q *coretest.Queue, tenant string) []core.DeadLetter {
	tb.Helper()
	dls, err := q.DeadLetters(context.Background(), tenant, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return dls
}

// TestAdaptiveBackpressureHoldsOneTenantOnlySoLong: adaptive pauses the
// dispatcher for a tenant whose queue is full, but not past MaxPause:
// then that tenant's jobs are dead-lettered (replayable) and the other
// tenants' events flow again.
func TestAdaptiveBackpressureHoldsOneTenantOnlySoLong(t *testing.T) {
	q := &coretest.Queue{}
	runTwoTenants(t, fullTenant{q}, observe.Backpressure{Policy: observe.PolicyAdaptive, MaxBytes: 1, MaxDelay: 5 * time.Millisecond, MaxPause: 50 * time.Millisecond})
	if dls := deadLetters(t, q, "t1"); len(dls) != 1 {
		t.Errorf("dead-lettered %v, want t1's one job", dls)
	}
	if n1, n2 := backlog(t, q, "t1"), backlog(t, q, "t2"); n1 != 0 || n2 != 1 {
		t.Errorf("enqueued %d jobs of t1 and %d of t2, want t2's one job", n1, n2)
	}
}

// flakyFull is fullTenant whose first Enqueue fails.
type flakyFull struct {
	fullTenant
	failed atomic.Bool
}

func (q *flakyFull) Enqueue(ctx context.Context, jobs []core.Job) error {
	if q.failed.CompareAndSwap(false, true) {
		return core.Errorf(core.CodeUnavailable, "redis: i/o timeout")
	}
	return q.fullTenant.Enqueue(ctx, jobs)
}

// TestFailFastDeadLettersOnce: a batch whose enqueue fails is read and
// decided again; the jobs backpressure refused are dead-lettered once.
func TestFailFastDeadLettersOnce(t *testing.T) {
	q := &coretest.Queue{}
	runTwoTenants(t, &flakyFull{fullTenant: fullTenant{q}}, observe.Backpressure{Policy: observe.PolicyFailFast, MaxBytes: 1})
	dead, queued := len(deadLetters(t, q, "t1")), backlog(t, q, "t1")+backlog(t, q, "t2")
	if dead != 1 || queued != 1 {
		t.Errorf("dead-lettered %d and enqueued %d jobs, want 1 and 1 (the failed batch's refusal parked once)", dead, queued)
	}
}
