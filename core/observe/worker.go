package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// MaxRetryAfter bounds how long a target's Retry-After may hold a job.
const MaxRetryAfter = time.Hour

// Worker runs jobs from the queue: several workers, in one process or
// many, share a queue (each job goes to one of them; a job whose worker
// died is reclaimed by another).
type Worker struct {
	Queue     core.JobQueue
	Notifiers map[string]core.Notifier // by action kind
	// Limiter applies per-action rate limits; nil allows everything.
	Limiter  core.ActionLimiter
	Breakers *Breakers
	Backoff  Backoff
	// MaxAttempts runs before a transiently failing job is dead-lettered.
	MaxAttempts int
	// Concurrency is how many jobs run at once (16 when zero);
	// PerTenant how many of them one tenant may hold (Concurrency/4, at
	// least 1, when zero), so one tenant's slow target cannot take every
	// slot.
	Concurrency int
	PerTenant   int
	// Drain is how long running jobs may go on once Run's context ends
	// (0: they are cut short at once and left to be reclaimed).
	Drain time.Duration
	// MaxAge bounds how long a job may keep being deferred, by an open
	// breaker or a rate limit, which use no attempt (24 h when zero;
	// negative: no bound): past it the job is dead-lettered, so a target
	// that stays down does not grow its tenant's queue for ever.
	MaxAge time.Duration
	// Timeouts bound one delivery, by action kind (10 s when missing).
	Timeouts map[string]time.Duration
	// Consumer names this worker to the queue; unique per worker.
	Consumer string
	// Block is how long a fetch waits for jobs (1 s when zero).
	Block time.Duration
	// Trace, when set, runs each delivery within a span that continues the
	// trace its job carries (core.Job.TraceParent): the limiter's, the
	// notifier's and the queue's calls for the job join the trace of the
	// request that committed its event, and so do its log lines. It
	// returns the context carrying the span and the function that ends it
	// with the run's outcome (one of the Outcome constants) and, when the
	// run failed, why.
	Trace func(ctx context.Context, job core.Job) (context.Context, func(outcome string, err error))
	// Deliveries, when set, records the outcome of each run that reached
	// an outcome (delivered, failed and to be retried, dead-lettered) in
	// its rule's recent deliveries, which the console shows. A failed
	// write is counted (Stats.DeliveryLogFailures), never the delivery's
	// failure.
	Deliveries core.DeliveryLog
	// Admitter, when set, admits each delivery for its tenant before it
	// runs, the same admission GraphQL requests and Flight exports go
	// through, so that one process-wide bound covers them all. A refusal
	// defers the job (no attempt is used) for the delay the refusal's
	// chain asks (core.RetryAfter; 1 s when it says none). Nil keeps the
	// worker's own bounds alone: Concurrency slots, PerTenant of them per
	// tenant. Those bound the deliveries this worker holds in either case
	// (a fetched job belongs to its consumer until it reports an outcome).
	Admitter core.Admitter
	// Metrics, when set, is told each outcome as Stats counts it.
	Metrics Metrics
	Logger  *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu       sync.Mutex
	inflight map[string]int
	freed    chan struct{} // a job finished
	stats    Stats
}

// The outcomes of one run of a job, as Worker.Trace's end function
// receives them.
const (
	OutcomeDelivered    = "delivered"
	OutcomeRetried      = "retried"
	OutcomeDeferred     = "deferred"
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeStopped is a run cut short by the worker stopping: the job
	// stays pending and another worker reclaims it.
	OutcomeStopped = "stopped"
)

// Stats counts a worker's outcomes.
type Stats struct {
	Delivered, Retried, DeadLettered, Deferred atomic.Int64
	// DeliveryLogFailures counts outcomes Worker.Deliveries failed to
	// record.
	DeliveryLogFailures atomic.Int64
}

// Stats returns the worker's counters.
func (w *Worker) Stats() *Stats { return &w.stats }

// count adds a run that reached outcome to Stats and Metrics.
func (w *Worker) count(outcome string) {
	switch outcome {
	case OutcomeDelivered:
		w.stats.Delivered.Add(1)
	case OutcomeRetried:
		w.stats.Retried.Add(1)
	case OutcomeDeferred:
		w.stats.Deferred.Add(1)
	case OutcomeDeadLettered:
		w.stats.DeadLettered.Add(1)
	}
	if w.Metrics != nil {
		w.Metrics.JobRun(outcome)
	}
}

func (w *Worker) defaults() {
	if w.Concurrency <= 0 {
		w.Concurrency = 16
	}
	if w.PerTenant <= 0 {
		w.PerTenant = max(1, w.Concurrency/4)
	}
	if w.MaxAttempts <= 0 {
		w.MaxAttempts = 10
	}
	if w.Block <= 0 {
		w.Block = time.Second
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	if w.Breakers == nil {
		w.Breakers = NewBreakers(nil, w.Now)
	}
	if w.Consumer == "" {
		w.Consumer = "worker"
	}
	if w.MaxAge == 0 {
		w.MaxAge = 24 * time.Hour
	}
}

// Run fetches and runs jobs until ctx ends, then lets the running ones
// finish for up to Drain and waits for them; it returns ctx's error. A job
// cut short (Drain passed) is neither acknowledged nor retried: it stays
// pending and another worker reclaims it.
func (w *Worker) Run(ctx context.Context) error {
	w.defaults()
	w.mu.Lock()
	w.inflight = map[string]int{}
	w.freed = make(chan struct{}, 1)
	w.mu.Unlock()
	log := w.Logger.With("component", "observer-worker", "consumer", w.Consumer)
	slots := make(chan struct{}, w.Concurrency)
	// Running jobs outlive ctx by Drain: a delivery aborted mid-request
	// is reclaimed a minute later and reaches its receiver twice.
	jobs, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	stopDrain := context.AfterFunc(ctx, func() {
		if w.Drain <= 0 {
			stopJobs()
			return
		}
		time.AfterFunc(w.Drain, stopJobs)
	})
	defer stopDrain()
	var wg sync.WaitGroup
	defer wg.Wait()
	failures := 0
	for ctx.Err() == nil {
		// Wait for a free slot.
		select {
		case slots <- struct{}{}:
			<-slots
		case <-ctx.Done():
			return ctx.Err()
		}
		// Fetch in batches: one round trip per freed slot would bound
		// throughput by the queue's latency. Wait briefly for a quarter of
		// the slots to free up when most are busy.
		free := w.Concurrency - len(slots)
		if free < w.Concurrency/4 {
			t := time.NewTimer(2 * time.Millisecond)
		gather:
			for w.Concurrency-len(slots) < w.Concurrency/4 {
				select {
				case <-w.freed:
				case <-t.C:
					break gather
				case <-ctx.Done():
					break gather
				}
			}
			t.Stop()
			free = w.Concurrency - len(slots)
		}
		ds, err := w.Queue.Fetch(ctx, w.Consumer, free, w.room, w.Block)
		if err != nil && len(ds) > 0 && ctx.Err() == nil {
			// Some tenants' jobs were delivered to this consumer before
			// the error: run them now rather than leave them pending until
			// they are reclaimed as a stopped consumer's.
			w.start(ctx, jobs, log, ds, slots, &wg)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			log.Warn("fetching observer jobs", "err", err, "failures", failures)
			if err := sleep(ctx, retryPause(failures)); err != nil {
				break
			}
			continue
		}
		failures = 0
		if len(ds) == 0 {
			// Every tenant with jobs may be at its share: wait for a job
			// to finish (or a little, for retries coming due).
			if w.totalInflight() > 0 {
				t := time.NewTimer(50 * time.Millisecond)
				select {
				case <-w.freed:
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
			}
			continue
		}
		if !w.start(ctx, jobs, log, ds, slots, &wg) {
			return ctx.Err()
		}
	}
	return ctx.Err()
}

// start runs each delivery on a goroutine of its own, under jobs, once a
// slot is free; false when ctx ended first.
func (w *Worker) start(ctx, jobs context.Context, log *slog.Logger, ds []core.Delivery, slots chan struct{}, wg *sync.WaitGroup) bool {
	for _, d := range ds {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		w.track(d.Job.Tenant, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer w.track(d.Job.Tenant, -1)
			w.process(jobs, log, d)
		}()
	}
	return true
}

func (w *Worker) room(tenant string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(0, w.PerTenant-w.inflight[tenant])
}

func (w *Worker) track(tenant string, n int) {
	w.mu.Lock()
	w.inflight[tenant] += n
	if w.inflight[tenant] == 0 {
		delete(w.inflight, tenant)
	}
	w.mu.Unlock()
	if n < 0 {
		select {
		case w.freed <- struct{}{}:
		default:
		}
	}
}

func (w *Worker) totalInflight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, v := range w.inflight {
		n += v
	}
	return n
}

// Process runs one delivery to its outcome: acknowledged, retried later,
// or dead-lettered. It is Run's step, exported for tests and tools.
func (w *Worker) Process(ctx context.Context, d core.Delivery) {
	w.defaults()
	w.process(ctx, w.Logger, d)
}

func (w *Worker) process(ctx context.Context, log *slog.Logger, d core.Delivery) {
	if w.Trace == nil {
		w.run(ctx, log, d)
		return
	}
	ctx, end := w.Trace(ctx, d.Job)
	end(w.run(ctx, log, d))
}

// run is process without the span: it returns the outcome and, for a run
// that failed, why.
func (w *Worker) run(ctx context.Context, log *slog.Logger, d core.Delivery) (string, error) {
	job := d.Job
	log = log.With("tenant", job.Tenant, "job", job.ID, "kind", job.Action.Kind, "attempt", job.Attempt+1)
	if job.Action.URL != "" {
		// Named as the rule API shows it: a Slack URL is a credential.
		log = log.With("target", core.RedactActionURL(job.Action.Kind, job.Action.URL))
	}
	// Outcomes are recorded even as ctx ends, so a finished job is not run
	// again; a job cut short (ctx ended mid-delivery) is left pending.
	rctx := context.WithoutCancel(ctx)
	defer_ := func(wait time.Duration, why string) (string, error) {
		if age := w.Now().Sub(job.EnqueuedAt); w.MaxAge > 0 && !job.EnqueuedAt.IsZero() && age > w.MaxAge {
			return w.deadLetter(rctx, log, d, job, fmt.Sprintf("%s, %s after it was enqueued (observers.max_job_age %s)", why, age.Round(time.Second), w.MaxAge))
		}
		w.count(OutcomeDeferred)
		// Spread: jobs deferred together (a breaker opening on a whole
		// backlog) would otherwise all come back at the same instant.
		wait += rand.N(wait/2 + 1)
		if err := w.Queue.Retry(rctx, d, job, w.Now().Add(wait)); err != nil {
			log.WarnContext(rctx, "deferring an observer job", "err", err, "why", why)
		}
		return OutcomeDeferred, errors.New(why)
	}
	notifier, ok := w.Notifiers[job.Action.Kind]
	if !ok {
		return w.deadLetter(rctx, log, d, job, "no notifier for action kind "+job.Action.Kind)
	}
	if w.Admitter != nil {
		release, err := w.Admitter.Admit(ctx, job.Tenant)
		if err != nil {
			if ctx.Err() != nil {
				return OutcomeStopped, err // stopped while waiting: another worker reclaims the job
			}
			wait, ok := core.RetryAfter(err)
			if !ok || wait <= 0 {
				wait = time.Second
			}
			return defer_(wait, "admission refused: "+core.ErrorMessage(err))
		}
		defer release()
	}
	if w.Limiter != nil {
		allowed, wait, err := w.Limiter.Allow(ctx, job.Tenant, job.Action.Kind)
		if err != nil {
			log.DebugContext(ctx, "action rate limiter unavailable; allowing", "err", err)
		} else if !allowed {
			return defer_(max(wait, 100*time.Millisecond), "rate limited")
		}
	}
	br := w.Breakers.Get(job.Tenant, job.Action.Kind, target(job.Action))
	if ok, wait := br.Allow(); !ok {
		return defer_(max(wait, 10*time.Millisecond), "circuit open")
	}
	msg, err := BuildMessage(job)
	if err != nil {
		br.Release() // the target was never called
		return w.deadLetter(rctx, log, d, job, "render: "+core.ErrorMessage(err))
	}
	timeout := w.Timeouts[job.Action.Kind]
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	nctx, cancel := context.WithTimeout(ctx, timeout)
	err = notifier.Notify(nctx, msg)
	cancel()
	if err != nil && ctx.Err() != nil {
		return OutcomeStopped, err // stopped mid-delivery: another worker reclaims the job
	}
	job.Attempt++
	if err == nil {
		br.Success()
		w.count(OutcomeDelivered)
		if log.Enabled(ctx, slog.LevelDebug) {
			log.DebugContext(ctx, "observer job delivered", "since_enqueue", w.Now().Sub(job.EnqueuedAt))
		}
		if err := w.Queue.Ack(rctx, d); err != nil {
			log.WarnContext(rctx, "acknowledging an observer job", "err", err)
		}
		// Recorded after the queue's write, which it must not delay.
		w.record(rctx, log, job, core.DeliveryDelivered, nil, "")
		return OutcomeDelivered, nil
	}
	// Whatever the notifier said may quote the target: it is redacted
	// before it is logged or stored with the job.
	said := core.RedactActionText(err.Error(), job.Action)
	job.LastError = said
	var de *core.DeliveryError
	if errors.As(err, &de) && de.Permanent {
		br.Success() // it answered: the target is up, the request is wrong
		return w.deadLetterFor(rctx, log, d, job, err, said)
	}
	br.Failure()
	if job.Attempt >= w.MaxAttempts {
		return w.deadLetterFor(rctx, log, d, job, err, fmt.Sprintf("gave up after %d attempts: %s", job.Attempt, said))
	}
	delay := w.Backoff.Delay(job.Attempt - 1)
	if de != nil && de.RetryAfter > 0 {
		delay = min(de.RetryAfter, MaxRetryAfter)
	}
	w.count(OutcomeRetried)
	log.DebugContext(rctx, "observer job failed; retrying", "err", said, "delay", delay)
	if err := w.Queue.Retry(rctx, d, job, w.Now().Add(delay)); err != nil {
		log.WarnContext(rctx, "scheduling an observer retry", "err", err)
	}
	w.record(rctx, log, job, core.DeliveryFailed, err, said)
	return OutcomeRetried, errors.New(said)
}

// deadLetter moves job to the dead-letter stream with reason, which is
// redacted of the job's target like every log line about it.
// It returns OutcomeDeadLettered and the reason, for the job's span.
func (w *Worker) deadLetter(ctx context.Context, log *slog.Logger, d core.Delivery, job core.Job, reason string) (string, error) {
	return w.deadLetterFor(ctx, log, d, job, nil, reason)
}

// deadLetterFor is deadLetter for a run whose notifier failed with cause
// (nil when the target was not called), whose status the delivery log
// records.
func (w *Worker) deadLetterFor(ctx context.Context, log *slog.Logger, d core.Delivery, job core.Job, cause error, reason string) (string, error) {
	reason = core.RedactActionText(reason, job.Action)
	w.count(OutcomeDeadLettered)
	log.WarnContext(ctx, "observer job dead-lettered", "reason", reason)
	if err := w.Queue.DeadLetter(ctx, d, job, reason); err != nil {
		log.WarnContext(ctx, "dead-lettering an observer job", "err", err)
	}
	w.record(ctx, log, job, core.DeliveryDead, cause, reason)
	return OutcomeDeadLettered, errors.New(reason)
}

// record adds a run's outcome to its rule's recent deliveries; cause is
// the notifier's error (nil when it did not fail, or was not called) and
// said its redacted text.
func (w *Worker) record(ctx context.Context, log *slog.Logger, job core.Job, status string, cause error, said string) {
	if w.Deliveries == nil {
		return
	}
	a := core.DeliveryAttempt{At: w.Now(), JobID: job.ID, Kind: job.Action.Kind, Status: status,
		Attempt: job.Attempt, Error: said}
	var de *core.DeliveryError
	if errors.As(cause, &de) {
		a.HTTPStatus = de.Status
	}
	rule := job.RuleID
	if rule == "" {
		rule = job.RuleName // a job from before jobs named their rule's id
	}
	if err := w.Deliveries.Record(ctx, job.Tenant, rule, a); err != nil {
		w.stats.DeliveryLogFailures.Add(1)
		if w.Metrics != nil {
			w.Metrics.DeliveryLogFailed()
		}
		log.DebugContext(ctx, "recording an observer delivery", "err", err)
	}
}
