package observe

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/fraise-dev/fraise/core"
)

// Reconciler brings the job queue in line with the outbox after the
// database was restored to an earlier point in time, or failed over to a
// replica that had not received every transaction (docs/operations.md,
// Restore).
//
// The queue (Redis) lives on through such an event, and it is ahead of the
// database: it holds jobs of events whose changes the database no longer
// has, and each tenant's enqueue marker names the last outbox position it
// took, possibly a lost one. The database, for its part, hands the lost
// transactions' ids and sequence numbers out again. Reconciling:
//
//  1. notices that the database's incarnation (system identifier and
//     timeline) is not the one the outbox's current generation was
//     started on;
//  2. starts a new generation, numbered above every generation the queue
//     has seen: its events come after every earlier position, so the
//     enqueue markers never take one for an event already enqueued, and
//     their idempotency keys (derived from the position) are new;
//  3. sweeps the queue: a job whose event's change did not survive (the
//     database's history does not have it) is moved out of the workers'
//     and the dead-letter replay's reach, with its reason; every other job
//     stays, and is delivered once;
//  4. records the generation reconciled.
//
// The restored cursor, behind the markers, needs no change: the dispatcher
// reads the surviving events after it again, and the markers skip those
// whose jobs were already taken. Every step may run again after a failure,
// and two processes reconciling at once do the work once.
type Reconciler struct {
	History core.OutboxHistory
	Queue   core.QueueHistory
	Logger  *slog.Logger
}

// Reconciliation is what Reconcile found and did.
type Reconciliation struct {
	// Needed is false when the database is the incarnation the current
	// generation was started on and the queue was reconciled with it:
	// nothing else was done.
	Needed bool `json:"needed"`
	// Generation is the outbox's current generation, Previous the one a
	// restore cut short (-1: none).
	Generation int `json:"generation"`
	Previous   int `json:"previous"`
	// SystemID and Timeline identify the database's incarnation.
	SystemID string `json:"system_identifier"`
	Timeline int    `json:"timeline"`
	// Kept counts the queued jobs whose changes survived, Lost those moved
	// out because theirs did not.
	Kept int `json:"kept"`
	Lost int `json:"lost"`
}

// Check returns the outbox's current generation without changing anything:
// it needs reconciling unless it is Current and Reconciled.
func (r *Reconciler) Check(ctx context.Context) (core.Generation, error) {
	return r.History.Generation(ctx)
}

// Reconcile reconciles the queue with the outbox when the database's
// incarnation changed or an earlier reconciliation did not finish, and
// does nothing otherwise (one query). Workers must not run jobs until it
// has returned without error: until then the queue may hold jobs of lost
// changes.
func (r *Reconciler) Reconcile(ctx context.Context) (Reconciliation, error) {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g, err := r.History.Generation(ctx)
	if err != nil {
		return Reconciliation{}, err
	}
	if g.Current && g.Reconciled {
		return reconciliation(g, false), nil
	}
	if !g.Current {
		seen, err := r.Queue.MaxGeneration(ctx)
		if err != nil {
			return reconciliation(g, true), err
		}
		from := g.Number
		if g, err = r.History.StartGeneration(ctx, seen); err != nil {
			return reconciliation(g, true), err
		}
		log.Warn("observers: the database is a new incarnation (restored or failed over): started a new outbox generation",
			"generation", g.Number, "previous", from, "system_identifier", g.SystemID, "timeline", g.Timeline)
	}
	rec := reconciliation(g, true)
	reason := fmt.Sprintf("restore: the change did not survive in outbox generation %d (database %s, timeline %d)",
		g.Previous, g.SystemID, g.Timeline)
	keep := func(ctx context.Context, jobs []core.Job) ([]bool, error) {
		events := make([]core.ChangeEvent, len(jobs))
		for i, j := range jobs {
			events[i] = j.Event
		}
		return r.History.Survived(ctx, events)
	}
	rec.Kept, rec.Lost, err = r.Queue.Sweep(ctx, keep, reason)
	if err != nil {
		return rec, err
	}
	if err := r.History.Reconciled(ctx, g.Number); err != nil {
		return rec, err
	}
	log.Warn("observers: reconciled the job queue with the restored outbox",
		"generation", g.Number, "kept", rec.Kept, "lost", rec.Lost)
	return rec, nil
}

func reconciliation(g core.Generation, needed bool) Reconciliation {
	return Reconciliation{Needed: needed, Generation: g.Number, Previous: g.Previous, SystemID: g.SystemID, Timeline: g.Timeline}
}
