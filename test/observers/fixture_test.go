package observers_test

import (
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/adapters/smtp"
	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/observers/obstest"
)

// pipeline is an observer pipeline's world (obstest.Fixture) and the
// pipeline's options, which a test changes before it starts the pipeline.
type pipeline struct {
	*obstest.Fixture
	opts observe.Options
	// reclaimIdle is the queue's (redis.Options.ReclaimIdle).
	reclaimIdle time.Duration
}

// running is a started pipeline with the adapters it runs on.
type running struct {
	*observe.Pipeline
	queue  *redis.Queue
	events *postgres.EventLog
}

func mustPipeline(tb testing.TB) *pipeline {
	tb.Helper()
	return newPipeline(obstest.Start(tb))
}

// mustPipelineOn is mustPipeline on database name of server pg.
func mustPipelineOn(tb testing.TB, pg *harness.Postgres, name string) *pipeline {
	tb.Helper()
	return newPipeline(obstest.StartOn(tb, pg, name))
}

func newPipeline(f *obstest.Fixture) *pipeline {
	breaker := func(threshold int, open time.Duration) observe.BreakerSettings {
		return observe.BreakerSettings{FailureThreshold: threshold, Window: time.Minute, OpenTimeout: open, SuccessThreshold: 1}
	}
	// fraise.toml's defaults (cmd/fraise/config), with retries and
	// timeouts short enough for tests.
	opts := observe.Options{
		Cursor: "default", Batch: 500, Workers: 256, PerTenant: 64, MaxAttempts: 10, MaxAge: 24 * time.Hour,
		Backoff: observe.Backoff{Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond},
		Backpressure: observe.Backpressure{Policy: observe.PolicyAdaptive, MaxBytes: 500 << 20,
			ThresholdPercent: 80, MaxPause: time.Minute},
		Breakers: map[string]observe.BreakerSettings{core.ActionWebhook: breaker(5, 30*time.Second),
			core.ActionSlack: breaker(3, 30*time.Second), core.ActionEmail: breaker(2, time.Minute)},
		Timeouts: map[string]time.Duration{core.ActionWebhook: time.Second, core.ActionSlack: time.Second, core.ActionEmail: time.Second},
		Drain:    10 * time.Second,
	}
	return &pipeline{Fixture: f, opts: opts, reclaimIdle: 2 * time.Second}
}

// start runs an observer system until the returned stop is called (or the
// test ends).
func (p *pipeline) start(tb testing.TB, consumer string) (*running, func()) {
	tb.Helper()
	return p.startLogging(tb, consumer, obstest.Logger(tb))
}

// startLogging is start with the pipeline's logs going to log.
func (p *pipeline) startLogging(tb testing.TB, consumer string, log *slog.Logger) (*running, func()) {
	tb.Helper()
	o := p.open(tb, consumer, log)
	return o, obstest.Run(tb, o.Run, func() { o.queue.Close(); o.events.Close() })
}

// open builds the pipeline on the real adapters, as `fraise serve` does,
// without running it; its adapters are closed when the test ends.
func (p *pipeline) open(tb testing.TB, consumer string, log *slog.Logger) *running {
	tb.Helper()
	q := redis.New(redis.Options{Addr: p.Redis.Addr, ReclaimIdle: p.reclaimIdle, PoolSize: p.opts.Workers + 16})
	events := postgres.NewEventLog(p.DB, log)
	tb.Cleanup(func() { q.Close(); events.Close() })
	wh := webhook.New(webhook.Options{AllowPrivate: true, MaxIdlePerHost: p.opts.Workers})
	login := smtp.Login{Username: p.SMTP.Username, Password: p.SMTP.Password}
	mail := smtp.New(smtp.Options{Addr: p.SMTP.Addr, From: "observers@fraise.test",
		Credentials: func() (smtp.Login, smtp.Login) { return login, smtp.Login{} },
		TLS:         &tls.Config{RootCAs: p.SMTP.Roots}})
	o := p.opts
	o.Events, o.History, o.Leader, o.Backlog = events, events, events, events
	o.Rules, o.Queue, o.QueueHistory, o.QueueHealth, o.Deliveries = events, q, q, q, q
	o.Notifiers = map[string]core.Notifier{core.ActionWebhook: wh, core.ActionSlack: wh, core.ActionEmail: mail}
	o.Consumer, o.Logger = consumer, log
	pl, err := observe.NewPipeline(o)
	if err != nil {
		tb.Fatal(err)
	}
	return &running{Pipeline: pl, queue: q, events: events}
}
