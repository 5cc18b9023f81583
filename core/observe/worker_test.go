package observe_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
)

// partialQueue's first Fetch hands out a delivery and fails: the
// consumer owns the job whatever the error says, as Redis's does when a
// later tenant's read fails after an earlier one's succeeded.
type partialQueue struct {
	mu      sync.Mutex
	fetches int
	done    chan string // receipts completed (acked, retried or dead-lettered)
}

func (q *partialQueue) Enqueue(context.Context, []core.Job) error { return nil }
func (q *partialQueue) Fetch(ctx context.Context, _ string, _ int, _ func(string) int, _ time.Duration) ([]core.Delivery, error) {
	q.mu.Lock()
	q.fetches++
	first := q.fetches == 1
	q.mu.Unlock()
	if first {
		d := core.Delivery{Receipt: "r1", Job: core.Job{ID: "j1", Tenant: "t", Action: core.Action{Kind: "carrier-pigeon"}}}
		return []core.Delivery{d}, errors.New("reading tenant u's stream: i/o timeout")
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
	return nil, nil
}
func (q *partialQueue) Ack(_ context.Context, d core.Delivery) error { q.done <- d.Receipt; return nil }
func (q *partialQueue) Retry(_ context.Context, d core.Delivery, _ core.Job, _ time.Time) error {
	q.done <- d.Receipt
	return nil
}
func (q *partialQueue) DeadLetter(_ context.Context, d core.Delivery, _ core.Job, _ string) error {
	q.done <- d.Receipt
	return nil
}
func (q *partialQueue) Backlog(context.Context, string) (int64, error) { return 0, nil }

// TestWorkerRunsDeliveriesFetchedWithAnError: jobs a fetch delivered before
// it failed are run at once, not left pending until another consumer
// reclaims them a minute later.
func TestWorkerRunsDeliveriesFetchedWithAnError(t *testing.T) {
	q := &partialQueue{done: make(chan string, 4)}
	w := &observe.Worker{Queue: q, Breakers: observe.NewBreakers(nil, nil), MaxAttempts: 3, Consumer: "c1", Block: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case r := <-q.done:
		if r != "r1" {
			t.Fatalf("completed %q, want r1", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the delivery fetched with an error was never run")
	}
}
