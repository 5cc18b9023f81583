package observers_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/adapters/smtp"
	"github.com/fraise-dev/fraise/adapters/smtp/smtptest"
	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
)

const (
	obsTenantA = "00000000-0000-0000-0000-0000000000aa"
	obsTenantB = "00000000-0000-0000-0000-0000000000bb"
)

// receiver is a webhook target that records deliveries by idempotency key.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	count    map[string]int
	payloads map[string]observe.WebhookPayload
	at       map[string][]time.Time
	latency  []time.Duration
	bodies   []string
	handle   func(w http.ResponseWriter, r *http.Request, p observe.WebhookPayload, n int) bool // false: not delivered
}

func mustReceiver(tb testing.TB) *receiver {
	tb.Helper()
	rc := &receiver{count: map[string]int{}, payloads: map[string]observe.WebhookPayload{}, at: map[string][]time.Time{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, _ := io.ReadAll(r.Body)
		var p observe.WebhookPayload
		_ = json.Unmarshal(body, &p)
		key := r.Header.Get(webhook.HeaderIdempotencyKey)
		rc.mu.Lock()
		rc.at[key] = append(rc.at[key], now)
		n := len(rc.at[key])
		h := rc.handle
		rc.mu.Unlock()
		if h != nil && !h(w, r, p, n) {
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.count[key]++
		rc.payloads[key] = p
		rc.bodies = append(rc.bodies, string(body))
		if ts, ok := afterTime(p); ok {
			rc.latency = append(rc.latency, now.Sub(ts))
		}
	}))
	tb.Cleanup(rc.Close)
	return rc
}

func afterTime(p observe.WebhookPayload) (time.Time, bool) {
	var row struct {
		At time.Time `json:"at"`
	}
	if json.Unmarshal(p.Event.After, &row) != nil || row.At.IsZero() {
		return time.Time{}, false
	}
	return row.At, true
}

func (rc *receiver) delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.count)
}

func (rc *receiver) snapshot() (map[string]int, []time.Duration) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c := make(map[string]int, len(rc.count))
	for k, v := range rc.count {
		c[k] = v
	}
	return c, append([]time.Duration(nil), rc.latency...)
}

// pipeline is an observer pipeline's world: a migrated database with an
// observed table, a Redis and an SMTP server, and the pipeline's options,
// which a test changes before it starts the pipeline.
type pipeline struct {
	opts observe.Options
	// reclaimIdle is the queue's (redis.Options.ReclaimIdle).
	reclaimIdle time.Duration
	db          *postgres.DB
	admin       *pgx.Conn
	redis       *harness.Redis
	smtp        *smtptest.Server
}

// running is a started pipeline with the adapters it runs on.
type running struct {
	*observe.Pipeline
	queue  *redis.Queue
	events *postgres.EventLog
}

func mustPipeline(tb testing.TB) *pipeline {
	tb.Helper()
	harness.SkipShort(tb)
	pg, name := harness.NewDatabase(tb)
	return mustPipelineOn(tb, pg, name)
}

// mustPipelineOn is mustPipeline on database name of server pg.
func mustPipelineOn(tb testing.TB, pg *harness.Postgres, name string) *pipeline {
	tb.Helper()
	ctx := context.Background()
	postgrestest.Migrate(tb, pg, name)
	admin, err := pgx.Connect(ctx, pg.AdminURL(name))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { admin.Close(context.Background()) })
	if _, err := admin.Exec(ctx, `CREATE TABLE public.orders (id int PRIMARY KEY, tenant_id uuid NOT NULL, total numeric,
			note text, at timestamptz NOT NULL DEFAULT clock_timestamp());
		SELECT fraise.observe_table('public.orders');
		ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;
		CREATE POLICY t ON public.orders USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO fraise_app`); err != nil {
		tb.Fatal(err)
	}
	db, err := postgres.Open(ctx, pg.URL("fraise_app", name), postgres.Options{MaxConns: 30})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
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
	return &pipeline{opts: opts, reclaimIdle: 2 * time.Second, db: db, admin: admin,
		redis: harness.StartPersistentRedis(tb), smtp: smtptest.Start(tb)}
}

// start runs an observer system until the returned stop is called (or the
// test ends).
func (p *pipeline) start(tb testing.TB, consumer string) (*running, func()) {
	tb.Helper()
	return p.startLogging(tb, consumer, testLogger(tb))
}

// startLogging is start with the pipeline's logs going to log.
func (p *pipeline) startLogging(tb testing.TB, consumer string, log *slog.Logger) (*running, func()) {
	tb.Helper()
	o := p.open(tb, consumer, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = o.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			o.queue.Close()
			o.events.Close()
		})
	}
	tb.Cleanup(stop)
	return o, stop
}

// open builds the pipeline on the real adapters, as `fraise serve` does,
// without running it; its adapters are closed when the test ends.
func (p *pipeline) open(tb testing.TB, consumer string, log *slog.Logger) *running {
	tb.Helper()
	q := redis.New(redis.Options{Addr: p.redis.Addr, ReclaimIdle: p.reclaimIdle, PoolSize: p.opts.Workers + 16})
	events := postgres.NewEventLog(p.db, log)
	tb.Cleanup(func() { q.Close(); events.Close() })
	wh := webhook.New(webhook.Options{AllowPrivate: true, MaxIdlePerHost: p.opts.Workers})
	login := smtp.Login{Username: p.smtp.Username, Password: p.smtp.Password}
	mail := smtp.New(smtp.Options{Addr: p.smtp.Addr, From: "observers@fraise.test",
		Credentials: func() (smtp.Login, smtp.Login) { return login, smtp.Login{} },
		TLS:         &tls.Config{RootCAs: p.smtp.Roots}})
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

func testLogger(tb testing.TB) *slog.Logger {
	if os.Getenv("FRAISE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (p *pipeline) rule(tb testing.TB, tenant string, rule map[string]any) string {
	tb.Helper()
	b, _ := json.Marshal(rule)
	var r struct {
		Status, Message, ID string
	}
	err := p.db.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		out, err := q.QueryJSON(ctx, "select to_jsonb(r) from fn_create_observer_rule($1::jsonb) r", string(b))
		if err != nil {
			return err
		}
		return json.Unmarshal(out, &r)
	})
	if err != nil || r.Status != "ok" {
		tb.Fatalf("create rule: %+v %v", r, err)
	}
	return r.ID
}

func (p *pipeline) sql(tb testing.TB, tenant, sql string, args ...any) {
	tb.Helper()
	err := p.db.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		_, err := q.QueryJSON(ctx, "with x as ("+sql+" returning 1) select to_jsonb(count(*)) from x", args...)
		return err
	})
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

func eventually(tb testing.TB, d time.Duration, what string, ok func() bool) {
	tb.Helper()
	await.Until(tb, d, what, ok)
}
