package redis_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func mustQueue(tb testing.TB, idle time.Duration) *redis.Queue {
	tb.Helper()
	rd := harness.StartRedis(tb)
	q := redis.New(redis.Options{Addr: rd.Addr, ReclaimIdle: idle})
	tb.Cleanup(func() { q.Close() })
	return q
}

func all(string) int { return 100 }

func job(tenant, id string) core.Job {
	return core.Job{ID: id, Tenant: tenant, RuleID: "r", Action: core.Action{Kind: core.ActionWebhook, URL: "http://x"}}
}

func fetch(tb testing.TB, q *redis.Queue, consumer string, room func(string) int) []core.Delivery {
	tb.Helper()
	ds, err := q.Fetch(context.Background(), consumer, 100, room, 100*time.Millisecond)
	if err != nil {
		tb.Fatal(err)
	}
	return ds
}

func TestQueueLifecycle(t *testing.T) {
	q := mustQueue(t, 300*time.Millisecond)
	ctx := context.Background()
	if err := q.Enqueue(ctx, []core.Job{job("a", "1"), job("a", "2"), job("b", "3")}); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Backlog(ctx, "a"); n != 2 {
		t.Fatalf("backlog of a: got %d, want 2", n)
	}
	// Room limits a tenant's share of one fetch.
	ds := fetch(t, q, "w1", func(t string) int {
		if t == "a" {
			return 1
		}
		return 100
	})
	if len(ds) != 2 {
		t.Fatalf("got %d deliveries, want 1 of a and 1 of b", len(ds))
	}
	byID := map[string]core.Delivery{}
	for _, d := range ds {
		byID[d.Job.ID] = d
	}
	if err := q.Ack(ctx, byID["3"]); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Backlog(ctx, "b"); n != 0 {
		t.Fatalf("backlog of b after ack: got %d, want 0", n)
	}
	// Retry: gone from the stream, back when due.
	first := byID["1"]
	if first.Job.ID == "" {
		first = byID["2"]
	}
	retry := first.Job
	retry.Attempt = 1
	if err := q.Retry(ctx, first, retry, time.Now().Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	ds = fetch(t, q, "w1", all) // the other job of a
	if len(ds) != 1 || ds[0].Job.ID == first.Job.ID {
		t.Fatalf("got %+v, want only the job not being retried", ds)
	}
	if err := q.Ack(ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	await.Until(t, 5*time.Second, "the retried job back when due", func() bool {
		ds = fetch(t, q, "w1", all)
		return len(ds) != 0
	})
	if len(ds) != 1 || ds[0].Job.ID != first.Job.ID || ds[0].Job.Attempt != 1 {
		t.Fatalf("got %+v, want the retried job with attempt 1", ds)
	}
	// Dead letter, list and replay.
	if err := q.DeadLetter(ctx, ds[0], ds[0].Job, "permanent: 404"); err != nil {
		t.Fatal(err)
	}
	dls, err := q.DeadLetters(ctx, "a", 10)
	if err != nil || len(dls) != 1 || dls[0].Reason != "permanent: 404" || dls[0].Job.ID != first.Job.ID {
		t.Fatalf("dead letters: got %+v %v", dls, err)
	}
	if n, err := q.Replay(ctx, "a", []string{dls[0].ID}); err != nil || n != 1 {
		t.Fatalf("replay: got %d %v, want 1", n, err)
	}
	ds = fetch(t, q, "w1", all)
	if len(ds) != 1 || ds[0].Job.ID != first.Job.ID || ds[0].Job.Attempt != 0 {
		t.Fatalf("after replay: got %+v, want the job with attempts reset", ds)
	}
	if dls, _ := q.DeadLetters(ctx, "a", 10); len(dls) != 0 {
		t.Fatalf("dead letters after replay: got %d, want 0", len(dls))
	}
	if _, err := q.Replay(ctx, "a", []string{"1-1"}); core.ErrorCode(err) != core.CodeNotFound {
		t.Fatalf("replay of a missing id: got %v, want NOT_FOUND", err)
	}
	// Reclaim: w1 dies holding the job; w2 takes it over once idle.
	if ds := fetch(t, q, "w2", all); len(ds) != 0 {
		t.Fatalf("w2 got %+v before the job was idle", ds)
	}
	await.Until(t, 5*time.Second, "w2 reclaiming the idle job", func() bool {
		ds = fetch(t, q, "w2", all)
		return len(ds) != 0
	})
	if len(ds) != 1 || ds[0].Job.ID != first.Job.ID {
		t.Fatalf("w2 got %+v, want the reclaimed job", ds)
	}
}

func TestFetchBlocksUntilAJob(t *testing.T) {
	rd := harness.StartRedis(t)
	q := redis.New(redis.Options{Addr: rd.Addr, ReclaimIdle: time.Minute})
	t.Cleanup(func() { q.Close() })
	admin := goredis.NewClient(&goredis.Options{Addr: rd.Addr})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	if err := q.Enqueue(ctx, []core.Job{job("a", "0")}); err != nil {
		t.Fatal(err)
	}
	ds := fetch(t, q, "w", all)
	_ = q.Ack(ctx, ds[0])
	go func() {
		// Enqueue once the fetch is blocked in Redis (CLIENT LIST flag b).
		await.Within(5*time.Second, func() bool {
			list, _ := admin.ClientList(ctx).Result()
			for _, c := range strings.Split(list, "\n") {
				if strings.Contains(c, " flags=b ") && strings.Contains(c, "cmd=xreadgroup") {
					return true
				}
			}
			return false
		})
		_ = q.Enqueue(ctx, []core.Job{job("a", "1")})
	}()
	start := time.Now()
	ds, err := q.Fetch(ctx, "w", 10, all, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("got %d, want the job enqueued while blocked", len(ds))
	}
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Fatalf("took %v, want to wake on the job", el)
	}
}

func TestUnavailable(t *testing.T) {
	q := redis.New(redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond})
	defer q.Close()
	err := q.Enqueue(context.Background(), []core.Job{job("a", "1")})
	if core.ErrorCode(err) != core.CodeUnavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
}

// TestEnqueueIsIdempotent: a batch enqueued again (the dispatcher retries
// a batch whose answer it lost; go-redis resends a pipeline after a read
// timeout) adds nothing twice, and later events' jobs are still added.
func TestEnqueueIsIdempotent(t *testing.T) {
	q := mustQueue(t, time.Minute)
	ctx := context.Background()
	at := func(tenant, id string, xid uint64, n int64) core.Job {
		j := job(tenant, id)
		j.Event.Pos = core.Position{XID: xid, ID: n}
		return j
	}
	batch := []core.Job{at("a", "1", 7, 1), at("a", "2", 7, 1), at("a", "3", 7, 2), at("b", "4", 7, 3)}
	for range 3 {
		if err := q.Enqueue(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	// The next batch overlaps the last (a cursor that had not moved yet).
	if err := q.Enqueue(ctx, []core.Job{at("a", "3", 7, 2), at("a", "5", 8, 1)}); err != nil {
		t.Fatal(err)
	}
	// Jobs not from the outbox (no position) are always added.
	if err := q.Enqueue(ctx, []core.Job{job("a", "6")}); err != nil {
		t.Fatal(err)
	}
	for tenant, want := range map[string]int64{"a": 5, "b": 1} {
		n, err := q.Backlog(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("tenant %s: %d jobs queued, want %d", tenant, n, want)
		}
	}
}

// TestDeadLetterReasonsHideSecretURLs: whatever reason a dead letter is
// given, it is stored with the job's secret URL redacted, and so is the
// job's last error (security #13, defect 7b).
func TestDeadLetterReasonsHideSecretURLs(t *testing.T) {
	q := mustQueue(t, time.Minute)
	ctx := context.Background()
	const hook = "https://hooks.slack.com/services/T1/B1/slackSECRET"
	j := job("a", "1")
	j.Action = core.Action{Kind: core.ActionSlack, URL: hook}
	j.LastError = `Post "` + hook + `": EOF`
	if err := q.DeadLetter(ctx, core.Delivery{}, j, "gave up: "+hook+" answered 404"); err != nil {
		t.Fatal(err)
	}
	dls, err := q.DeadLetters(ctx, "a", 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("got %v %v, want one dead letter", dls, err)
	}
	if got, want := dls[0].Reason, "gave up: https://hooks.slack.com/services/*** answered 404"; got != want {
		t.Fatalf("reason: got %q, want %q", got, want)
	}
	if got, want := dls[0].Job.LastError, `Post "https://hooks.slack.com/services/***": EOF`; got != want {
		t.Fatalf("last error: got %q, want %q", got, want)
	}
	// The job itself keeps its target, for a replay to reach it.
	if dls[0].Job.Action.URL != hook {
		t.Fatalf("job's URL: got %q, want %q", dls[0].Job.Action.URL, hook)
	}
}

// TestOldestAge: the backlog's oldest job counts from when it was first
// enqueued, whether it waits in the stream or as a retry.
func TestOldestAge(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, q *redis.Queue)
		min   time.Duration
		max   time.Duration
	}{
		{"no job: 0", func(*testing.T, *redis.Queue) {}, 0, 0},
		{"a waiting job", func(t *testing.T, q *redis.Queue) {
			j := job("t1", "a")
			j.EnqueuedAt = time.Now().Add(-time.Minute)
			if err := q.Enqueue(ctx, []core.Job{j}); err != nil {
				t.Fatal(err)
			}
		}, time.Minute, time.Hour},
		{"a retry older than the waiting job", func(t *testing.T, q *redis.Queue) {
			old, young := job("t1", "old"), job("t1", "young")
			old.EnqueuedAt, young.EnqueuedAt = time.Now().Add(-2*time.Hour), time.Now()
			if err := q.Retry(ctx, core.Delivery{}, old, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := q.Enqueue(ctx, []core.Job{young}); err != nil {
				t.Fatal(err)
			}
		}, 2 * time.Hour, 3 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := mustQueue(t, time.Minute)
			tc.setup(t, q)
			age, err := q.OldestAge(ctx, "t1")
			if err != nil {
				t.Fatal(err)
			}
			if age < tc.min || age > tc.max {
				t.Errorf("got %v, want between %v and %v", age, tc.min, tc.max)
			}
		})
	}
}
