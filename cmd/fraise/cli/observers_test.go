package cli

// These tests check the observers' wiring: fraise.toml to the pipeline's
// adapters (newObservers: Redis, the webhook and SMTP notifiers with their
// secrets and CA, the rate limiter) and its metrics' names, against a real
// PostgreSQL, a real redis-server, real HTTP receivers and a real SMTP
// server, all on loopback. The pipeline's behaviour (retries, breakers,
// backpressure, chaos, restores) is tested in test/observers. They are in
// package cli, not cli_test, because the wiring they exercise is
// unexported.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/adapters/smtp/smtptest"
	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
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

type pipeline struct {
	cfg config.Config
	// protection is what the served schema would protect (nil: nothing).
	protection *observe.Protection
	db         *postgres.DB
	admin      *pgx.Conn
	redis      *harness.Redis
	smtp       *smtptest.Server
	env        Env
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
	rd := harness.StartPersistentRedis(tb)
	mail := smtptest.Start(tb)
	caFile := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, mail.CAPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := config.Default()
	cfg.Redis.Addr = rd.Addr
	o := &cfg.Observers
	o.Enabled, o.AllowPrivateTargets = true, true
	o.BackoffBase, o.BackoffCap = config.Duration{Duration: 20 * time.Millisecond}, config.Duration{Duration: 100 * time.Millisecond}
	o.ReclaimIdle = config.Duration{Duration: 2 * time.Second}
	o.Webhook.Timeout = config.Duration{Duration: time.Second}
	o.Slack.Timeout, o.Email.Timeout = o.Webhook.Timeout, o.Webhook.Timeout
	o.SMTP = config.SMTP{Addr: mail.Addr, From: "observers@fraise.test", Username: mail.Username, Password: "env://SMTP_PW", CA: caFile}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	env := Env{Getenv: func(k string) string {
		switch k {
		case "SMTP_PW":
			return mail.Password
		case "FRAISE_REDIS_ADDR":
			return rd.Addr
		}
		return ""
	}, Stdout: io.Discard, Stderr: io.Discard}
	return &pipeline{cfg: cfg, db: db, admin: admin, redis: rd, smtp: mail, env: env}
}

// start runs an observer system until the returned stop is called (or the
// test ends).
func (p *pipeline) start(tb testing.TB, consumer string) (*observers, func()) {
	tb.Helper()
	return p.startLogging(tb, consumer, testLogger(tb))
}

// startLogging is start with the pipeline's logs going to log.
func (p *pipeline) startLogging(tb testing.TB, consumer string, log *slog.Logger) (*observers, func()) {
	tb.Helper()
	return p.startPrepared(tb, consumer, log, func(*observers) {})
}

// startPrepared is startLogging with prepare applied to the observers
// before they run (to give a component a test clock).
func (p *pipeline) startPrepared(tb testing.TB, consumer string, log *slog.Logger, prepare func(*observers)) (*observers, func()) {
	tb.Helper()
	o, err := newObservers(p.cfg, newSecrets(p.env.Getenv, log), log, p.db, consumer, p.protection, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	prepare(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = o.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			o.Close()
		})
	}
	tb.Cleanup(stop)
	return o, stop
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

func TestObserversEachActionKind(t *testing.T) {
	p := mustPipeline(t)
	hook, slack := mustReceiver(t), mustReceiver(t)
	bigRule := p.rule(t, obsTenantA, map[string]any{"name": "big", "table": "public.orders", "operations": []string{"INSERT"},
		"condition": "after.total > 1000", "actions": []map[string]any{{"kind": "webhook", "url": hook.URL, "secret": "s3cret"}}})
	p.rule(t, obsTenantA, map[string]any{"name": "changed", "table": "public.orders", "operations": []string{"UPDATE"},
		"condition": `"total" in changed`, "actions": []map[string]any{{"kind": "slack", "url": slack.URL,
			"template": "order {{key.id}}: {{before.total}} -> {{after.total}} by {{after.note}}"}}})
	p.rule(t, obsTenantA, map[string]any{"name": "gone", "table": "public.orders", "operations": []string{"DELETE"},
		"actions": []map[string]any{{"kind": "email", "to": []string{"sales@acme.test"}, "subject": "Order {{key.id}} deleted"}}})
	var sigOK bool
	// Verify the signature on the raw body.
	hook.Config.Handler = verifying(hook.Config.Handler, "s3cret", &sigOK)
	o, _ := p.start(t, "w1")
	reg := prometheus.NewRegistry()
	if err := o.register(reg); err != nil {
		t.Fatal(err)
	}

	p.sql(t, obsTenantA, "insert into orders (id, tenant_id, total, note) values (1, $1, 5000, 'big'), (2, $1, 10, 'small')", obsTenantA)
	p.sql(t, obsTenantA, "update orders set note = 'x' where id = 2")                     // no total change: no Slack
	p.sql(t, obsTenantA, "update orders set total = 7, note = '<!channel>' where id = 2") // Slack
	p.sql(t, obsTenantA, "delete from orders where id = 1")                               // email

	eventually(t, 10*time.Second, "webhook, slack and email", func() bool {
		return hook.delivered() == 1 && slack.delivered() == 1 && len(p.smtp.Messages()) == 1
	})
	// Once the queue is empty every job has been acknowledged: nothing is
	// left to deliver a second time.
	eventually(t, 10*time.Second, "the queue drained", func() bool {
		n, err := o.queue.Backlog(context.Background(), obsTenantA)
		return err == nil && n == 0
	})
	if hook.delivered() != 1 || slack.delivered() != 1 {
		t.Fatalf("got %d webhooks and %d slack messages, want 1 and 1", hook.delivered(), slack.delivered())
	}
	for _, pl := range hook.payloads {
		var after map[string]any
		_ = json.Unmarshal(pl.Event.After, &after)
		if pl.Event.Op != "INSERT" || after["total"] != float64(5000) || string(pl.Event.Before) != "null" || pl.Rule.Name != "big" {
			t.Fatalf("webhook payload: got %+v", pl)
		}
	}
	if !sigOK {
		t.Fatal("webhook signature did not verify")
	}
	// The worker recorded the delivery in its rule's recent deliveries,
	// which the console lists (right after the acknowledgement).
	eventually(t, 10*time.Second, "the webhook's delivery in its rule's log", func() bool {
		ds, err := o.queue.Recent(context.Background(), obsTenantA, bigRule, 10)
		return err == nil && len(ds) == 1 && ds[0].Status == core.DeliveryDelivered && ds[0].Attempt == 1
	})
	if got := slack.bodies[0]; got != `{"text":"order 2: 10 -\u003e 7 by \u0026lt;!channel\u0026gt;"}` {
		t.Fatalf("slack body: got %s", got)
	}
	metrics := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			metrics[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if metrics["fraise_observer_jobs_total/delivered"] != 3 || metrics["fraise_observer_enqueued_total"] != 3 ||
		metrics["fraise_observer_degraded"] != 0 || metrics["fraise_observer_outbox_pending"] != 0 {
		t.Fatalf("metrics: got %v, want 3 delivered, 3 enqueued, not degraded, nothing pending", metrics)
	}
	m := p.smtp.Messages()[0]
	if !m.TLS || m.User != p.smtp.Username || m.Header.Get("Subject") != "Order 1 deleted" || !strings.Contains(string(m.Body), "DELETE") {
		t.Fatalf("email: got tls=%v user=%q subject=%q body=%q", m.TLS, m.User, m.Header.Get("Subject"), m.Body)
	}
}

// verifying wraps h to check each request's signature over its raw body.
func verifying(h http.Handler, secret string, ok *bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		*ok = webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute) == nil
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		h.ServeHTTP(w, r)
	})
}

// TestObserversDLQCommands runs `fraise observers dlq list` and `replay`
// against the Redis fraise.toml names: the list shows each dead letter
// with its target redacted and without the signing secret, whatever the
// reason quotes (security #13, defect 7b), and replay puts it back.
func TestObserversDLQCommands(t *testing.T) {
	p := mustPipeline(t)
	ctx := context.Background()
	q, err := newQueue(p.cfg, newSecrets(p.env.Getenv, nil), redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const hook = "https://hooks.slack.example/services/T0001/B0001/slackSECRETslackSECRET42"
	job := core.Job{ID: "j1", Tenant: obsTenantA, RuleID: "r", RuleName: "rule",
		Action: core.Action{Kind: core.ActionSlack, URL: hook, Secret: "sigSECRET"}}
	if err := q.Enqueue(ctx, []core.Job{job}); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Fetch(ctx, "c", 1, func(string) int { return 1 }, 0)
	if err != nil || len(ds) != 1 {
		t.Fatalf("fetch: got %v, %v", ds, err)
	}
	job.LastError = "404 from " + hook
	if err := q.DeadLetter(ctx, ds[0], job, "gave up on "+hook); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantNot []string
	}{
		{"list", []string{"list", "--tenant", obsTenantA}, []string{`"j1"`, "https://hooks.slack.example/services/***"},
			[]string{"slackSECRET", "sigSECRET"}},
		{"replay", []string{"replay", "--tenant", obsTenantA, "--all"}, []string{"replayed 1 jobs\n"}, nil},
		{"list, replayed", []string{"list", "--tenant", obsTenantA}, nil, []string{"j1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			if err := Run(ctx, append([]string{"observers", "dlq"}, tc.args...), p.env.Getenv, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("got %q, want it to hold %q", out.String(), w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(out.String(), w) {
					t.Errorf("got %q, want no %q in it", out.String(), w)
				}
			}
		})
	}
	if n, err := q.Backlog(ctx, obsTenantA); err != nil || n != 1 {
		t.Errorf("backlog after replay: got %d, %v; want the job back (1)", n, err)
	}
}
