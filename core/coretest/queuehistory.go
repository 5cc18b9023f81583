package coretest

import (
	"context"
	"slices"

	"github.com/fraise-dev/fraise/core"
)

// The queue's side of reconciling it with a restored database.
var _ core.QueueHistory = (*Queue)(nil)

// MaxGeneration implements core.QueueHistory: the highest generation among
// the positions of the events whose jobs each tenant's queue took.
func (q *Queue) MaxGeneration(context.Context) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	top := 0
	for _, t := range q.byName {
		top = max(top, t.last.Generation)
	}
	return top, nil
}

// Sweep implements core.QueueHistory, tenant by tenant: its waiting,
// running, delayed and dead-lettered jobs, each kind in one batch. It
// holds the queue while keep runs, so keep must not call the queue.
func (q *Queue) Sweep(ctx context.Context, keep func(ctx context.Context, jobs []core.Job) ([]bool, error), reason string) (kept, moved int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// sweep offers the jobs of list, keeping those keep keeps.
	sweep := func(tenant string, jobs []core.Job) ([]bool, error) {
		if len(jobs) == 0 {
			return nil, nil
		}
		ok, err := keep(ctx, jobs)
		if err != nil {
			return nil, err
		}
		for i, j := range jobs {
			if ok[i] {
				kept++
				continue
			}
			moved++
			q.byName[tenant].lost = append(q.byName[tenant].lost, LostJob{Job: j, Reason: reason})
		}
		return ok, nil
	}
	for _, name := range q.tenants {
		t := q.byName[name]
		ok, err := sweep(name, mapJobs(t.ready, func(e queued) core.Job { return e.job }))
		if err != nil {
			return kept, moved, err
		}
		t.ready = filterKept(t.ready, ok)
		if ok, err = sweep(name, mapJobs(t.running, func(r running) core.Job { return r.job })); err != nil {
			return kept, moved, err
		}
		t.running = filterKept(t.running, ok)
		if ok, err = sweep(name, mapJobs(t.delayed, func(d delayed) core.Job { return d.job })); err != nil {
			return kept, moved, err
		}
		t.delayed = filterKept(t.delayed, ok)
		if ok, err = sweep(name, mapJobs(t.dead, func(d core.DeadLetter) core.Job { return d.Job })); err != nil {
			return kept, moved, err
		}
		t.dead = filterKept(t.dead, ok)
	}
	return kept, moved, nil
}

// LostJob is a job Sweep moved out of reach, and why.
type LostJob struct {
	Job    core.Job
	Reason string
}

// Lost returns the jobs of tenant Sweep moved out of reach, in the order
// it moved them: what a restore kept from being sent.
func (q *Queue) Lost(tenant string) []LostJob {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t, ok := q.byName[tenant]; ok {
		return slices.Clone(t.lost)
	}
	return nil
}

func mapJobs[E any](es []E, job func(E) core.Job) []core.Job {
	out := make([]core.Job, len(es))
	for i, e := range es {
		out[i] = job(e)
	}
	return out
}

// filterKept returns the elements of es whose ok is true (all when ok is
// nil: nothing was offered).
func filterKept[E any](es []E, ok []bool) []E {
	if ok == nil {
		return es
	}
	out := es[:0:0]
	for i, e := range es {
		if ok[i] {
			out = append(out, e)
		}
	}
	return out
}
