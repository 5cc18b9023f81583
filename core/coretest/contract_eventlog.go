package coretest

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
)

// Tenants the contract suites write for: UUIDs, as the database requires.
const (
	TenantA = "00000000-0000-0000-0000-0000000000aa"
	TenantB = "00000000-0000-0000-0000-0000000000bb"
)

// EventLogFixture is an implementation of core.EventLog under test and
// the means to write to its outbox.
type EventLogFixture struct {
	Log core.EventLog
	// Insert commits one transaction that inserts, for tenant, a row with
	// each of ids as its primary key id into the observed table
	// public.orders.
	Insert func(tb testing.TB, tenant string, ids ...int64)
}

// NewEventLogFixture returns an in-memory EventLog and its Insert.
func NewEventLogFixture(*testing.T) EventLogFixture {
	l := NewEventLog()
	return EventLogFixture{Log: l, Insert: func(_ testing.TB, tenant string, ids ...int64) {
		events := make([]core.ChangeEvent, len(ids))
		for i, id := range ids {
			events[i] = Inserted(tenant, "public.orders", id)
		}
		l.Commit(events...)
	}}
}

// TestEventLogContract runs core.EventLog's contract against the
// implementations newLog returns, a new one for each case. The cases run in parallel.
func TestEventLogContract(t *testing.T, newLog func(t *testing.T) EventLogFixture) {
	ctx := context.Background()
	read := func(tb testing.TB, l core.EventLog, after core.Position, limit int) []core.ChangeEvent {
		tb.Helper()
		es, err := l.Read(ctx, after, limit)
		if err != nil {
			tb.Fatalf("Read(%v, %d): %v", after, limit, err)
		}
		return es
	}
	// readAll reads from after until n events came: Read may lag behind
	// a commit while transactions that began before it are still open
	// (in PostgreSQL, anywhere on the server), as it holds back events
	// that such a transaction could still be ordered before.
	readAll := func(tb testing.TB, l core.EventLog, after core.Position, n int) []core.ChangeEvent {
		tb.Helper()
		var es []core.ChangeEvent
		await.Until(tb, 10*time.Second, strconv.Itoa(n)+" events", func() bool {
			es = read(tb, l, after, 100)
			return len(es) >= n
		})
		return es
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f EventLogFixture)
	}{
		{"reads committed events in order", func(t *testing.T, f EventLogFixture) {
			f.Insert(t, TenantA, 1, 2)
			f.Insert(t, TenantB, 3)
			es := readAll(t, f.Log, core.Position{}, 3)
			if len(es) != 3 {
				t.Fatalf("got %d events, want 3", len(es))
			}
			for i, e := range es {
				id := int64(i + 1)
				tenant := TenantA
				if id == 3 {
					tenant = TenantB
				}
				var key, after struct{ ID int64 }
				if err := json.Unmarshal(e.Key, &key); err != nil || key.ID != id {
					t.Errorf("event %d: got key %s, want id %d", i, e.Key, id)
				}
				if err := json.Unmarshal(e.After, &after); err != nil || after.ID != id {
					t.Errorf("event %d: got after %s, want the row with id %d", i, e.After, id)
				}
				if e.Tenant != tenant || e.Table != "public.orders" || e.Op != core.OpInsert || string(e.Before) != "null" || e.TxTime.IsZero() {
					t.Errorf("event %d: got %s %s %s before %s at %v, want %s public.orders INSERT before null at a time",
						i, e.Tenant, e.Table, e.Op, e.Before, e.TxTime, tenant)
				}
				if i > 0 && !es[i-1].Pos.Less(e.Pos) {
					t.Errorf("event %d at %v, not after %v", i, e.Pos, es[i-1].Pos)
				}
			}
			if es[0].Pos.XID != es[1].Pos.XID || es[1].Pos.XID == es[2].Pos.XID {
				t.Errorf("got transaction ids %d %d %d, want the first two alike (one transaction) and the third not",
					es[0].Pos.XID, es[1].Pos.XID, es[2].Pos.XID)
			}
		}},
		{"reads from a position up to a limit", func(t *testing.T, f EventLogFixture) {
			for id := int64(1); id <= 5; id++ {
				f.Insert(t, TenantA, id)
			}
			readAll(t, f.Log, core.Position{}, 5)
			first := read(t, f.Log, core.Position{}, 2)
			if len(first) != 2 {
				t.Fatalf("limit 2: got %d events", len(first))
			}
			rest := read(t, f.Log, first[1].Pos, 10)
			if len(rest) != 3 || string(rest[0].Key) == string(first[1].Key) {
				t.Fatalf("after the second: got %d events, want the other 3", len(rest))
			}
			if none := read(t, f.Log, rest[2].Pos, 10); len(none) != 0 {
				t.Fatalf("after the last: got %d events, want none", len(none))
			}
		}},
		{"cursors start at zero and are kept per name", func(t *testing.T, f EventLogFixture) {
			f.Insert(t, TenantA, 1)
			f.Insert(t, TenantA, 2)
			es := readAll(t, f.Log, core.Position{}, 2)
			if p, err := f.Log.Cursor(ctx, "contract-a"); err != nil || p != (core.Position{}) {
				t.Fatalf("a new cursor: got %v %v, want the zero position", p, err)
			}
			if err := f.Log.Advance(ctx, "contract-a", es[1].Pos); err != nil {
				t.Fatal(err)
			}
			if p, err := f.Log.Cursor(ctx, "contract-a"); err != nil || p != es[1].Pos {
				t.Fatalf("after Advance: got %v %v, want %v", p, err, es[1].Pos)
			}
			if p, err := f.Log.Cursor(ctx, "contract-b"); err != nil || p != (core.Position{}) {
				t.Fatalf("another name: got %v %v, want the zero position", p, err)
			}
		}},
		{"cursors never move backwards", func(t *testing.T, f EventLogFixture) {
			f.Insert(t, TenantA, 1)
			f.Insert(t, TenantA, 2)
			es := readAll(t, f.Log, core.Position{}, 2)
			for _, p := range []core.Position{es[1].Pos, es[0].Pos} {
				if err := f.Log.Advance(ctx, "contract", p); err != nil {
					t.Fatal(err)
				}
			}
			if p, _ := f.Log.Cursor(ctx, "contract"); p != es[1].Pos {
				t.Fatalf("got %v, want %v: the cursor moved backwards", p, es[1].Pos)
			}
		}},
		{"Wait returns when its time passes", func(t *testing.T, f EventLogFixture) {
			within(t, 10*time.Second, "Wait(10ms)", func() {
				if err := f.Log.Wait(ctx, 10*time.Millisecond); err != nil {
					t.Errorf("got %v, want nil", err)
				}
			})
		}},
		{"Wait returns when its context ends", func(t *testing.T, f EventLogFixture) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			within(t, 10*time.Second, "Wait(1h) with an ended context", func() {
				if err := f.Log.Wait(cctx, time.Hour); err != nil && err != context.Canceled {
					t.Errorf("got %v, want nil or the context's error", err)
				}
			})
		}},
		{"Wait wakes on a commit", func(t *testing.T, f EventLogFixture) {
			_ = f.Log.Wait(ctx, time.Millisecond) // take a wake-up already due
			done := make(chan error, 1)
			go func() { done <- f.Log.Wait(ctx, time.Minute) }()
			f.Insert(t, TenantA, 1)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Wait(1m) did not return within 10 s of a commit")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newLog(t))
		})
	}
}

// within runs fn, failing tb when it has not returned after d.
func within(tb testing.TB, d time.Duration, what string, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		tb.Fatalf("%s did not return within %v", what, d)
	}
}
