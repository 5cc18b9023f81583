package coretest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// HistoryQueue is a job queue that can be reconciled with a restored
// database: JobQueue and core.QueueHistory.
type HistoryQueue interface {
	JobQueue
	core.QueueHistory
}

// NewHistoryQueue returns an in-memory Queue as a HistoryQueue.
func NewHistoryQueue(*testing.T) HistoryQueue { return &Queue{} }

// TestQueueHistoryContract runs core.QueueHistory's contract against the
// implementations newQueue returns, a new one for each case. The cases run
// in parallel.
func TestQueueHistoryContract(t *testing.T, newQueue func(t *testing.T) HistoryQueue) {
	ctx := context.Background()
	at := func(tenant, id string, gen int, n int64) core.Job {
		j := ContractJob(tenant, id)
		j.Event.Pos = core.Position{Generation: gen, XID: 7, ID: n}
		return j
	}
	maxGen := func(tb testing.TB, q HistoryQueue) int {
		tb.Helper()
		g, err := q.MaxGeneration(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		return g
	}
	tests := []struct {
		name string
		run  func(t *testing.T, q HistoryQueue)
	}{
		{"MaxGeneration is the highest generation of an event enqueued", func(t *testing.T, q HistoryQueue) {
			if g := maxGen(t, q); g != 0 {
				t.Fatalf("empty: got %d, want 0", g)
			}
			if err := q.Enqueue(ctx, []core.Job{at(TenantA, "1", 0, 1), at(TenantA, "2", 2, 1), at(TenantB, "3", 1, 5)}); err != nil {
				t.Fatal(err)
			}
			if g := maxGen(t, q); g != 2 {
				t.Fatalf("got %d, want 2", g)
			}
		}},
		{"Sweep offers every job and moves those refused out of reach", func(t *testing.T, q HistoryQueue) {
			// One job of each state: waiting, running, delayed, dead.
			if err := q.Enqueue(ctx, []core.Job{ContractJob(TenantA, "running"), ContractJob(TenantA, "delayed"),
				ContractJob(TenantA, "dead")}); err != nil {
				t.Fatal(err)
			}
			var running core.Delivery
			for _, d := range fetchAll(t, q, 3) {
				var err error
				switch d.Job.ID {
				case "running":
					running = d
				case "delayed":
					err = q.Retry(ctx, d, d.Job, time.Now().Add(time.Hour))
				case "dead":
					err = q.DeadLetter(ctx, d, d.Job, "gave up")
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Enqueue(ctx, []core.Job{ContractJob(TenantB, "waiting")}); err != nil {
				t.Fatal(err)
			}
			var offered []string
			refuse := []string{"running", "dead"}
			keep := func(_ context.Context, jobs []core.Job) ([]bool, error) {
				ok := make([]bool, len(jobs))
				for i, j := range jobs {
					offered = append(offered, j.ID)
					ok[i] = !slices.Contains(refuse, j.ID)
				}
				return ok, nil
			}
			kept, moved, err := q.Sweep(ctx, keep, "restored")
			if err != nil || kept != 2 || moved != 2 {
				t.Fatalf("got kept %d, moved %d, %v; want 2 and 2", kept, moved, err)
			}
			slices.Sort(offered)
			if want := []string{"dead", "delayed", "running", "waiting"}; !slices.Equal(offered, want) {
				t.Fatalf("offered %v, want %v", offered, want)
			}
			// The running job's worker finishing it is harmless.
			if err := q.Ack(ctx, running); err != nil {
				t.Fatal(err)
			}
			if dls, _ := q.DeadLetters(ctx, TenantA, 10); len(dls) != 0 {
				t.Fatalf("dead letters: got %+v, want the moved one gone", dls)
			}
			if n, err := q.Replay(ctx, TenantA, nil); err != nil || n != 0 {
				t.Fatalf("replay: got %d %v, want nothing to replay", n, err)
			}
			if a, b := backlogOf(t, q, TenantA), backlogOf(t, q, TenantB); a != 1 || b != 1 {
				t.Fatalf("backlogs: got A %d, B %d, want the delayed and the waiting job", a, b)
			}
			offered = nil
			if kept, moved, err := q.Sweep(ctx, keep, "restored"); err != nil || kept != 2 || moved != 0 {
				t.Fatalf("again: got kept %d, moved %d, %v; want 2 and 0", kept, moved, err)
			}
		}},
		{"Sweep fails with keep's error", func(t *testing.T, q HistoryQueue) {
			if err := q.Enqueue(ctx, []core.Job{ContractJob(TenantA, "1")}); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("outbox unavailable")
			_, moved, err := q.Sweep(ctx, func(context.Context, []core.Job) ([]bool, error) { return nil, boom }, "restored")
			if !errors.Is(err, boom) || moved != 0 {
				t.Fatalf("got moved %d, %v; want nothing moved and %v", moved, err, boom)
			}
			if n := backlogOf(t, q, TenantA); n != 1 {
				t.Fatalf("backlog %d, want the job kept", n)
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

// fetchAll fetches until n deliveries came, or fails tb.
func fetchAll(tb testing.TB, q core.JobQueue, n int) []core.Delivery {
	tb.Helper()
	var out []core.Delivery
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		ds, err := q.Fetch(context.Background(), "contract", n-len(out), AnyRoom, 100*time.Millisecond)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, ds...)
	}
	if len(out) < n {
		tb.Fatalf("fetched %d jobs in 10 s, want %d", len(out), n)
	}
	return out
}

func backlogOf(tb testing.TB, q core.JobQueue, tenant string) int64 {
	tb.Helper()
	n, err := q.Backlog(context.Background(), tenant)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
