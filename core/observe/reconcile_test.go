package observe_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/observe"
)

// TestReconcilerAfterARestore: after a restore that lost an event whose
// job was queued, reconciling moves that job out of reach, keeps the job
// of the event that survived, and starts a generation in which the event
// written after the restore, though it reuses the lost event's position,
// comes after it and is enqueued. Reconciling again does nothing.
func TestReconcilerAfterARestore(t *testing.T) {
	ctx := context.Background()
	log, q := coretest.NewEventLog(), &coretest.Queue{}
	r := &observe.Reconciler{History: log, Queue: q}
	if rec, err := r.Reconcile(ctx); err != nil || rec.Needed {
		t.Fatalf("before any restore: got %+v %v, want nothing needed", rec, err)
	}
	kept := log.Commit(coretest.Inserted("t1", "public.orders", 1))[0]
	lost := log.Commit(coretest.Inserted("t1", "public.orders", 2))[0]
	events, err := log.Read(ctx, core.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	jobOf := func(e core.ChangeEvent) core.Job {
		return core.Job{ID: observe.JobID(e, ordersRule.ID, 0), Tenant: e.Tenant, RuleID: ordersRule.ID, Action: ordersRule.Actions[0], Event: e}
	}
	// The dispatcher queued both events' jobs and stored a cursor past
	// the first; the restore goes back to just after it.
	if err := q.Enqueue(ctx, []core.Job{jobOf(events[0]), jobOf(events[1])}); err != nil {
		t.Fatal(err)
	}
	if err := log.Advance(ctx, "default", kept); err != nil {
		t.Fatal(err)
	}
	log.Restore(kept)
	reused := log.Commit(coretest.Inserted("t1", "public.orders", 3))[0]
	if reused.XID != lost.XID || reused.ID != lost.ID {
		t.Fatalf("the event after the restore is at %v, want the lost one's position %v", reused, lost)
	}

	rec, err := r.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Needed || rec.Generation != 1 || rec.Previous != 0 || rec.Kept != 1 || rec.Lost != 1 {
		t.Fatalf("got %+v, want generation 1 after 0, one job kept and one lost", rec)
	}
	gone := q.Lost("t1")
	if len(gone) != 1 || gone[0].Job.Event.Pos != lost || !strings.Contains(gone[0].Reason, "did not survive") {
		t.Fatalf("lost jobs: got %+v, want the lost event's job, with why", gone)
	}
	if n := backlog(t, q, "t1"); n != 1 {
		t.Fatalf("backlog %d, want the surviving event's job", n)
	}
	after, err := log.Read(ctx, kept, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].Pos.Generation != 1 || !lost.Less(after[0].Pos) {
		t.Fatalf("read after the cursor: got %+v, want the new event in generation 1, after the lost one", after)
	}
	if err := q.Enqueue(ctx, []core.Job{jobOf(after[0])}); err != nil {
		t.Fatal(err)
	}
	if n := backlog(t, q, "t1"); n != 2 {
		t.Fatalf("backlog %d, want the new event's job enqueued too", n)
	}
	if rec, err := r.Reconcile(ctx); err != nil || rec.Needed {
		t.Fatalf("again: got %+v %v, want nothing needed", rec, err)
	}
}
