package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/adapters/secretfile"
	"github.com/fraise-dev/fraise/adapters/smtp"
	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
)

func init() {
	commands["observers"] = command{"observers dlq list|replay | reconcile: dead-lettered jobs; the queue after a database restore", runObservers}
}

// observers is the observer pipeline of one process (observe.Pipeline)
// with the adapters it runs on, which Close releases.
type observers struct {
	*observe.Pipeline
	queue   *redis.Queue
	metrics *observerMetrics
	closers []func()
}

// newObservers builds the pipeline's adapters from the configuration, on
// db, and the pipeline on them. prot is what the served schema protects:
// rules that name no columns capture none of it. Its secrets (Redis's
// password and TLS files, the SMTP login, the certificate towards the rate
// limiter) are read through sec, whose watcher the caller runs: new
// connections use what the files hold then. With tp (nil: no tracing),
// each job continues the trace of the request that caused it, through
// Redis, the rate limiter and its delivery. consumer names this process's
// workers to the queue ("": host and pid).
func newObservers(cfg config.Config, sec *secrets, log *slog.Logger, db *postgres.DB, consumer string, prot *observe.Protection, tp *sdktrace.TracerProvider, admit core.Admitter) (_ *observers, err error) {
	oc := cfg.Observers
	policy, err := observe.ParsePolicy(oc.Backpressure)
	if err != nil {
		return nil, err
	}
	// The notifiers first: a setting they refuse is reported before any
	// connection is opened.
	notifiers, err := newNotifiers(oc, sec, tp)
	if err != nil {
		return nil, err
	}
	q, err := newQueue(cfg, sec, redis.Options{ReclaimIdle: oc.ReclaimIdle.Duration, PoolSize: cfg.Admission.Observers.MaxConcurrent + 16,
		TracerProvider: tracerProvider(tp)})
	if err != nil {
		return nil, err
	}
	o := &observers{queue: q, metrics: newObserverMetrics()}
	o.closers = append(o.closers, func() { q.Close() })
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	events := postgres.NewEventLog(db, log)
	o.closers = append(o.closers, events.Close)
	var limiter core.ActionLimiter
	if oc.RateLimits {
		lo, err := rateLimitClient(cfg, sec, log)
		if err != nil {
			return nil, fmt.Errorf("observers.rate_limits: %w", err)
		}
		lo.TracerProvider = tracerProvider(tp)
		l, err := ratelimit.NewActionLimiter(lo)
		if err != nil {
			return nil, fmt.Errorf("observers.rate_limits (tls.ca, tls.core_client_cert, tls.core_client_key): %w", err)
		}
		limiter = l
		o.closers = append(o.closers, func() { l.Close() })
	}
	if consumer == "" {
		host, _ := os.Hostname()
		consumer = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	breaker := func(a config.ObserverAction) observe.BreakerSettings {
		return observe.BreakerSettings{FailureThreshold: a.FailureThreshold, Window: a.FailureWindow.Duration,
			OpenTimeout: a.OpenTimeout.Duration, SuccessThreshold: a.SuccessThreshold}
	}
	o.Pipeline, err = observe.NewPipeline(observe.Options{
		Events: events, History: events, Leader: events, Backlog: events,
		Rules: events, Queue: q, QueueHistory: q, QueueHealth: q,
		// Each rule's recent deliveries, for the console, beside the jobs.
		Deliveries: q,
		Notifiers:  notifiers, Limiter: limiter,
		Metrics: o.metrics, Logger: log, Trace: jobTracing(tp),
		Cursor: oc.Cursor, Batch: oc.BatchSize, Protection: prot,
		Backpressure: observe.Backpressure{Policy: policy, MaxBytes: int64(oc.MaxQueueMemoryMB) << 20,
			ThresholdPercent: oc.MemoryThresholdPercent, MaxPause: oc.BackpressureMaxPause.Duration},
		Consumer: consumer, Workers: cfg.Admission.Observers.MaxConcurrent, PerTenant: cfg.Admission.Observers.MaxConcurrentPerTenant,
		// The observers class of the process's one admission (nil in tests
		// of the wiring alone): its memory guard and metrics are shared with
		// GraphQL requests and Flight exports.
		Admitter:    admit,
		MaxAttempts: oc.MaxAttempts, MaxAge: oc.MaxJobAge.Duration,
		Backoff: observe.Backoff{Base: oc.BackoffBase.Duration, Cap: oc.BackoffCap.Duration},
		Breakers: map[string]observe.BreakerSettings{
			core.ActionWebhook: breaker(oc.Webhook), core.ActionSlack: breaker(oc.Slack), core.ActionEmail: breaker(oc.Email),
		},
		Timeouts: map[string]time.Duration{core.ActionWebhook: oc.Webhook.Timeout.Duration,
			core.ActionSlack: oc.Slack.Timeout.Duration, core.ActionEmail: oc.Email.Timeout.Duration},
		// Deliveries under way when the process is told to stop finish
		// within the server's shutdown timeout, as its requests do.
		Drain: cfg.Server.ShutdownTimeout.Duration,
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// newNotifiers returns the notifiers of observers.*: webhooks and Slack
// over HTTP, email over SMTP when observers.smtp.addr is set.
func newNotifiers(oc config.Observers, sec *secrets, tp *sdktrace.TracerProvider) (map[string]core.Notifier, error) {
	wh := webhook.New(webhook.Options{AllowPrivate: oc.AllowPrivateTargets, MaxIdlePerHost: oc.Workers, TracerProvider: tracerProvider(tp)})
	notifiers := map[string]core.Notifier{core.ActionWebhook: wh, core.ActionSlack: wh}
	if oc.SMTP.Addr == "" {
		return notifiers, nil
	}
	user, err := sec.text("observers.smtp.username", oc.SMTP.Username)
	if err != nil {
		return nil, err
	}
	pw, err := sec.text("observers.smtp.password", oc.SMTP.Password)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{}
	if oc.SMTP.CA != "" {
		pem, err := readFileRef(oc.SMTP.CA, sec.getenv)
		if err != nil {
			return nil, fmt.Errorf("observers.smtp.ca: %w", err)
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("observers.smtp.ca: no certificate in it")
		}
	}
	notifiers[core.ActionEmail] = smtp.New(smtp.Options{Addr: oc.SMTP.Addr, From: oc.SMTP.From,
		Credentials: smtpLogin(user, pw), TLS: tlsCfg, InsecureNoTLS: oc.SMTP.InsecureNoTLS,
		TracerProvider: tracerProvider(tp)})
	return notifiers, nil
}

// newQueue is the observers' Redis queue with o's settings, reaching Redis
// as redis.* configures it: its address, its TLS and password read through
// sec, and the connections' lifetime.
func newQueue(cfg config.Config, sec *secrets, o redis.Options) (*redis.Queue, error) {
	addr, useTLS := cfg.Redis.Endpoint()
	tc, err := sec.dataTLS("redis.tls", cfg.Redis.TLS, useTLS)
	if err != nil {
		return nil, err
	}
	pw, err := sec.text("redis.password", cfg.Redis.Password)
	if err != nil {
		return nil, err
	}
	o.Addr, o.TLS, o.PasswordSource, o.ConnMaxLifetime = addr, tc, pw.Get, cfg.Redis.MaxConnLifetime.Duration
	return redis.New(o), nil
}

// smtpLogin is the SMTP login from the values of observers.smtp.username
// and password, with the previous login while they change.
func smtpLogin(user, pw *secretfile.Value[string]) func() (smtp.Login, smtp.Login) {
	return func() (smtp.Login, smtp.Login) {
		cur := smtp.Login{Username: user.Get(), Password: pw.Get()}
		prev := cur
		if u, ok := user.Previous(); ok {
			prev.Username = u
		}
		if p, ok := pw.Previous(); ok {
			prev.Password = p
		}
		if prev == cur {
			return cur, smtp.Login{}
		}
		return cur, prev
	}
}

// register exposes the pipeline's metrics on reg (the server's /metrics).
func (o *observers) register(reg prometheus.Registerer) error {
	return o.metrics.register(reg, o.Pipeline)
}

// Close releases the connections.
func (o *observers) Close() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
}

// runObservers is `fraise observers dlq list|replay` and `fraise observers
// reconcile`.
func runObservers(ctx context.Context, env Env, args []string) error {
	if len(args) >= 1 && args[0] == "reconcile" {
		return runReconcile(ctx, env, args[1:])
	}
	if len(args) < 2 || args[0] != "dlq" || (args[1] != "list" && args[1] != "replay") {
		fmt.Fprintln(env.Stderr, "usage: fraise observers dlq list --tenant ID [--limit N]\n       fraise observers dlq replay --tenant ID [--id ENTRY]... | --all\n       fraise observers reconcile [--check]")
		return errors.New("observers: want dlq list, dlq replay or reconcile")
	}
	fs, cfgPath := flags("observers dlq "+args[1], env)
	tenant := fs.String("tenant", "", "tenant id (required)")
	// Each subcommand shows and reads its own flags only.
	limit, all := new(int), new(bool)
	var ids multiFlag
	if args[1] == "list" {
		limit = fs.Int("limit", 100, "list at most this many")
	} else {
		all = fs.Bool("all", false, "replay every dead letter of the tenant")
		fs.Var(&ids, "id", "dead letter entry id to replay (repeatable)")
	}
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if *tenant == "" {
		return errors.New("observers dlq: --tenant is required: the tenant's id (UUID) whose dead letters to read")
	}
	cfg, _, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	// One command: the secrets are read once, not watched.
	q, err := newQueue(cfg, newSecrets(env.Getenv, nil), redis.Options{})
	if err != nil {
		return err
	}
	defer q.Close()
	dlq := observe.DeadLetterList{Store: q}
	if args[1] == "list" {
		// Never print secrets: List redacts as the logs do.
		dls, err := dlq.List(ctx, *tenant, *limit)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(env.Stdout)
		for _, d := range dls {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	if len(ids) == 0 && !*all {
		return errors.New("observers dlq replay: give --id ENTRY (repeatable) or --all")
	}
	n, err := dlq.Replay(ctx, *tenant, ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "replayed %d jobs\n", n)
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// errNeedsReconcile is `observers reconcile --check`'s error when the queue
// is not reconciled with the database: the command exits non-zero.
var errNeedsReconcile = errors.New("observers reconcile: the job queue needs reconciling with the database (run without --check, or start a server)")

// runReconcile is `fraise observers reconcile [--check]`: what every server
// does on start, for the runbook to run (or only look, with --check) before
// any server is back after a restore.
func runReconcile(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("observers reconcile", env)
	check := fs.Bool("check", false, "only report whether the queue needs reconciling (exit status 1 when it does)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	// One command: the secrets are read once, not watched. The database
	// and Redis are reached as a server reaches them, TLS and all.
	sec := newSecrets(env.Getenv, nil)
	db, err := openDatabase(ctx, cfg, sec, "database.url", cfg.Database.URL, postgres.Options{MaxConns: 2, Logger: log})
	if err != nil {
		return err
	}
	defer db.Close()
	events := postgres.NewEventLog(db, log)
	defer events.Close()
	q, err := newQueue(cfg, sec, redis.Options{})
	if err != nil {
		return err
	}
	defer q.Close()
	r := &observe.Reconciler{History: events, Queue: q, Logger: log}
	enc := json.NewEncoder(env.Stdout)
	if *check {
		g, err := r.Check(ctx)
		if err != nil {
			return err
		}
		if err := enc.Encode(map[string]any{"generation": g.Number, "previous": g.Previous, "current": g.Current,
			"reconciled": g.Reconciled, "system_identifier": g.SystemID, "timeline": g.Timeline}); err != nil {
			return err
		}
		if !g.Current || !g.Reconciled {
			return errNeedsReconcile
		}
		return nil
	}
	rec, err := r.Reconcile(ctx)
	if err != nil {
		return err
	}
	return enc.Encode(rec)
}
