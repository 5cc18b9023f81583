package coretest

import (
	"context"
	"slices"

	"github.com/fraise-dev/fraise/core"
)

// generation is a stretch of the outbox written by one incarnation of the
// database: the events with sequence numbers from firstID on.
type generation struct {
	number     int
	firstID    int64
	timeline   int
	reconciled bool
}

var _ core.OutboxHistory = (*EventLog)(nil)

// Restore makes the outbox what a point-in-time restore to just after the
// event at p makes it: the events after p are lost, their transaction ids
// and sequence numbers are handed out again, cursors past p are back at
// p, and the database is a new incarnation (the next timeline) until a
// generation is started on it (StartGeneration).
func (l *EventLog) Restore(p core.Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = slices.DeleteFunc(l.events, func(e core.ChangeEvent) bool { return p.Less(e.Pos) })
	l.xid, l.seq = p.XID, p.ID
	for name, c := range l.cursors {
		if p.Less(c) {
			l.cursors[name] = p
		}
	}
	l.timeline++
}

// generationOfLocked returns the generation the event with sequence
// number seq belongs to.
func (l *EventLog) generationOfLocked(seq int64) int {
	g := 0
	for _, gen := range l.generations {
		if seq >= gen.firstID {
			g = gen.number
		}
	}
	return g
}

// sortedLocked returns the events in outbox order: generation, then
// transaction id, then sequence number.
func (l *EventLog) sortedLocked() []core.ChangeEvent {
	out := slices.Clone(l.events)
	slices.SortStableFunc(out, func(a, b core.ChangeEvent) int {
		switch {
		case a.Pos.Less(b.Pos):
			return -1
		case b.Pos.Less(a.Pos):
			return 1
		}
		return 0
	})
	return out
}

func (l *EventLog) generationLocked() core.Generation {
	cur := l.generations[len(l.generations)-1]
	g := core.Generation{Number: cur.number, Previous: -1, Current: cur.timeline == l.timeline, Reconciled: cur.reconciled,
		SystemID: "coretest", Timeline: l.timeline}
	if n := len(l.generations); n > 1 {
		g.Previous = l.generations[n-2].number
	}
	return g
}

// Generation implements core.OutboxHistory.
func (l *EventLog) Generation(context.Context) (core.Generation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.generationLocked(), nil
}

// StartGeneration implements core.OutboxHistory. The new generation
// begins with the first event the present incarnation wrote, which takes
// its number.
func (l *EventLog) StartGeneration(_ context.Context, atLeast int) (core.Generation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.generations[len(l.generations)-1]
	if cur.timeline == l.timeline {
		return l.generationLocked(), nil
	}
	g := generation{number: max(cur.number, atLeast) + 1, firstID: l.seq + 1, timeline: l.timeline}
	for _, e := range l.events {
		if e.Pos.Generation == cur.number && l.writtenSinceRestoreLocked(e) {
			g.firstID = min(g.firstID, e.Pos.ID)
		}
	}
	l.generations = append(l.generations, g)
	for i, e := range l.events {
		l.events[i].Pos.Generation = l.generationOfLocked(e.Pos.ID)
	}
	return l.generationLocked(), nil
}

// writtenSinceRestoreLocked reports whether e was written by the present
// incarnation.
func (l *EventLog) writtenSinceRestoreLocked(e core.ChangeEvent) bool {
	return l.writtenOn[e.Pos.ID] == l.timeline
}

// Survived implements core.OutboxHistory, as the database answers: an
// event of the current generation survived; one of the generation before
// it when a cursor has passed it or the outbox still has it with the same
// transaction time; one of an older generation did; one of a generation
// the outbox never had did not.
func (l *EventLog) Survived(_ context.Context, events []core.ChangeEvent) ([]bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.generations[len(l.generations)-1].number
	prev := -1
	if n := len(l.generations); n > 1 {
		prev = l.generations[n-2].number
	}
	var least *core.Position
	for _, c := range l.cursors {
		if least == nil || c.Less(*least) {
			least = &c
		}
	}
	out := make([]bool, len(events))
	for i, e := range events {
		switch g := e.Pos.Generation; {
		case g == cur:
			out[i] = true
		case g == prev:
			out[i] = least != nil && !least.Less(e.Pos) ||
				slices.ContainsFunc(l.events, func(x core.ChangeEvent) bool {
					return x.Pos.XID == e.Pos.XID && x.Pos.ID == e.Pos.ID && x.TxTime.Equal(e.TxTime)
				})
		case g < prev:
			out[i] = true
		}
	}
	return out, nil
}

// Reconciled implements core.OutboxHistory; a generation the outbox does
// not have is no error, as in the database.
func (l *EventLog) Reconciled(_ context.Context, n int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.generations {
		if l.generations[i].number == n {
			l.generations[i].reconciled = true
		}
	}
	return nil
}
