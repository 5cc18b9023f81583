package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// The outbox's generations (migration 0013): EventLog is also the
// core.OutboxHistory the observers reconcile their queue against after a
// restore or a failover.
var _ core.OutboxHistory = (*EventLog)(nil)

// Generation implements core.OutboxHistory.
func (l *EventLog) Generation(ctx context.Context) (core.Generation, error) {
	var (
		g    core.Generation
		prev *int
	)
	err := l.db.queryRow(ctx, `select generation, previous, current, reconciled, system_identifier, timeline
		from fraise.observer_generation()`).Scan(&g.Number, &prev, &g.Current, &g.Reconciled, &g.SystemID, &g.Timeline)
	if err != nil {
		return g, mapError("postgres.EventLog.Generation", err)
	}
	g.Previous = -1
	if prev != nil {
		g.Previous = *prev
	}
	return g, nil
}

// StartGeneration implements core.OutboxHistory. It waits for the
// transactions writing to the outbox to end, and holds new writes to it
// (the observed tables' changes) until it commits, a moment.
func (l *EventLog) StartGeneration(ctx context.Context, atLeast int) (core.Generation, error) {
	if _, err := l.db.exec(ctx, "select fraise.observer_start_generation($1)", atLeast); err != nil {
		return core.Generation{}, mapError("postgres.EventLog.StartGeneration", err)
	}
	return l.Generation(ctx)
}

// Survived implements core.OutboxHistory.
func (l *EventLog) Survived(ctx context.Context, events []core.ChangeEvent) ([]bool, error) {
	const op = "postgres.EventLog.Survived"
	if len(events) == 0 {
		return nil, nil
	}
	gens := make([]int32, len(events))
	xids := make([]string, len(events))
	ids := make([]int64, len(events))
	times := make([]time.Time, len(events))
	for i, e := range events {
		gens[i], xids[i], ids[i], times[i] = int32(e.Pos.Generation), strconv.FormatUint(e.Pos.XID, 10), e.Pos.ID, e.TxTime
	}
	var out []bool
	err := l.db.queryRow(ctx, "select fraise.observer_survived($1, $2::text[]::xid8[], $3, $4)", gens, xids, ids, times).Scan(&out)
	if err != nil {
		return nil, mapError(op, err)
	}
	if len(out) != len(events) {
		return nil, core.Errorf(core.CodeInternal, "observer_survived answered for %d events of %d", len(out), len(events)).WithOp(op)
	}
	return out, nil
}

// Reconciled implements core.OutboxHistory.
func (l *EventLog) Reconciled(ctx context.Context, n int) error {
	if _, err := l.db.exec(ctx, "select fraise.observer_reconciled($1)", n); err != nil {
		return mapError("postgres.EventLog.Reconciled", err)
	}
	return nil
}
