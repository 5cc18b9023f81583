package postgres_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
)

const (
	tenantA = "00000000-0000-0000-0000-00000000000a"
	tenantB = "00000000-0000-0000-0000-00000000000b"
)

// mustObserved migrates a database with an observed orders table and
// returns an admin connection and the app role's event log.
func mustObserved(tb testing.TB) (*pgx.Conn, *postgres.EventLog, *postgres.DB) {
	tb.Helper()
	ctx := context.Background()
	pg, db := postgrestest.New(tb)
	admin, err := pgx.Connect(ctx, pg.AdminURL(db))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { admin.Close(ctx) })
	if _, err := admin.Exec(ctx, `CREATE TABLE public.orders (id int PRIMARY KEY, tenant_id uuid NOT NULL, total numeric, note text);
		SELECT fraise.observe_table('public.orders');
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO fraise_app`); err != nil {
		tb.Fatal(err)
	}
	d, err := postgres.Open(ctx, pg.URL("fraise_app", db), postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	l := postgres.NewEventLog(d, nil)
	tb.Cleanup(l.Close)
	return admin, l, d
}

func exec(tb testing.TB, d *postgres.DB, tenant, sql string) {
	tb.Helper()
	err := d.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		_, err := q.QueryJSON(ctx, "with x as ("+sql+" returning 1) select to_jsonb(count(*)) from x")
		return err
	})
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

func TestCaptureInsertUpdateDelete(t *testing.T) {
	_, l, d := mustObserved(t)
	ctx := context.Background()
	exec(t, d, tenantA, "insert into orders values (1, '"+tenantA+"', 10, 'a')")
	exec(t, d, tenantA, "update orders set total = 20 where id = 1")
	exec(t, d, tenantA, "update orders set total = 20 where id = 1") // no change: no event
	exec(t, d, tenantA, "delete from orders where id = 1")
	events, err := l.Read(ctx, core.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("got %d events, want 3", len(events))
	}
	want := []struct {
		op, before, after string
		changed           []string
	}{
		{"INSERT", "null", `{"id": 1, "note": "a", "total": 10, "tenant_id": "` + tenantA + `"}`, []string{"id", "note", "tenant_id", "total"}},
		{"UPDATE", `{"id": 1, "note": "a", "total": 10, "tenant_id": "` + tenantA + `"}`, `{"id": 1, "note": "a", "total": 20, "tenant_id": "` + tenantA + `"}`, []string{"total"}},
		{"DELETE", `{"id": 1, "note": "a", "total": 20, "tenant_id": "` + tenantA + `"}`, "null", []string{"id", "note", "tenant_id", "total"}},
	}
	for i, e := range events {
		w := want[i]
		if e.Op != w.op || !jsonEq(t, e.Before, w.before) || !jsonEq(t, e.After, w.after) || !slices.Equal(e.Changed, w.changed) {
			t.Errorf("event %d: got %s before=%s after=%s changed=%v, want %s %s %s %v", i, e.Op, e.Before, e.After, e.Changed, w.op, w.before, w.after, w.changed)
		}
		if e.Tenant != tenantA || e.Table != "public.orders" || !jsonEq(t, e.Key, `{"id":1}`) || e.TxTime.IsZero() {
			t.Errorf("event %d: got tenant %s table %s key %s", i, e.Tenant, e.Table, e.Key)
		}
		if i > 0 && !events[i-1].Pos.Less(e.Pos) {
			t.Errorf("events out of order: %v then %v", events[i-1].Pos, e.Pos)
		}
	}
	// The cursor: advancing hides what was read, and prunes it.
	if err := l.Advance(ctx, "default", events[1].Pos); err != nil {
		t.Fatal(err)
	}
	pos, err := l.Cursor(ctx, "default")
	if err != nil || pos != events[1].Pos {
		t.Fatalf("cursor: got %v %v, want %v", pos, err, events[1].Pos)
	}
	if err := l.Advance(ctx, "default", events[0].Pos); err != nil { // never backwards
		t.Fatal(err)
	}
	if pos, _ := l.Cursor(ctx, "default"); pos != events[1].Pos {
		t.Fatalf("cursor moved backwards to %v", pos)
	}
	rest, _ := l.Read(ctx, pos, 10)
	if len(rest) != 1 || rest[0].Op != "DELETE" {
		t.Fatalf("after the cursor: got %+v, want the delete", rest)
	}
	if n, _ := l.Pending(ctx, "default"); n != 1 {
		t.Fatalf("pending: got %d, want 1", n)
	}
}

func jsonEq(tb testing.TB, got json.RawMessage, want string) bool {
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		tb.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		tb.Fatalf("%s: %v", want, err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestReadWaitsForOlderTransactions: an event of a transaction that started
// (and wrote) earlier but commits later is never skipped by the cursor.
func TestReadWaitsForOlderTransactions(t *testing.T) {
	admin, l, d := mustObserved(t)
	ctx := context.Background()
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "insert into orders values (1, '"+tenantA+"', 1, 'slow')"); err != nil {
		t.Fatal(err)
	}
	exec(t, d, tenantA, "insert into orders values (2, '"+tenantA+"', 2, 'fast')")
	events, err := l.Read(ctx, core.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Fatalf("got %d events while an older transaction runs, want 0", len(events))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	events, _ = l.Read(ctx, core.Position{}, 10)
	if len(events) != 2 || !jsonEq(t, events[0].Key, `{"id":1}`) {
		t.Fatalf("got %d events, want both, the older transaction's first", len(events))
	}
}

func TestWaitWakesOnNotify(t *testing.T) {
	admin, l, d := mustObserved(t)
	// The listener has started once its session has run LISTEN.
	await.Until(t, 10*time.Second, "the listener to start", func() bool {
		var n int
		err := admin.QueryRow(context.Background(), "select count(*) from pg_stat_activity where query like 'listen %'").Scan(&n)
		return err == nil && n > 0
	})
	// Wait until the event is there to read: a wake-up left from the setup
	// goes round once more, and the notification wakes the loop whether it
	// comes before a Wait (it is kept) or during one. Had it no effect, the
	// loop would wait the whole 10 s timeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		for ctx.Err() == nil {
			_ = l.Wait(ctx, 10*time.Second)
			if evs, err := l.Read(ctx, core.Position{}, 10); err == nil && len(evs) > 0 {
				done <- time.Since(start)
				return
			}
		}
	}()
	exec(t, d, tenantA, "insert into orders values (1, '"+tenantA+"', 1, 'x')")
	select {
	case got := <-done:
		if got > 5*time.Second {
			t.Fatalf("woke after %v, want on the notification", got)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Wait did not wake on the notification")
	}
}

// TestCaptureStatements: a statement's rows each become an event, in order,
// and unobserving stops the capture.
func TestCaptureStatements(t *testing.T) {
	admin, l, d := mustObserved(t)
	ctx := context.Background()
	exec(t, d, tenantA, "insert into orders select g, '"+tenantA+"', g from generate_series(1, 3) g")
	exec(t, d, tenantA, "delete from orders where id <= 2")
	if _, err := admin.Exec(ctx, "select fraise.unobserve_table('public.orders')"); err != nil {
		t.Fatal(err)
	}
	exec(t, d, tenantA, "insert into orders values (9, '"+tenantA+"', 9, 'unobserved')")
	events, err := l.Read(ctx, core.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Op+string(e.Key))
	}
	want := []string{`INSERT{"id": 1}`, `INSERT{"id": 2}`, `INSERT{"id": 3}`, `DELETE{"id": 1}`, `DELETE{"id": 2}`}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := admin.Exec(ctx, "create table public.notenant (id int primary key); select fraise.observe_table('public.notenant')"); err == nil {
		t.Fatal("observing a table without tenant_id: got no error")
	}
}

// TestLeadStandbyReusesItsConnection: one dispatcher leads, another waits
// its turn; the one waiting asks for the lock over pooled connections
// instead of opening a connection per try, and takes over once the
// leader stops.
func TestLeadStandbyReusesItsConnection(t *testing.T) {
	_, l, d := mustObserved(t)
	ctx := context.Background()
	l2 := postgres.NewEventLog(d, nil)
	t.Cleanup(l2.Close)
	leading := make(chan struct{})
	stop := make(chan struct{})
	leaderDone := make(chan error, 1)
	go func() {
		leaderDone <- l.Lead(ctx, "lead-test", func(ctx context.Context) error {
			close(leading)
			select {
			case <-stop:
			case <-ctx.Done():
			}
			return nil
		})
	}()
	<-leading
	before, tries := postgres.NewConns(d), postgres.Acquires(d)
	standbyCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	took := make(chan struct{})
	standbyDone := make(chan error, 1)
	go func() {
		standbyDone <- l2.Lead(standbyCtx, "lead-test", func(context.Context) error { close(took); return nil })
	}()
	// Six tries, each taking a pooled connection.
	await.Until(t, 10*time.Second, "six tries of the standby", func() bool { return postgres.Acquires(d)-tries >= 6 })
	// The first try may open the connection the rest reuse.
	if opened := postgres.NewConns(d) - before; opened > 1 {
		t.Errorf("the standby opened %d connections while it waited, want it to reuse a pooled one", opened)
	}
	select {
	case <-took:
		t.Fatal("the standby led while the leader held the lock")
	default:
	}
	close(stop)
	if err := <-leaderDone; err != nil {
		t.Fatal(err)
	}
	select {
	case <-took:
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not take over once the leader stopped")
	}
	if err := <-standbyDone; err != nil {
		t.Fatal(err)
	}
}

// TestOldestPending checks the backlog's age: the first event behind the
// cursor, nothing once the cursor has passed every event.
func TestOldestPending(t *testing.T) {
	_, l, d := mustObserved(t)
	ctx := context.Background()
	if _, ok, err := l.OldestPending(ctx, "default"); err != nil || ok {
		t.Fatalf("empty outbox: got ok %v, err %v, want nothing pending", ok, err)
	}
	exec(t, d, tenantA, "insert into orders values (1, '"+tenantA+"', 10, 'a')")
	exec(t, d, tenantA, "insert into orders values (2, '"+tenantA+"', 10, 'b')")
	events, err := l.Read(ctx, core.Position{}, 10)
	if err != nil || len(events) != 2 {
		t.Fatalf("got %d events, %v, want 2", len(events), err)
	}
	tests := []struct {
		name   string
		cursor core.Position
		want   time.Time
		ok     bool
	}{
		{"both pending", core.Position{}, events[0].TxTime, true},
		{"one pending", events[0].Pos, events[1].TxTime, true},
		{"none pending", events[1].Pos, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.Advance(ctx, "default", tt.cursor); err != nil {
				t.Fatal(err)
			}
			got, ok, err := l.OldestPending(ctx, "default")
			if err != nil || ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("got %v %v %v, want %v %v", got, ok, err, tt.want, tt.ok)
			}
		})
	}
}
