package coretest

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
)

// JobQueue is what the observers need of their queue: core.JobQueue and
// core.DeadLetters, which every implementation provides together.
type JobQueue interface {
	core.JobQueue
	core.DeadLetters
}

// JobQueueFixture is an implementation of JobQueue under test.
type JobQueueFixture struct {
	Queue JobQueue
	// ReclaimIdle is how long Queue leaves a delivery with a consumer
	// before another may take it over. Keep it short: a case waits it out.
	ReclaimIdle time.Duration
}

// NewJobQueueFixture returns an in-memory Queue that reclaims after 100 ms.
func NewJobQueueFixture(*testing.T) JobQueueFixture {
	return JobQueueFixture{Queue: &Queue{ReclaimIdle: 100 * time.Millisecond}, ReclaimIdle: 100 * time.Millisecond}
}

// ContractJob returns a job of tenant with id, not from the outbox.
func ContractJob(tenant, id string) core.Job {
	return core.Job{ID: id, Tenant: tenant, RuleID: "r", RuleName: "rule", Action: core.Action{Kind: core.ActionWebhook, URL: "https://hooks.example.test/x"}}
}

// AnyRoom is a Fetch's room function that leaves every tenant room.
func AnyRoom(string) int { return 100 }

// TestJobQueueContract runs core.JobQueue's and core.DeadLetters' contract
// against the implementations newQueue returns, a new one for each case. The cases run in parallel.
func TestJobQueueContract(t *testing.T, newQueue func(t *testing.T) JobQueueFixture) {
	ctx := context.Background()
	enqueue := func(tb testing.TB, q JobQueue, jobs ...core.Job) {
		tb.Helper()
		if err := q.Enqueue(ctx, jobs); err != nil {
			tb.Fatal(err)
		}
	}
	fetch := func(tb testing.TB, q JobQueue, consumer string, max int, room func(string) int) []core.Delivery {
		tb.Helper()
		ds, err := q.Fetch(ctx, consumer, max, room, 10*time.Millisecond)
		if err != nil {
			tb.Fatal(err)
		}
		return ds
	}
	// fetchUntil fetches until n deliveries came, or fails.
	fetchUntil := func(tb testing.TB, q JobQueue, consumer string, n int, what string) []core.Delivery {
		tb.Helper()
		var got []core.Delivery
		await.Until(tb, 10*time.Second, what, func() bool {
			got = append(got, fetch(tb, q, consumer, 100, AnyRoom)...)
			return len(got) >= n
		})
		return got
	}
	backlog := func(tb testing.TB, q JobQueue, tenant string) int64 {
		tb.Helper()
		n, err := q.Backlog(ctx, tenant)
		if err != nil {
			tb.Fatal(err)
		}
		return n
	}
	ids := func(ds []core.Delivery) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Job.ID)
		}
		return out
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f JobQueueFixture)
	}{
		{"enqueued jobs are fetched once, whole, in order", func(t *testing.T, f JobQueueFixture) {
			j := ContractJob(TenantA, "1")
			j.Event = Inserted(TenantA, "public.orders", 1)
			j.Event.Pos = core.Position{XID: 7, ID: 1}
			j.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			enqueue(t, f.Queue, j, ContractJob(TenantA, "2"), ContractJob(TenantB, "3"))
			ds := fetchUntil(t, f.Queue, "c1", 3, "three jobs")
			if len(ds) != 3 {
				t.Fatalf("got %v, want 3 jobs", ids(ds))
			}
			byID := map[string]core.Delivery{}
			for _, d := range ds {
				byID[d.Job.ID] = d
				if d.Receipt == "" {
					t.Errorf("job %s: no receipt", d.Job.ID)
				}
			}
			if i1, i2 := slices.Index(ids(ds), "1"), slices.Index(ids(ds), "2"); i1 > i2 {
				t.Errorf("got %v, want tenant A's job 1 before its job 2", ids(ds))
			}
			got := byID["1"].Job
			if got.Tenant != TenantA || got.RuleID != "r" || got.Action.URL != j.Action.URL || got.Action.Kind != j.Action.Kind || got.Event.Pos != j.Event.Pos ||
				string(got.Event.Key) != string(j.Event.Key) || got.TraceParent != j.TraceParent {
				t.Errorf("got %+v, want %+v", got, j)
			}
			if more := fetch(t, f.Queue, "c1", 100, AnyRoom); len(more) != 0 {
				t.Fatalf("fetched %v again", ids(more))
			}
		}},
		{"room bounds a tenant's share and max the whole", func(t *testing.T, f JobQueueFixture) {
			for i := range 3 {
				enqueue(t, f.Queue, ContractJob(TenantA, "a"+strconv.Itoa(i)), ContractJob(TenantB, "b"+strconv.Itoa(i)))
			}
			room := func(tenant string) int {
				if tenant == TenantA {
					return 1
				}
				return 0
			}
			ds := fetch(t, f.Queue, "c1", 100, room)
			if len(ds) != 1 || ds[0].Job.Tenant != TenantA {
				t.Fatalf("room A 1, B 0: got %v, want one job of A", ids(ds))
			}
			if ds := fetch(t, f.Queue, "c1", 2, AnyRoom); len(ds) != 2 {
				t.Fatalf("max 2: got %v", ids(ds))
			}
		}},
		{"the backlog counts waiting, running and delayed jobs", func(t *testing.T, f JobQueueFixture) {
			enqueue(t, f.Queue, ContractJob(TenantA, "1"), ContractJob(TenantA, "2"), ContractJob(TenantA, "3"))
			if n := backlog(t, f.Queue, TenantA); n != 3 {
				t.Fatalf("enqueued: backlog %d, want 3", n)
			}
			if n := backlog(t, f.Queue, TenantB); n != 0 {
				t.Fatalf("another tenant: backlog %d, want 0", n)
			}
			ds := fetchUntil(t, f.Queue, "c1", 3, "three jobs")
			if n := backlog(t, f.Queue, TenantA); n != 3 {
				t.Fatalf("running: backlog %d, want 3", n)
			}
			if err := f.Queue.Ack(ctx, ds[0]); err != nil {
				t.Fatal(err)
			}
			if err := f.Queue.Retry(ctx, ds[1], ds[1].Job, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := f.Queue.DeadLetter(ctx, ds[2], ds[2].Job, "gave up"); err != nil {
				t.Fatal(err)
			}
			if n := backlog(t, f.Queue, TenantA); n != 1 {
				t.Fatalf("one acked, one delayed, one dead: backlog %d, want 1", n)
			}
		}},
		{"a retry comes back when due, as given", func(t *testing.T, f JobQueueFixture) {
			enqueue(t, f.Queue, ContractJob(TenantA, "later"), ContractJob(TenantA, "now"))
			ds := fetchUntil(t, f.Queue, "c1", 2, "two jobs")
			for _, d := range ds {
				j := d.Job
				j.Attempt, j.LastError = 1, "503"
				at := time.Now().Add(-time.Second)
				if j.ID == "later" {
					at = time.Now().Add(time.Hour)
				}
				if err := f.Queue.Retry(ctx, d, j, at); err != nil {
					t.Fatal(err)
				}
			}
			back := fetchUntil(t, f.Queue, "c1", 1, "the due retry")
			if len(back) != 1 || back[0].Job.ID != "now" || back[0].Job.Attempt != 1 || back[0].Job.LastError != "503" {
				t.Fatalf("got %+v, want job now with attempt 1 and its last error", back)
			}
			if more := fetch(t, f.Queue, "c1", 100, AnyRoom); len(more) != 0 {
				t.Fatalf("got %v, want the retry due in an hour to wait", ids(more))
			}
		}},
		{"jobs of an event already enqueued are not enqueued again", func(t *testing.T, f JobQueueFixture) {
			at := func(tenant, id string, xid uint64, n int64) core.Job {
				j := ContractJob(tenant, id)
				j.Event.Pos = core.Position{XID: xid, ID: n}
				return j
			}
			batch := []core.Job{at(TenantA, "1", 7, 1), at(TenantA, "2", 7, 1), at(TenantA, "3", 7, 2), at(TenantB, "4", 7, 3)}
			for range 3 {
				enqueue(t, f.Queue, batch...)
			}
			enqueue(t, f.Queue, at(TenantA, "3", 7, 2), at(TenantA, "5", 8, 1)) // overlapping the last batch
			enqueue(t, f.Queue, ContractJob(TenantA, "6"), ContractJob(TenantA, "6"))
			for tenant, want := range map[string]int64{TenantA: 6, TenantB: 1} {
				if n := backlog(t, f.Queue, tenant); n != want {
					t.Errorf("tenant %s: backlog %d, want %d", tenant, n, want)
				}
			}
		}},
		{"dead letters are listed oldest first, redacted, and replayed", func(t *testing.T, f JobQueueFixture) {
			const hook = "https://hooks.slack.com/services/T1/B1/slackSECRET"
			slack := ContractJob(TenantA, "slack")
			slack.Action = core.Action{Kind: core.ActionSlack, URL: hook}
			enqueue(t, f.Queue, slack)
			d := fetchUntil(t, f.Queue, "c1", 1, "the job")[0]
			d.Job.Attempt, d.Job.LastError = 4, `Post "`+hook+`": EOF`
			if err := f.Queue.DeadLetter(ctx, d, d.Job, "gave up: "+hook+" answered 404"); err != nil {
				t.Fatal(err)
			}
			// Dead-lettered without a delivery, as backpressure does.
			if err := f.Queue.DeadLetter(ctx, core.Delivery{}, ContractJob(TenantA, "refused"), "backpressure"); err != nil {
				t.Fatal(err)
			}
			dls, err := f.Queue.DeadLetters(ctx, TenantA, 10)
			if err != nil || len(dls) != 2 || dls[0].Job.ID != "slack" || dls[1].Job.ID != "refused" {
				t.Fatalf("got %+v %v, want slack then refused", dls, err)
			}
			if want := "gave up: https://hooks.slack.com/services/*** answered 404"; dls[0].Reason != want {
				t.Errorf("reason: got %q, want %q", dls[0].Reason, want)
			}
			if want := `Post "https://hooks.slack.com/services/***": EOF`; dls[0].Job.LastError != want {
				t.Errorf("last error: got %q, want %q", dls[0].Job.LastError, want)
			}
			if dls[0].Job.Action.URL != hook || dls[0].ID == "" || dls[0].At.IsZero() || time.Since(dls[0].At) > time.Minute {
				t.Errorf("got %+v, want the job's URL kept, an id and the time", dls[0])
			}
			if one, _ := f.Queue.DeadLetters(ctx, TenantA, 1); len(one) != 1 || one[0].ID != dls[0].ID {
				t.Errorf("limit 1: got %+v, want the oldest", one)
			}
			if other, _ := f.Queue.DeadLetters(ctx, TenantB, 10); len(other) != 0 {
				t.Errorf("another tenant: got %+v, want none", other)
			}
			if _, err := f.Queue.Replay(ctx, TenantA, []string{dls[1].ID, "1-1"}); core.ErrorCode(err) != core.CodeNotFound {
				t.Fatalf("replay of a missing id: got %v, want NOT_FOUND", err)
			}
			if n, err := f.Queue.Replay(ctx, TenantA, []string{dls[0].ID}); err != nil || n != 1 {
				t.Fatalf("replay of one: got %d %v, want 1", n, err)
			}
			back := fetchUntil(t, f.Queue, "c1", 1, "the replayed job")
			if len(back) != 1 || back[0].Job.ID != "slack" || back[0].Job.Attempt != 0 {
				t.Fatalf("got %+v, want the slack job with its attempts reset", back)
			}
			if n, err := f.Queue.Replay(ctx, TenantA, nil); err != nil || n != 1 {
				t.Fatalf("replay of all: got %d %v, want the 1 left", n, err)
			}
			if left, _ := f.Queue.DeadLetters(ctx, TenantA, 10); len(left) != 0 {
				t.Fatalf("after replay: got %+v, want none", left)
			}
		}},
		{"a delivery left idle is reclaimed by another consumer", func(t *testing.T, f JobQueueFixture) {
			enqueue(t, f.Queue, ContractJob(TenantA, "1"))
			held := fetchUntil(t, f.Queue, "c1", 1, "the job")
			if ds := fetch(t, f.Queue, "c2", 100, AnyRoom); len(ds) != 0 {
				t.Fatalf("c2 got %v while c1 was running it", ids(ds))
			}
			got := fetchUntil(t, f.Queue, "c2", 1, "c2 reclaiming the idle job")
			if len(got) != 1 || got[0].Job.ID != held[0].Job.ID {
				t.Fatalf("c2 got %v, want the job c1 left", ids(got))
			}
			if err := f.Queue.Ack(ctx, got[0]); err != nil {
				t.Fatal(err)
			}
			if n := backlog(t, f.Queue, TenantA); n != 0 {
				t.Fatalf("backlog %d after the reclaimed job's ack, want 0", n)
			}
		}},
		{"room bounds reclaimed and new jobs together", func(t *testing.T, f JobQueueFixture) {
			enqueue(t, f.Queue, ContractJob(TenantA, "old"))
			fetchUntil(t, f.Queue, "c1", 1, "the job")
			held := time.Now()
			enqueue(t, f.Queue, ContractJob(TenantA, "new"))
			// c2 has no room until c1's job is surely idle, then room
			// for one: the reclaimed job or the new one, not both.
			one := func(string) int {
				if time.Since(held) < 2*f.ReclaimIdle {
					return 0
				}
				return 1
			}
			var got []core.Delivery
			await.Until(t, 10*time.Second, "c2 taking a job", func() bool {
				got = fetch(t, f.Queue, "c2", 100, one)
				return len(got) > 0
			})
			if len(got) != 1 {
				t.Fatalf("room 1: got %v, want one job", ids(got))
			}
		}},
		{"one Fetch finds a job among many tenants with room and none", func(t *testing.T, f JobQueueFixture) {
			var all []core.Job
			for i := range 30 {
				all = append(all, ContractJob("tenant-"+strconv.Itoa(i), "old-"+strconv.Itoa(i)))
			}
			enqueue(t, f.Queue, all...)
			for _, d := range fetchUntil(t, f.Queue, "c1", 30, "every tenant's job") {
				if err := f.Queue.Ack(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			enqueue(t, f.Queue, ContractJob("tenant-17", "new"))
			ds, err := f.Queue.Fetch(ctx, "c1", 2, AnyRoom, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].Job.ID != "new" {
				t.Fatalf("max 2 among 30 tenants: got %v, want the one job waiting", ids(ds))
			}
		}},
		{"concurrent consumers get each job once", func(t *testing.T, f JobQueueFixture) {
			var jobs []core.Job
			for i := range 100 {
				jobs = append(jobs, ContractJob([]string{TenantA, TenantB}[i%2], strconv.Itoa(i)))
			}
			var (
				mu   sync.Mutex
				seen = map[string]int{}
				wg   sync.WaitGroup
			)
			for c := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					deadline := time.Now().Add(10 * time.Second)
					for time.Now().Before(deadline) {
						mu.Lock()
						done := len(seen) == len(jobs)
						mu.Unlock()
						if done {
							return
						}
						ds, err := f.Queue.Fetch(ctx, "c"+strconv.Itoa(c), 7, AnyRoom, 10*time.Millisecond)
						if err != nil {
							t.Error(err)
							return
						}
						for _, d := range ds {
							mu.Lock()
							seen[d.Job.ID]++
							mu.Unlock()
							if err := f.Queue.Ack(ctx, d); err != nil {
								t.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f.Queue.Enqueue(ctx, jobs[:50]); err != nil {
					t.Error(err)
				}
			}()
			enqueue(t, f.Queue, jobs[50:]...)
			wg.Wait()
			for _, j := range jobs {
				if seen[j.ID] != 1 {
					t.Errorf("job %s delivered %d times, want once", j.ID, seen[j.ID])
				}
			}
		}},
		{"Fetch waits for a job up to block", func(t *testing.T, f JobQueueFixture) {
			enqueue(t, f.Queue, ContractJob(TenantA, "0")) // the tenant is known
			fetchUntil(t, f.Queue, "c1", 1, "the first job")
			var (
				wg  sync.WaitGroup
				ds  []core.Delivery
				err error
			)
			start := time.Now()
			wg.Add(1)
			go func() {
				defer wg.Done()
				ds, err = f.Queue.Fetch(ctx, "c1", 10, AnyRoom, 5*time.Second)
			}()
			enqueue(t, f.Queue, ContractJob(TenantA, "1"))
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); len(ds) != 1 || el > 4*time.Second {
				t.Fatalf("got %v after %v, want the job enqueued, at once", ids(ds), el)
			}
			start = time.Now()
			if ds, err := f.Queue.Fetch(ctx, "c1", 10, AnyRoom, 50*time.Millisecond); err != nil || len(ds) != 0 || time.Since(start) > 5*time.Second {
				t.Fatalf("nothing to fetch: got %v %v after %v, want none after about 50 ms", ids(ds), err, time.Since(start))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newQueue(t))
		})
	}
}
