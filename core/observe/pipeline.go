package observe

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// Metrics is what the observer pipeline reports as it runs, for a metrics
// system to expose (the wiring implements it with Prometheus; core does
// not know how it is exported). Its methods are called on the delivery
// path: they must be cheap and safe for concurrent use.
//
// What is read rather than reported (the outbox's backlog, whether the
// queue answers) is Pipeline.Backlog and Pipeline.QueueUp, for the
// implementation to call when it is scraped.
type Metrics interface {
	// JobRun counts one run of a job that reached outcome:
	// OutcomeDelivered, OutcomeRetried, OutcomeDeferred or
	// OutcomeDeadLettered. A run cut short (OutcomeStopped) is not counted:
	// its job runs again elsewhere.
	JobRun(outcome string)
	// DeliveryLogFailed counts an outcome the DeliveryLog could not
	// record (the delivery itself went on).
	DeliveryLogFailed()
	// Enqueued counts n jobs the dispatcher enqueued.
	Enqueued(n int)
	// Degraded says the dispatcher entered (true) or left (false)
	// degraded mode: the queue does not answer and it holds its cursor.
	Degraded(on bool)
}

// Leader elects one dispatcher per cursor among the processes sharing an
// outbox (PostgreSQL's advisory lock, in the postgres adapter).
type Leader interface {
	// Lead runs fn while this process leads name, with a context that
	// ends when the lead is lost, and returns fn's error; it returns ctx's
	// error when ctx ends before this process leads.
	Lead(ctx context.Context, name string, fn func(ctx context.Context) error) error
}

// OutboxBacklog tells how far a cursor is behind the outbox, for the
// pipeline's gauges.
type OutboxBacklog interface {
	// Pending returns how many events wait behind the named cursor.
	Pending(ctx context.Context, name string) (int64, error)
	// OldestPending returns when the first event behind the named cursor
	// was written; ok is false when none waits.
	OldestPending(ctx context.Context, name string) (t time.Time, ok bool, err error)
}

// Pinger is a dependency the pipeline can ask whether it answers.
type Pinger interface {
	// Ping returns nil when the dependency answers.
	Ping(ctx context.Context) error
}

// Options are a Pipeline's ports and settings. Events, Rules, Queue and
// at least one notifier are required; every other port is optional, and
// every zero setting takes the default its Dispatcher or Worker field
// documents.
type Options struct {
	// Events is the outbox the dispatcher reads.
	Events core.EventLog
	// History and QueueHistory, when both set, have the queue reconciled
	// with the outbox (Reconciler) before this process delivers anything,
	// and again each time its dispatcher starts to lead.
	History      core.OutboxHistory
	QueueHistory core.QueueHistory
	// Rules are the tenants' observer rules.
	Rules core.RuleStore
	// Queue holds the jobs between the dispatcher and the workers.
	Queue core.JobQueue
	// Deliveries, when set, records each rule's recent deliveries.
	Deliveries core.DeliveryLog
	// Notifiers deliver actions, by action kind (core.ActionWebhook...).
	Notifiers map[string]core.Notifier
	// Limiter applies per-action rate limits (nil: none).
	Limiter core.ActionLimiter
	// Admitter admits each delivery for its tenant (Worker.Admitter; nil:
	// the worker's own slots alone).
	Admitter core.Admitter
	// Leader elects the dispatcher among processes; nil: this process
	// always dispatches (one process, or tests).
	Leader Leader
	// Backlog and QueueHealth feed Pipeline.Backlog and QueueUp (nil:
	// unknown).
	Backlog     OutboxBacklog
	QueueHealth Pinger
	// Metrics receives what the pipeline reports (nil: nothing).
	Metrics Metrics
	// Trace continues each job's trace (Worker.Trace; nil: none).
	Trace  func(ctx context.Context, job core.Job) (context.Context, func(outcome string, err error))
	Logger *slog.Logger
	// Now is the clock of retries, breakers, backpressure and ages
	// (time.Now when nil).
	Now func() time.Time

	// Cursor names the dispatcher's cursor and its lead ("default").
	Cursor string
	// Batch is how many events one read takes (Dispatcher.Batch).
	Batch        int
	Backpressure Backpressure
	// Protection is what the served schema protects (nil: nothing).
	Protection   *Protection
	RulesRefresh time.Duration

	// Consumer names this process's worker to the queue; unique per
	// process.
	Consumer string
	// Workers and PerTenant are Worker.Concurrency and PerTenant.
	Workers, PerTenant int
	MaxAttempts        int
	MaxAge             time.Duration
	Backoff            Backoff
	// Breakers are the circuit breakers' settings by action kind.
	Breakers map[string]BreakerSettings
	// Timeouts bound one delivery, by action kind.
	Timeouts map[string]time.Duration
	// Drain is how long deliveries under way may go on once Run's context
	// ends.
	Drain time.Duration
	// Block is how long one fetch waits for jobs (Worker.Block).
	Block time.Duration
	// ReconcileRetry is the pause between attempts to reconcile at start
	// while the database or the queue does not answer, and before this
	// process stands in line to lead again (1 s when zero).
	ReconcileRetry time.Duration
}

// Pipeline is the observer pipeline of one process, the observers'
// application service: it reconciles the queue with the outbox, then runs
// the dispatcher (while this process leads its cursor) and a worker pool
// until its context ends. Processes sharing an outbox and a queue each run
// one; one dispatches, all deliver.
type Pipeline struct {
	opts       Options
	reconciler *Reconciler
	dispatcher *Dispatcher
	worker     *Worker
}

// NewPipeline assembles a pipeline from o; it fails when a required port
// is missing.
func NewPipeline(o Options) (*Pipeline, error) {
	var errs []error
	if o.Events == nil {
		errs = append(errs, errors.New("observe: Options.Events is required"))
	}
	if o.Rules == nil {
		errs = append(errs, errors.New("observe: Options.Rules is required"))
	}
	if o.Queue == nil {
		errs = append(errs, errors.New("observe: Options.Queue is required"))
	}
	if len(o.Notifiers) == 0 {
		errs = append(errs, errors.New("observe: Options.Notifiers needs at least one notifier"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Cursor == "" {
		o.Cursor = "default"
	}
	if o.ReconcileRetry <= 0 {
		o.ReconcileRetry = time.Second
	}
	p := &Pipeline{opts: o}
	if o.History != nil && o.QueueHistory != nil {
		p.reconciler = &Reconciler{History: o.History, Queue: o.QueueHistory, Logger: o.Logger}
	}
	p.dispatcher = &Dispatcher{
		Events: o.Events, Rules: o.Rules, Queue: o.Queue, Name: o.Cursor, Batch: o.Batch,
		Backpressure: o.Backpressure, Protection: o.Protection, RulesRefresh: o.RulesRefresh,
		Reconciler: p.reconciler, Metrics: o.Metrics, Logger: o.Logger, Now: o.Now,
	}
	p.worker = &Worker{
		Queue: o.Queue, Notifiers: o.Notifiers, Limiter: o.Limiter, Admitter: o.Admitter,
		Breakers: NewBreakers(o.Breakers, o.Now), Backoff: o.Backoff,
		MaxAttempts: o.MaxAttempts, MaxAge: o.MaxAge, Concurrency: o.Workers, PerTenant: o.PerTenant,
		Timeouts: o.Timeouts, Drain: o.Drain, Consumer: o.Consumer, Block: o.Block,
		Trace: o.Trace, Deliveries: o.Deliveries, Metrics: o.Metrics, Logger: o.Logger, Now: o.Now,
	}
	return p, nil
}

// Run runs the pipeline until ctx ends, then lets deliveries under way
// finish for up to Options.Drain and returns nil. Nothing is delivered
// before the queue is known to be reconciled with the outbox: after a
// restore, the queue may hold jobs of changes the database lost, which no
// worker may run; until the database answers that question, this process
// delivers nothing.
func (p *Pipeline) Run(ctx context.Context) error {
	for failures := 0; p.reconciler != nil; failures++ {
		_, err := p.reconciler.Reconcile(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if failures == 0 {
			p.opts.Logger.Warn("observers wait: reconciling the job queue with the outbox", "err", err)
		}
		if sleep(ctx, p.opts.ReconcileRetry) != nil {
			return nil
		}
	}
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		if p.opts.Leader == nil {
			_ = p.dispatcher.Run(ctx)
			return
		}
		// Lead returns when the lead is lost (its database session went):
		// this process stands in line again.
		for ctx.Err() == nil {
			if err := p.opts.Leader.Lead(ctx, p.opts.Cursor, p.dispatcher.Run); err != nil && ctx.Err() == nil {
				p.opts.Logger.Warn("observer dispatcher lost its lead", "err", err)
			}
			// A leader that fails at once must not spin this loop.
			_ = sleep(ctx, p.opts.ReconcileRetry)
		}
	}()
	_ = p.worker.Run(ctx)
	<-dispatched
	return nil
}

// Breakers returns the workers' circuit breakers, for the console to show
// their states.
func (p *Pipeline) Breakers() *Breakers { return p.worker.Breakers }

// Stats returns the workers' counters.
func (p *Pipeline) Stats() *Stats { return p.worker.Stats() }

// Enqueued returns how many jobs this process's dispatcher enqueued.
func (p *Pipeline) Enqueued() int64 { return p.dispatcher.Enqueued() }

// Degraded reports whether this process's dispatcher holds its cursor
// because the queue does not answer.
func (p *Pipeline) Degraded() bool { return p.dispatcher.Degraded() }

// Cursor returns the name of the dispatcher's cursor.
func (p *Pipeline) Cursor() string { return p.opts.Cursor }

// Backlog is how far the dispatcher's cursor is behind the outbox.
type Backlog struct {
	// Pending counts the events behind the cursor (-1: unknown).
	Pending int64
	// OldestAge is how long the oldest of them has waited (0 when none
	// waits, -1 s when unknown).
	OldestAge time.Duration
}

// Backlog returns the outbox's backlog behind the dispatcher's cursor, as
// Options.Backlog tells it; what it cannot tell is unknown.
func (p *Pipeline) Backlog(ctx context.Context) Backlog {
	b := Backlog{Pending: -1, OldestAge: -time.Second}
	if p.opts.Backlog == nil {
		return b
	}
	if n, err := p.opts.Backlog.Pending(ctx, p.opts.Cursor); err == nil {
		b.Pending = n
	}
	switch t, ok, err := p.opts.Backlog.OldestPending(ctx, p.opts.Cursor); {
	case err != nil:
	case !ok:
		b.OldestAge = 0
	default:
		b.OldestAge = max(p.opts.Now().Sub(t), 0)
	}
	return b
}

// QueueUp reports whether the queue answers (Options.QueueHealth; false
// when there is none to ask).
func (p *Pipeline) QueueUp(ctx context.Context) bool {
	return p.opts.QueueHealth != nil && p.opts.QueueHealth.Ping(ctx) == nil
}
