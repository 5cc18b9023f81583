package observe

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// Dispatcher reads committed events from the outbox in order, matches them
// against the tenants' rules and enqueues a job per matching action. It
// advances its cursor only after the jobs of every event before it are
// enqueued: when the queue is unreachable it stays where it is (degraded
// mode) and the events wait in PostgreSQL until the queue is back.
type Dispatcher struct {
	Events core.EventLog
	Rules  core.RuleStore
	Queue  core.JobQueue
	// Name is the cursor's name (one dispatcher leads per name).
	Name string
	// Batch is how many events one read returns (500 when zero).
	Batch        int
	Backpressure Backpressure
	Compiler     *Compiler
	// Protection is what the served schema protects: rules that name no
	// columns capture none of it (nil protects nothing).
	Protection *Protection
	// RulesRefresh is how often the rules are reloaded whether or not the
	// store says they changed (1 min when zero): a notification lost with
	// its connection must not leave stale rules matching for ever.
	RulesRefresh time.Duration
	Logger       *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Reconciler, when set, is run each time the dispatcher starts to
	// lead, before it reads the cursor: a database restored or failed over
	// under a running system is reconciled with the queue before its first
	// event is dispatched (nil: never).
	Reconciler *Reconciler
	// Metrics, when set, is told the jobs enqueued and when the
	// dispatcher enters and leaves degraded mode.
	Metrics Metrics

	rules     atomic.Pointer[loadedRules]
	degraded  atomic.Bool
	delivered atomic.Int64

	mu       sync.Mutex
	jobBytes float64 // moving average of an encoded job's size
	backlogs map[string]backlogAt
}

type backlogAt struct {
	n  int64
	at time.Time
}

// backlog returns tenant's queue length, asked at most every 250 ms: the
// bound is approximate anyway, and asking per batch costs a round trip per
// tenant per batch.
func (d *Dispatcher) backlog(ctx context.Context, tenant string) (int64, error) {
	d.mu.Lock()
	b, ok := d.backlogs[tenant]
	d.mu.Unlock()
	if ok && d.Now().Sub(b.at) < 250*time.Millisecond {
		return b.n, nil
	}
	n, err := d.Queue.Backlog(ctx, tenant)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	if d.backlogs == nil || len(d.backlogs) > 100_000 {
		d.backlogs = map[string]backlogAt{}
	}
	d.backlogs[tenant] = backlogAt{n, d.Now()}
	d.mu.Unlock()
	return n, nil
}

// Degraded reports whether the last enqueue failed: the dispatcher is
// holding its position until the queue answers again.
func (d *Dispatcher) Degraded() bool { return d.degraded.Load() }

func (d *Dispatcher) reportDegraded(on bool) {
	if d.Metrics != nil {
		d.Metrics.Degraded(on)
	}
}

// Enqueued returns how many jobs the dispatcher enqueued.
func (d *Dispatcher) Enqueued() int64 { return d.delivered.Load() }

func (d *Dispatcher) defaults() {
	if d.Batch <= 0 {
		d.Batch = 500
	}
	if d.Name == "" {
		d.Name = "default"
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Compiler == nil {
		d.Compiler = NewCompiler()
	}
	if d.RulesRefresh <= 0 {
		d.RulesRefresh = time.Minute
	}
}

// loadedRules is a rule set with the store's version it reflects at
// least: every change up to version is in set.
type loadedRules struct {
	set     *RuleSet
	version int64
}

// LoadRules replaces the rule set with the store's enabled rules.
func (d *Dispatcher) LoadRules(ctx context.Context) error {
	d.defaults()
	// The version is read first: a change committed between the two reads
	// makes the set newer than its version, and costs one reload more.
	v, err := d.Rules.RulesVersion(ctx)
	if err != nil {
		return err
	}
	rules, err := d.Rules.EnabledRules(ctx)
	if err != nil {
		return err
	}
	set, err := NewRuleSet(d.Compiler, rules, d.Protection)
	if err != nil {
		// Keep the rules that compiled: one broken rule must not stop others.
		d.Logger.Error("observer rules", "err", err)
	}
	d.rules.Store(&loadedRules{set: set, version: v})
	return nil
}

// currentRules reloads the rules when the store's version moved since
// they were loaded. Called after a batch of events is read, it makes the
// batch match every rule committed before any of its events: the
// notification that rules changed comes on another connection, and may
// arrive after the events of changes committed later.
func (d *Dispatcher) currentRules(ctx context.Context) error {
	v, err := d.Rules.RulesVersion(ctx)
	if err != nil {
		return err
	}
	if l := d.rules.Load(); l != nil && l.version == v {
		return nil
	}
	return d.LoadRules(ctx)
}

// keepRules reloads the rules when the store says they changed, every
// RulesRefresh, and a second after a reload failed, until ctx ends.
func (d *Dispatcher) keepRules(ctx context.Context, log *slog.Logger, changed <-chan struct{}) {
	tick := time.NewTicker(d.RulesRefresh)
	defer tick.Stop()
	var retry <-chan time.Time
	for {
		select {
		case _, ok := <-changed:
			if !ok {
				return
			}
		case <-tick.C:
		case <-retry:
		case <-ctx.Done():
			return
		}
		retry = nil
		if err := d.LoadRules(ctx); err != nil && ctx.Err() == nil {
			log.Warn("reloading observer rules", "err", err)
			retry = time.After(time.Second)
		}
	}
}

// Run dispatches until ctx ends; it returns ctx's error.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.defaults()
	log := d.Logger.With("component", "observer-dispatcher", "cursor", d.Name)
	changed := d.Rules.Changed(ctx)
	// Loaded at every start, even when an earlier Run left rules: while
	// another process led, they may have changed without this one hearing.
	for {
		err := d.LoadRules(ctx)
		if err == nil {
			break
		}
		log.Warn("loading observer rules", "err", err)
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	go d.keepRules(ctx, log, changed)
	for d.Reconciler != nil {
		_, err := d.Reconciler.Reconcile(ctx)
		if err == nil {
			break
		}
		log.Warn("reconciling the observer queue with the outbox", "err", err)
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	var pos core.Position
	for {
		p, err := d.Events.Cursor(ctx, d.Name)
		if err == nil {
			pos = p
			break
		}
		log.Warn("reading observer cursor", "err", err)
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	failures := 0
	pause := func(err error, msg string) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failures++
		log.Warn(msg, "err", err, "failures", failures)
		return sleep(ctx, retryPause(failures))
	}
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		events, err := d.Events.Read(ctx, pos, d.Batch)
		if err != nil {
			if err := pause(err, "reading the outbox"); err != nil {
				return err
			}
			continue
		}
		if len(events) == 0 {
			failures = 0
			if err := d.Events.Wait(ctx, time.Second); err != nil {
				return err
			}
			continue
		}
		if err := d.currentRules(ctx); err != nil {
			if err := pause(err, "reading the observer rules' version"); err != nil {
				return err
			}
			continue
		}
		jobs := d.match(events, log)
		if err := d.enqueue(ctx, jobs); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !d.degraded.Swap(true) {
				d.reportDegraded(true)
				log.Error("observer queue unreachable: degraded, holding the cursor", "err", err, "at", pos.String())
			}
			if err := pause(err, "enqueuing observer jobs"); err != nil {
				return err
			}
			continue // the same events again: nothing is skipped
		}
		if d.degraded.Swap(false) {
			d.reportDegraded(false)
			log.Info("observer queue is back: leaving degraded mode")
		}
		last := events[len(events)-1].Pos
		for {
			err := d.Events.Advance(ctx, d.Name, last)
			if err == nil {
				break
			}
			// Enqueued but not recorded: stay on these events rather than
			// read past a cursor we cannot store; re-enqueuing is safe
			// (jobs carry their idempotency key).
			if err := pause(err, "advancing the observer cursor"); err != nil {
				return err
			}
		}
		failures = 0
		pos = last
		if log.Enabled(ctx, slog.LevelDebug) {
			log.Debug("dispatched", "events", len(events), "jobs", len(jobs), "at", pos.String())
		}
	}
}

func (d *Dispatcher) match(events []core.ChangeEvent, log *slog.Logger) []core.Job {
	set := d.rules.Load().set
	now := d.Now()
	var jobs []core.Job
	for _, e := range events {
		js, err := set.Match(e)
		if err != nil {
			log.Error("matching an event", "err", err, "event", e.Pos.String(), "tenant", e.Tenant)
			continue
		}
		for i := range js {
			js[i].EnqueuedAt = now
		}
		jobs = append(jobs, js...)
	}
	return jobs
}

// enqueue applies backpressure per tenant and enqueues the admitted jobs.
func (d *Dispatcher) enqueue(ctx context.Context, jobs []core.Job) error {
	if len(jobs) == 0 {
		return nil
	}
	var refused []refusedJob
	if d.Backpressure.Policy != PolicyQueueAll && d.Backpressure.Policy != "" && d.Backpressure.MaxBytes > 0 {
		admitted, r, err := d.applyBackpressure(ctx, jobs)
		if err != nil {
			return err
		}
		jobs, refused = admitted, r
	}
	if err := d.Queue.Enqueue(ctx, jobs); err != nil {
		return err
	}
	d.delivered.Add(int64(len(jobs)))
	if d.Metrics != nil {
		d.Metrics.Enqueued(len(jobs))
	}
	// Dead-lettered only once the batch's admitted jobs are in: a batch
	// that fails is read and decided again, and would park its refused
	// jobs twice.
	for _, r := range refused {
		if err := d.Queue.DeadLetter(ctx, core.Delivery{}, r.job, r.reason); err != nil {
			return err
		}
	}
	return nil
}

// refusedJob is a job backpressure sends to the dead-letter stream.
type refusedJob struct {
	job    core.Job
	reason string
}

func (d *Dispatcher) applyBackpressure(ctx context.Context, jobs []core.Job) (admitted []core.Job, refused []refusedJob, err error) {
	d.observeSize(jobs[0])
	d.mu.Lock()
	size := d.jobBytes
	d.mu.Unlock()
	byTenant := map[string][]core.Job{}
	var order []string
	for _, j := range jobs {
		if _, ok := byTenant[j.Tenant]; !ok {
			order = append(order, j.Tenant)
		}
		byTenant[j.Tenant] = append(byTenant[j.Tenant], j)
	}
	refuse := func(js []core.Job, reason string) {
		for _, j := range js {
			refused = append(refused, refusedJob{j, reason})
		}
	}
	for _, t := range order {
		var pausedSince time.Time
		for {
			n, err := d.backlog(ctx, t)
			if err != nil {
				return nil, nil, err
			}
			verdict, delay := d.Backpressure.Decide(int64(float64(n) * size))
			switch verdict {
			case Slow:
				if err := sleep(ctx, delay); err != nil {
					return nil, nil, err
				}
			case Pause:
				if pausedSince.IsZero() {
					pausedSince = d.Now()
				}
				if limit := d.Backpressure.maxPause(); limit > 0 && d.Now().Sub(pausedSince) >= limit {
					d.Logger.Warn("observer backpressure: tenant queue full too long, dead-lettering its jobs",
						"tenant", t, "backlog", n, "paused", d.Now().Sub(pausedSince))
					refuse(byTenant[t], fmt.Sprintf("backpressure: tenant queue full for %s", limit))
					byTenant[t] = nil
					break
				}
				d.mu.Lock()
				delete(d.backlogs, t) // ask again after the pause
				d.mu.Unlock()
				d.Logger.Warn("observer backpressure: tenant queue full, pausing", "tenant", t, "backlog", n)
				if err := sleep(ctx, delay); err != nil {
					return nil, nil, err
				}
				continue
			case DeadLetter:
				refuse(byTenant[t], "backpressure: tenant queue full")
				byTenant[t] = nil
			}
			break
		}
		admitted = append(admitted, byTenant[t]...)
	}
	return admitted, refused, nil
}

func (d *Dispatcher) observeSize(j core.Job) {
	b, err := json.Marshal(j)
	if err != nil {
		return
	}
	d.mu.Lock()
	if d.jobBytes == 0 {
		d.jobBytes = float64(len(b))
	} else {
		d.jobBytes = 0.9*d.jobBytes + 0.1*float64(len(b))
	}
	d.mu.Unlock()
}

// retryPause is the dispatcher's own backoff: full jitter up to 5 s, so a
// dispatcher notices a recovered queue within seconds.
func retryPause(failures int) time.Duration {
	limit := Backoff{Base: 50 * time.Millisecond, Cap: 5 * time.Second}.Ceiling(failures - 1)
	return limit/2 + time.Duration(rand.Int64N(int64(limit/2)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
