package coretest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// Queue is the observers' job queue in memory (core.JobQueue and
// core.DeadLetters), with the Redis queue's semantics: per-tenant FIFO
// queues, deliveries that stay with a consumer until acknowledged, retried
// or dead-lettered and are reclaimed by another consumer once idle for
// ReclaimIdle, retries that wait until due, idempotent enqueues of outbox
// events, and a dead-letter list per tenant with replay. Times are read
// from Now, so a test can move a Clock instead of waiting. It is safe for
// concurrent use; set its fields before first use.
type Queue struct {
	// ReclaimIdle is how long a delivery may stay with a consumer before
	// another consumer's Fetch takes it over (1 min when zero).
	ReclaimIdle time.Duration
	// Now is the clock retries and reclaims are timed on (time.Now when
	// nil).
	Now func() time.Time

	mu      sync.Mutex
	tenants []string // in the order they first had jobs
	byName  map[string]*tenantJobs
	seq     int64
	wake    chan struct{} // closed when jobs are added
}

// tenantJobs is one tenant's queue.
type tenantJobs struct {
	ready   []queued
	running []running
	delayed []delayed
	dead    []core.DeadLetter
	// last is the position of the last outbox event whose jobs were
	// enqueued (zero: none).
	last core.Position
	// lost are the jobs Sweep moved out of reach.
	lost []LostJob
}

type queued struct {
	receipt string
	job     core.Job
}

type running struct {
	queued
	consumer string
	since    time.Time
}

type delayed struct {
	job core.Job
	at  time.Time
}

var (
	_ core.JobQueue    = (*Queue)(nil)
	_ core.DeadLetters = (*Queue)(nil)
)

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

func (q *Queue) reclaimIdle() time.Duration {
	if q.ReclaimIdle <= 0 {
		return time.Minute
	}
	return q.ReclaimIdle
}

// tenantLocked returns tenant's queue, creating it.
func (q *Queue) tenantLocked(tenant string) *tenantJobs {
	if q.byName == nil {
		q.byName = map[string]*tenantJobs{}
	}
	t, ok := q.byName[tenant]
	if !ok {
		t = &tenantJobs{}
		q.byName[tenant] = t
		q.tenants = append(q.tenants, tenant)
	}
	return t
}

func (q *Queue) receiptLocked() string {
	q.seq++
	return fmt.Sprintf("%d-0", q.seq)
}

// wakeLocked wakes the Fetches waiting for jobs.
func (q *Queue) wakeLocked() {
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
}

// Enqueue implements core.JobQueue. As in Redis, a tenant's jobs of events
// at or before the last position it took are skipped, compared with the
// position it had before this call: a batch holds several jobs of one
// event.
func (q *Queue) Enqueue(ctx context.Context, jobs []core.Job) error {
	if err := ctx.Err(); err != nil {
		return core.E("coretest.Queue.Enqueue", core.CodeUnavailable, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	before := map[string]core.Position{}
	for _, j := range jobs {
		t := q.tenantLocked(j.Tenant)
		last, seen := before[j.Tenant]
		if !seen {
			last = t.last
			before[j.Tenant] = last
		}
		pos := j.Event.Pos
		if pos != (core.Position{}) && last != (core.Position{}) && !last.Less(pos) {
			continue
		}
		t.ready = append(t.ready, queued{receipt: q.receiptLocked(), job: j})
		if t.last.Less(pos) {
			t.last = pos
		}
	}
	if len(jobs) > 0 {
		q.wakeLocked()
	}
	return nil
}

// Fetch implements core.JobQueue: reclaimed deliveries first, then
// waiting jobs, tenant by tenant, at most room(t) of tenant t in all.
// When there are none it waits up to block for a job to be enqueued,
// checking for retries falling due as it waits.
func (q *Queue) Fetch(ctx context.Context, consumer string, max int, room func(string) int, block time.Duration) ([]core.Delivery, error) {
	if max <= 0 {
		return nil, nil
	}
	deadline := time.Now().Add(block)
	for {
		q.mu.Lock()
		out := q.takeLocked(consumer, max, room)
		if q.wake == nil {
			q.wake = make(chan struct{})
		}
		wake := q.wake
		q.mu.Unlock()
		left := time.Until(deadline)
		if len(out) > 0 || left <= 0 {
			return out, nil
		}
		// Retries fall due on q's clock, which may be a test's: look
		// again now and then rather than only when woken.
		t := time.NewTimer(min(left, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (q *Queue) takeLocked(consumer string, max int, room func(string) int) []core.Delivery {
	now := q.now()
	idle := q.reclaimIdle()
	taken := map[string]int{}
	var out []core.Delivery
	take := func(tenant string, e queued, t *tenantJobs) {
		t.running = append(t.running, running{queued: e, consumer: consumer, since: now})
		out = append(out, core.Delivery{Job: e.job, Receipt: e.receipt})
		taken[tenant]++
	}
	for _, name := range q.tenants {
		t := q.byName[name]
		// Release due retries.
		for i := 0; i < len(t.delayed); {
			if d := t.delayed[i]; !d.at.After(now) {
				t.ready = append(t.ready, queued{receipt: q.receiptLocked(), job: d.job})
				t.delayed = slices.Delete(t.delayed, i, i+1)
				continue
			}
			i++
		}
	}
	// Reclaim first: a stopped consumer's jobs are the oldest.
	for _, name := range q.tenants {
		t := q.byName[name]
		for i := 0; i < len(t.running) && len(out) < max && taken[name] < room(name); {
			r := t.running[i]
			if now.Sub(r.since) < idle {
				i++
				continue
			}
			t.running = slices.Delete(t.running, i, i+1)
			take(name, r.queued, t)
		}
	}
	for _, name := range q.tenants {
		t := q.byName[name]
		for len(t.ready) > 0 && len(out) < max && taken[name] < room(name) {
			e := t.ready[0]
			t.ready = t.ready[1:]
			take(name, e, t)
		}
	}
	return out
}

// finishLocked removes the delivery with receipt from tenant's running
// jobs; an unknown receipt (already finished, or none) is no error.
func (q *Queue) finishLocked(tenant, receipt string) *tenantJobs {
	t := q.tenantLocked(tenant)
	if receipt != "" {
		t.running = slices.DeleteFunc(t.running, func(r running) bool { return r.receipt == receipt })
	}
	return t
}

// Ack implements core.JobQueue.
func (q *Queue) Ack(_ context.Context, d core.Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.finishLocked(d.Job.Tenant, d.Receipt)
	return nil
}

// Retry implements core.JobQueue.
func (q *Queue) Retry(_ context.Context, d core.Delivery, job core.Job, at time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.finishLocked(job.Tenant, d.Receipt)
	t := q.tenantLocked(job.Tenant)
	t.delayed = append(t.delayed, delayed{job: job, at: at})
	return nil
}

// DeadLetter implements core.JobQueue. The reason and the job's last error
// are kept redacted of the job's target (core.RedactActionText), as the
// Redis queue keeps them.
func (q *Queue) DeadLetter(_ context.Context, d core.Delivery, job core.Job, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.finishLocked(job.Tenant, d.Receipt)
	job.LastError = core.RedactActionText(job.LastError, job.Action)
	t.dead = append(t.dead, core.DeadLetter{ID: q.receiptLocked(), Job: job,
		Reason: core.RedactActionText(reason, job.Action), At: q.now().UTC().Truncate(time.Millisecond)})
	return nil
}

// Backlog implements core.JobQueue: jobs waiting, running or due later.
func (q *Queue) Backlog(_ context.Context, tenant string) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.byName[tenant]
	if !ok {
		return 0, nil
	}
	return int64(len(t.ready) + len(t.running) + len(t.delayed)), nil
}

// DeadLetters implements core.DeadLetters; limit <= 0 means 100.
func (q *Queue) DeadLetters(_ context.Context, tenant string, limit int) ([]core.DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	out := []core.DeadLetter{}
	if t, ok := q.byName[tenant]; ok {
		out = append(out, t.dead[:min(limit, len(t.dead))]...)
	}
	return out, nil
}

// Replay implements core.DeadLetters. An id that names no dead letter of
// tenant fails the call with CodeNotFound, and nothing is moved.
func (q *Queue) Replay(_ context.Context, tenant string, ids []string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tenantLocked(tenant)
	for _, id := range ids {
		if !slices.ContainsFunc(t.dead, func(d core.DeadLetter) bool { return d.ID == id }) {
			return 0, core.Errorf(core.CodeNotFound, "no dead letter %s", id).WithOp("coretest.Queue.Replay")
		}
	}
	n := 0
	t.dead = slices.DeleteFunc(t.dead, func(d core.DeadLetter) bool {
		if len(ids) > 0 && !slices.Contains(ids, d.ID) {
			return false
		}
		d.Job.Attempt = 0
		t.ready = append(t.ready, queued{receipt: q.receiptLocked(), job: d.Job})
		n++
		return true
	})
	if n > 0 {
		q.wakeLocked()
	}
	return n, nil
}
