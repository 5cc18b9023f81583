package coretest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
)

// OutboxHistoryFixture is an implementation of core.OutboxHistory under
// test, with the outbox it describes.
type OutboxHistoryFixture struct {
	EventLogFixture
	History core.OutboxHistory
}

// NewOutboxHistoryFixture returns an in-memory EventLog as both.
func NewOutboxHistoryFixture(t *testing.T) OutboxHistoryFixture {
	f := NewEventLogFixture(t)
	return OutboxHistoryFixture{EventLogFixture: f, History: f.Log.(*EventLog)}
}

// TestOutboxHistoryContract runs core.OutboxHistory's contract against
// the implementations newHistory returns, a new one for each case, on a
// database that was not restored: what a restore changes is checked by
// the end-to-end restore tests (cmd/fraise/cli) against PostgreSQL and by
// core/observe's tests against EventLog.Restore. The cases run in
// parallel.
func TestOutboxHistoryContract(t *testing.T, newHistory func(t *testing.T) OutboxHistoryFixture) {
	ctx := context.Background()
	generation := func(tb testing.TB, h core.OutboxHistory) core.Generation {
		tb.Helper()
		g, err := h.Generation(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		return g
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f OutboxHistoryFixture)
	}{
		{"a new outbox is in generation 0, current and reconciled", func(t *testing.T, f OutboxHistoryFixture) {
			g := generation(t, f.History)
			if g.Number != 0 || g.Previous != -1 || !g.Current || !g.Reconciled || g.SystemID == "" || g.Timeline < 1 {
				t.Fatalf("got %+v, want generation 0, previous -1, current, reconciled, an incarnation", g)
			}
		}},
		{"no generation starts on the incarnation of the current one", func(t *testing.T, f OutboxHistoryFixture) {
			before := generation(t, f.History)
			g, err := f.History.StartGeneration(ctx, 5)
			if err != nil || g != before {
				t.Fatalf("got %+v %v, want %+v unchanged", g, err, before)
			}
			if g := generation(t, f.History); g != before {
				t.Fatalf("after: got %+v, want %+v", g, before)
			}
		}},
		{"events of the current generation survived", func(t *testing.T, f OutboxHistoryFixture) {
			f.Insert(t, TenantA, 1, 2)
			var es []core.ChangeEvent
			await.Until(t, 10*time.Second, "the two events to be read", func() bool {
				got, err := f.Log.Read(ctx, core.Position{}, 10)
				if err != nil {
					t.Fatal(err)
				}
				es = got
				return len(es) >= 2
			})
			ok, err := f.History.Survived(ctx, es)
			if err != nil || !slices.Equal(ok, []bool{true, true}) {
				t.Fatalf("got %v %v, want both survived", ok, err)
			}
			if ok, err := f.History.Survived(ctx, nil); err != nil || len(ok) != 0 {
				t.Fatalf("no events: got %v %v, want none", ok, err)
			}
		}},
		{"an event of a generation the outbox never had did not survive", func(t *testing.T, f OutboxHistoryFixture) {
			e := Inserted(TenantA, "public.orders", 1)
			e.Pos = core.Position{Generation: 7, XID: 1000, ID: 1}
			if ok, err := f.History.Survived(ctx, []core.ChangeEvent{e}); err != nil || !slices.Equal(ok, []bool{false}) {
				t.Fatalf("got %v %v, want not survived", ok, err)
			}
		}},
		{"recording a generation reconciled again is harmless", func(t *testing.T, f OutboxHistoryFixture) {
			for _, n := range []int{0, 0, 9} {
				if err := f.History.Reconciled(ctx, n); err != nil {
					t.Fatalf("Reconciled(%d): %v", n, err)
				}
			}
			if g := generation(t, f.History); g.Number != 0 || !g.Reconciled {
				t.Fatalf("got %+v, want generation 0 reconciled", g)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newHistory(t))
		})
	}
}
