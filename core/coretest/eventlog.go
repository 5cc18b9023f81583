package coretest

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// EventLog is an outbox in memory (core.EventLog). Commit appends a
// transaction's events, as the capture trigger does when a transaction
// that changed observed rows commits, and wakes Wait, as the outbox's
// notification does. It is safe for concurrent use.
type EventLog struct {
	mu      sync.Mutex
	events  []core.ChangeEvent
	cursors map[string]core.Position
	xid     uint64
	seq     int64
	wake    chan struct{}

	// The outbox's history (core.OutboxHistory, outboxhistory.go).
	timeline    int           // the database's incarnation
	generations []generation  // oldest first; never empty
	writtenOn   map[int64]int // the timeline each event (by sequence number) was written on
}

var _ core.EventLog = (*EventLog)(nil)

// NewEventLog returns an empty outbox.
func NewEventLog() *EventLog {
	return &EventLog{cursors: map[string]core.Position{}, wake: make(chan struct{}, 1),
		timeline: 1, generations: []generation{{firstID: 0, timeline: 1, reconciled: true}}, writtenOn: map[int64]int{}}
}

// Commit appends events as one committed transaction and returns their
// positions: the transaction gets the next transaction id, each event the
// next sequence number, as PostgreSQL hands them out. An event's zero
// TxTime is set to now, and nil Before, After or Key to JSON null.
func (l *EventLog) Commit(events ...core.ChangeEvent) []core.Position {
	l.mu.Lock()
	l.xid++
	now := time.Now().UTC()
	out := make([]core.Position, len(events))
	for i, e := range events {
		l.seq++
		e.Pos = core.Position{Generation: l.generationOfLocked(l.seq), XID: l.xid, ID: l.seq}
		if e.TxTime.IsZero() {
			e.TxTime = now
		}
		e.Key, e.Before, e.After = orNull(e.Key), orNull(e.Before), orNull(e.After)
		l.events = append(l.events, e)
		l.writtenOn[l.seq] = l.timeline
		out[i] = e.Pos
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return out
}

func orNull(m json.RawMessage) json.RawMessage {
	if m == nil {
		return json.RawMessage("null")
	}
	return m
}

// Inserted returns the event of inserting the row {"id": id} into table
// for tenant, the event a test most often needs.
func Inserted(tenant, table string, id int64) core.ChangeEvent {
	key := json.RawMessage(`{"id":` + strconv.FormatInt(id, 10) + `}`)
	return core.ChangeEvent{Tenant: tenant, Table: table, Op: core.OpInsert, Key: key,
		Before: json.RawMessage("null"), After: key, Changed: []string{"id"}}
}

// Read implements core.EventLog. Every committed event is readable: in
// memory no transaction can commit events before one already committed.
func (l *EventLog) Read(ctx context.Context, after core.Position, limit int) ([]core.ChangeEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, core.E("coretest.EventLog.Read", core.CodeUnavailable, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []core.ChangeEvent
	for _, e := range l.sortedLocked() {
		if len(out) >= limit {
			break
		}
		if after.Less(e.Pos) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Cursor implements core.EventLog.
func (l *EventLog) Cursor(_ context.Context, name string) (core.Position, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cursors[name], nil
}

// Advance implements core.EventLog. Events every cursor has passed stay:
// tests read them back.
func (l *EventLog) Advance(_ context.Context, name string, pos core.Position) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cursors[name].Less(pos) {
		l.cursors[name] = pos
	}
	return nil
}

// Wait implements core.EventLog: it returns when Commit was called since
// the last Wait returned, d passes or ctx ends.
func (l *EventLog) Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-l.wake:
	case <-t.C:
	}
	return nil
}
