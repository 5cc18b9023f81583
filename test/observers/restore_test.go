package observers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/observers/obstest"
)

// reopen points the pipeline at database name of server pg (a restored
// one), keeping its Redis and configuration.
func (p *pipeline) reopen(tb testing.TB, pg *harness.Postgres, name string) {
	tb.Helper()
	db, err := postgres.Open(context.Background(), pg.URL("fraise_app", name), postgres.Options{MaxConns: 30})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	p.DB = db
}

// TestObserversAfterPointInTimeRestore restores the database under a
// running observer pipeline to a point in time, its Redis and its webhook
// receiver going on from later, and checks the promises observers make
// across a restore (docs/operations.md, Restore): an event whose change
// survived is delivered exactly once, whether it had been delivered before
// the restore or was still queued; no job of a change the restore lost is
// delivered after it; and changes made after the restore are delivered,
// each once, under idempotency keys no earlier event had. Before the
// outbox had generations, the events written after the restore took the
// positions (transaction ids and sequence numbers) of the lost ones: the
// queue's enqueue marker skipped them as already enqueued, and a receiver
// deduplicating on the key would have dropped them anyway.
func TestObserversAfterPointInTimeRestore(t *testing.T) {
	harness.SkipShort(t)
	pg, archive := harness.StartArchivingPostgres(t)
	p := mustPipelineOn(t, pg, "postgres")
	p.opts.Breakers[core.ActionWebhook] = observe.BreakerSettings{FailureThreshold: 1_000_000} // failures here are the test's: no breaker

	// Which order ids the receiver refuses (503, retry in a second):
	// A2's until the restore, B2's always. After the restore it takes
	// everything, so a job of a lost change that is still queued would
	// show as a delivery.
	var restored atomic.Bool
	var restoredAt time.Time
	const (
		a2First, a2Last = 21, 30
		b2First, b2Last = 100, 349
	)
	var mu sync.Mutex
	keyOf := map[int]string{} // order id → idempotency key
	rc := obstest.StartReceiver(t)
	rc.Handle(func(w http.ResponseWriter, r *http.Request, pl observe.WebhookPayload, n int) bool {
		var key struct{ ID int }
		_ = json.Unmarshal(pl.Event.Key, &key)
		mu.Lock()
		keyOf[key.ID] = r.Header.Get("Idempotency-Key")
		mu.Unlock()
		if !restored.Load() && (key.ID >= a2First && key.ID <= a2Last || key.ID >= b2First && key.ID <= b2Last) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	})
	attempted := func(first, last int) bool {
		mu.Lock()
		defer mu.Unlock()
		for id := first; id <= last; id++ {
			if keyOf[id] == "" {
				return false
			}
		}
		return true
	}
	p.Rule(t, obstest.TenantA, map[string]any{"name": "orders", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	_, stop := p.start(t, "before")
	pg.BaseBackup(t, archive)

	// A: delivered before the restore point. A2: committed before it, but
	// still queued (their receiver refuses them).
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) select g, $1, g from generate_series(1, 20) g", obstest.TenantA)
	await.Until(t, 30*time.Second, "A delivered", func() bool { return rc.Delivered() == 20 })
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) select g, $1, g from generate_series($2::int, $3::int) g",
		obstest.TenantA, a2First, a2Last)
	await.Until(t, 30*time.Second, "A2 attempted", func() bool { return attempted(a2First, a2Last) })
	var target string
	if err := p.Admin.QueryRow(context.Background(), "select clock_timestamp()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}

	// B1: delivered, B2: queued; both committed after the restore point.
	// B2 takes several transactions and many sequence numbers, so the
	// restored database's next ones fall among them.
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values (31, $1, 31)", obstest.TenantA)
	await.Until(t, 30*time.Second, "B1 delivered", func() bool { return rc.Delivered() == 21 })
	for first := b2First; first <= b2Last; first += 50 {
		p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) select g, $1, g from generate_series($2::int, $3::int) g",
			obstest.TenantA, first, first+49)
	}
	await.Until(t, 30*time.Second, "B2 attempted", func() bool { return attempted(b2First, b2Last) })
	pg.SwitchWAL(t, time.Minute) // B's commits in the archive: recovery stops before them

	stop()
	pg.Destroy(t)
	rpg := harness.RestoreFromArchive(t, archive, target, "archive_mode = off")
	mu.Lock()
	before := map[string]bool{}
	for _, k := range keyOf {
		before[k] = true
	}
	mu.Unlock()
	restoredAt = time.Now()
	restored.Store(true)
	p.reopen(t, rpg, "postgres")
	rconn, err := pgx.Connect(context.Background(), rpg.AdminURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(context.Background())
	var rows int
	if err := rconn.QueryRow(context.Background(), "select count(*) from orders").Scan(&rows); err != nil || rows != a2Last {
		t.Fatalf("got %d orders restored (%v), want %d: A and A2", rows, err, a2Last)
	}

	// C: written after the restore, one transaction each; the first before
	// any observer is back (the core serves as soon as the database does),
	// the others after.
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values (1000, $1, 1)", obstest.TenantA)
	p.start(t, "after")
	for id := 1001; id < 1003; id++ {
		p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obstest.TenantA, id)
	}
	q := goredis.NewClient(&goredis.Options{Addr: p.Redis.Addr})
	t.Cleanup(func() { q.Close() })
	drained := func() bool {
		n, err1 := q.XLen(context.Background(), "fraise:{"+obstest.TenantA+"}:observer:jobs").Result()
		z, err2 := q.ZCard(context.Background(), "fraise:{"+obstest.TenantA+"}:observer:delayed").Result()
		return err1 == nil && err2 == nil && n == 0 && z == 0
	}
	if !await.Within(60*time.Second, func() bool { return attempted(1000, 1002) && rc.Delivered() == 20+10+1+3 && drained() }) {
		{
			counts := rc.Snapshot().Count
			mu.Lock()
			b2 := 0
			for id := b2First; id <= b2Last; id++ {
				b2 += counts[keyOf[id]]
			}
			mu.Unlock()
			t.Fatalf("after 60s: C attempted %v, %d distinct keys delivered (want 34: A, A2, B1, C), B2 deliveries %d, queue drained %v",
				attempted(1000, 1002), rc.Delivered(), b2, drained())
		}
	}

	got := rc.Snapshot()
	counts := got.Count
	mu.Lock()
	defer mu.Unlock()
	for _, tc := range []struct {
		name        string
		first, last int
		want        int
	}{
		{"A: survived, delivered before", 1, 20, 1},
		{"A2: survived, queued at the restore", a2First, a2Last, 1},
		{"B1: lost, delivered before the restore", 31, 31, 1},
		{"B2: lost, queued at the restore", b2First, b2Last, 0},
		{"C: written after the restore", 1000, 1002, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for id := tc.first; id <= tc.last; id++ {
				if got := counts[keyOf[id]]; got != tc.want {
					t.Fatalf("order %d (key %s): delivered %d times, want %d", id, keyOf[id], got, tc.want)
				}
			}
		})
	}
	for id := b2First; id <= b2Last; id++ {
		for _, at := range got.Attempts[keyOf[id]] {
			if !at.Before(restoredAt) {
				t.Fatalf("order %d, lost by the restore, was attempted after it", id)
			}
		}
	}
	for id := 1000; id <= 1002; id++ {
		if before[keyOf[id]] {
			t.Fatalf("order %d, written after the restore, has the key %s of an event from before it", id, keyOf[id])
		}
	}
	if n, err := q.XLen(context.Background(), "fraise:{"+obstest.TenantA+"}:observer:lost").Result(); err != nil || n != b2Last-b2First+1 {
		t.Fatalf("got %d jobs recorded as lost (%v), want B2's %d", n, err, b2Last-b2First+1)
	}
}
