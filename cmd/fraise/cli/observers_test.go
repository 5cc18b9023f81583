package cli

// These tests run the observer pipeline exactly as `fraise serve` wires it
// (newObservers) against a real PostgreSQL, a real redis-server, real HTTP
// receivers and a real SMTP server, all on loopback. They are in package
// cli, not cli_test, because the wiring they exercise is unexported.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
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

func (rc *receiver) snapshot() (map[string]int, []time.Duration) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c := make(map[string]int, len(rc.count))
	for k, v := range rc.count {
		c[k] = v
	}
	return c, append([]time.Duration(nil), rc.latency...)
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
	o, err := newObservers(p.cfg, newSecrets(p.env.Getenv, log), log, p.db, consumer, p.protection, nil)
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

func TestObserversRetryDeadLetterReplay(t *testing.T) {
	p := mustPipeline(t)
	flaky, gone, slow := mustReceiver(t), mustReceiver(t), mustReceiver(t)
	flaky.handle = func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, n int) bool {
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	}
	var fixed sync.Mutex
	broken := true
	gone.handle = func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, _ int) bool {
		fixed.Lock()
		defer fixed.Unlock()
		if broken {
			w.WriteHeader(http.StatusNotFound)
			return false
		}
		return true
	}
	slow.handle = func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, n int) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return false
		}
		return true
	}
	for i, rc := range []*receiver{flaky, gone, slow} {
		p.rule(t, obsTenantA, map[string]any{"name": fmt.Sprint("r", i), "table": "public.orders",
			"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	}
	o, _ := p.start(t, "w1")
	p.sql(t, obsTenantA, "insert into orders (id, tenant_id, total) values (1, $1, 1)", obsTenantA)

	eventually(t, 10*time.Second, "retried deliveries", func() bool { return flaky.delivered() == 1 && slow.delivered() == 1 })
	for k, times := range flaky.at {
		if len(times) != 3 || flaky.count[k] != 1 {
			t.Fatalf("flaky target: got %d attempts, %d deliveries, want 3 and 1", len(times), flaky.count[k])
		}
	}
	for _, times := range slow.at {
		// The backoff cap is 100ms: only Retry-After explains a second's wait.
		if gap := times[1].Sub(times[0]); gap < time.Second {
			t.Fatalf("retry came %v after a Retry-After of 1s", gap)
		}
	}
	ctx := context.Background()
	var dls []core.DeadLetter
	eventually(t, 5*time.Second, "the dead letter", func() bool {
		dls, _ = o.queue.DeadLetters(ctx, obsTenantA, 10)
		return len(dls) == 1
	})
	for _, times := range gone.at {
		if len(times) != 1 {
			t.Fatalf("a permanent error was retried: %d attempts", len(times))
		}
	}
	if !strings.Contains(dls[0].Reason, "404") {
		t.Fatalf("dead letter reason: got %q", dls[0].Reason)
	}
	// Fix the target and replay through the command line.
	fixed.Lock()
	broken = false
	fixed.Unlock()
	var out strings.Builder
	env := p.env
	env.Stdout = &out
	if err := Run(ctx, []string{"observers", "dlq", "list", "--tenant", obsTenantA}, env.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), dls[0].ID) {
		t.Fatalf("dlq list: got %q, want entry %s", out.String(), dls[0].ID)
	}
	out.Reset()
	if err := Run(ctx, []string{"observers", "dlq", "replay", "--tenant", obsTenantA, "--all"}, env.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "replayed 1 jobs\n" {
		t.Fatalf("dlq replay: got %q", out.String())
	}
	eventually(t, 5*time.Second, "the replayed job", func() bool { return gone.delivered() == 1 })
}

// TestObserversRedactSecretsInLogsAndDeadLetters: deliveries to secret URLs
// fail in every way a target can (an answer quoting the path, a transient
// failure until the attempts run out, no answer at all); the pipeline's
// logs, at debug level, the dead letters' reasons and last errors, and
// `fraise observers dlq list` name the targets redacted only (security
// #13, defect 7b).
func TestObserversRedactSecretsInLogsAndDeadLetters(t *testing.T) {
	p := mustPipeline(t)
	p.cfg.Observers.MaxAttempts = 2
	gone, failing := mustReceiver(t), mustReceiver(t)
	gone.handle = func(w http.ResponseWriter, r *http.Request, _ observe.WebhookPayload, _ int) bool {
		http.Error(w, "no such hook: "+r.URL.String(), http.StatusNotFound)
		return false
	}
	failing.handle = func(w http.ResponseWriter, r *http.Request, _ observe.WebhookPayload, _ int) bool {
		http.Error(w, "down for "+r.URL.String(), http.StatusServiceUnavailable)
		return false
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	secrets := []string{"slackSECRET", "tokSECRET", "pwSECRET"}
	targets := []map[string]any{
		{"kind": "slack", "url": gone.URL + "/services/T0001/B0001/slackSECRETslackSECRET42"},
		{"kind": "webhook", "url": failing.URL + "/in?token=tokSECRET"},
		{"kind": "webhook", "url": strings.Replace(closed.URL, "://", "://u:pwSECRET@", 1) + "/in"},
	}
	for i, a := range targets {
		p.rule(t, obsTenantA, map[string]any{"name": fmt.Sprint("secret", i), "table": "public.orders", "actions": []map[string]any{a}})
	}
	logs := &lockedBuffer{}
	o, _ := p.startLogging(t, "w1", slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	p.sql(t, obsTenantA, "insert into orders (id, tenant_id, total) values (1, $1, 1)", obsTenantA)

	ctx := context.Background()
	var dls []core.DeadLetter
	eventually(t, 15*time.Second, "three dead letters", func() bool {
		dls, _ = o.queue.DeadLetters(ctx, obsTenantA, 10)
		return len(dls) == 3
	})
	var out strings.Builder
	if err := Run(ctx, []string{"observers", "dlq", "list", "--tenant", obsTenantA}, p.env.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{"logs": logs.String(), "dlq list": out.String()}
	for _, dl := range dls {
		seen["dead letter "+dl.ID+" reason"] = dl.Reason
		seen["dead letter "+dl.ID+" last error"] = dl.Job.LastError
	}
	for what, text := range seen {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the secret %q:\n%s", what, s, text)
			}
		}
	}
	// What was hidden was named redacted.
	for _, want := range []string{gone.URL + "/services/***", failing.URL + "/in/***", closed.URL + "/in/***"} {
		if !strings.Contains(seen["logs"], want) || !strings.Contains(seen["dlq list"], want) {
			t.Errorf("the logs or the dlq list do not name %s:\n%s\n%s", want, seen["logs"], seen["dlq list"])
		}
	}
}

// TestObserversSendOnlyCapturedColumns: a webhook receives the columns its
// rule names and nothing else of the row; a rule that names none (written
// before rules did) receives every column but those the schema protects,
// in its rows, its key, what changed and its Slack text (security #13,
// defect 7c).
func TestObserversSendOnlyCapturedColumns(t *testing.T) {
	p := mustPipeline(t)
	p.protection = observe.NewProtection()
	p.protection.GuardColumn("note", observe.Guard{Field: "Order.note", Scope: "read:Order.note"})
	named, older, slack := mustReceiver(t), mustReceiver(t), mustReceiver(t)
	p.rule(t, obsTenantA, map[string]any{"name": "named", "table": "public.orders", "columns": []string{"id", "total"},
		"actions": []map[string]any{{"kind": "webhook", "url": named.URL}}})
	p.rule(t, obsTenantA, map[string]any{"name": "older", "table": "public.orders",
		"actions": []map[string]any{{"kind": "webhook", "url": older.URL}, {"kind": "slack", "url": slack.URL,
			"template": "{{key.id}} {{after.total}} {{after.note}}."}}})
	p.start(t, "w1")
	p.sql(t, obsTenantA, "insert into orders (id, tenant_id, total, note) values (1, $1, 10, 'noteSECRET')", obsTenantA)
	p.sql(t, obsTenantA, "update orders set total = 11, note = 'noteSECRET2' where id = 1")
	eventually(t, 10*time.Second, "the deliveries", func() bool {
		return named.delivered() == 2 && older.delivered() == 2 && slack.delivered() == 2
	})
	keys := func(raw json.RawMessage) string {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	for _, tc := range []struct {
		name          string
		rc            *receiver
		rows, changed string
	}{
		{"the columns named", named, "id,total", "total"},
		{"no columns named: all but the protected", older, "at,id,tenant_id,total", "total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rc.mu.Lock()
			defer tc.rc.mu.Unlock()
			for _, body := range tc.rc.bodies {
				if strings.Contains(body, "noteSECRET") || strings.Contains(body, `"note"`) {
					t.Fatalf("a body holds the note: %s", body)
				}
			}
			for _, pl := range tc.rc.payloads {
				ev := pl.Event
				if ev.Op == core.OpUpdate && (keys(ev.Before) != tc.rows || strings.Join(ev.Changed, ",") != tc.changed) {
					t.Fatalf("update: got before %s changed %v, want columns %s changed %s", ev.Before, ev.Changed, tc.rows, tc.changed)
				}
				if keys(ev.After) != tc.rows || keys(ev.Key) != "id" {
					t.Fatalf("%s: got after %s key %s, want columns %s and the key", ev.Op, ev.After, ev.Key, tc.rows)
				}
			}
		})
	}
	slack.mu.Lock()
	defer slack.mu.Unlock()
	sort.Strings(slack.bodies)
	if got := strings.Join(slack.bodies, " "); got != `{"text":"1 10 ."} {"text":"1 11 ."}` {
		t.Fatalf("slack: got %s, want the total without the note", got)
	}
}

// lockedBuffer is a log destination shared by goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestObserversChaos stops Redis while events flow and kills a worker in
// the middle of a job: every matching event arrives, each idempotency key
// counted once at the receiver.
func TestObserversChaos(t *testing.T) {
	p := mustPipeline(t)
	rc := mustReceiver(t)
	var hung sync.Once
	hang := make(chan struct{})
	rc.handle = func(w http.ResponseWriter, r *http.Request, pl observe.WebhookPayload, n int) bool {
		var row struct{ ID int }
		_ = json.Unmarshal(pl.Event.After, &row)
		if row.ID == 7 && n == 1 {
			// The first worker dies holding this job.
			hung.Do(func() { close(hang) })
			<-r.Context().Done()
			return false
		}
		return true
	}
	p.rule(t, obsTenantA, map[string]any{"name": "odd", "table": "public.orders", "condition": "after.id % 2 == 1",
		"operations": []string{"INSERT"}, "actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	o1, stop1 := p.start(t, "w1")
	const total = 200
	inserted := make(chan struct{})
	var insertedRows atomic.Int64
	go func() {
		defer close(inserted)
		// One row every 5 ms: events flow through the whole chaos.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 1; i <= total; i++ {
			p.sql(t, obsTenantA, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obsTenantA, i)
			insertedRows.Add(1)
			<-tick.C
		}
	}()
	select {
	case <-hang:
	case <-time.After(10 * time.Second):
		t.Fatal("the first worker never reached the job it is to die on")
	}
	stop1() // kill worker 1 (and its dispatcher) mid-job
	o2, _ := p.start(t, "w2")
	eventually(t, 10*time.Second, "the second worker delivering", func() bool { return o2.worker.Stats().Delivered.Load() > 0 })
	p.redis.Stop()
	// At least this event arrives while Redis is down.
	p.sql(t, obsTenantA, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obsTenantA, 1001)
	eventually(t, 10*time.Second, "degraded mode", o2.dispatcher.Degraded)
	// Events keep coming while degraded: some 20 more rows (or the rest).
	degradedAt := insertedRows.Load()
	eventually(t, 10*time.Second, "rows inserted while degraded", func() bool {
		select {
		case <-inserted:
			return true
		default:
			return insertedRows.Load() >= degradedAt+20
		}
	})
	if err := p.redis.Start(); err != nil {
		t.Fatal(err)
	}
	<-inserted
	eventually(t, 20*time.Second, "every odd row delivered", func() bool { return rc.delivered() == total/2+1 })
	eventually(t, 5*time.Second, "leaving degraded mode", func() bool { return !o2.dispatcher.Degraded() })
	// At least once on the wire (a job whose acknowledgement Redis lost is
	// sent again); exactly once by idempotency key: one key per event, so
	// a receiver that deduplicates on it processes every event once.
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rows := map[int]string{}
	dups := 0
	for k, n := range rc.count {
		dups += n - 1
		var row struct{ ID int }
		_ = json.Unmarshal(rc.payloads[k].Event.After, &row)
		if other, ok := rows[row.ID]; ok {
			t.Errorf("row %d arrived under two idempotency keys, %s and %s", row.ID, other, k)
		}
		rows[row.ID] = k
	}
	for i := 1; i <= total; i += 2 {
		if rows[i] == "" {
			t.Errorf("row %d never arrived", i)
		}
	}
	t.Logf("%d events delivered, %d repeated deliveries deduplicated by key", len(rows), dups)
	_ = o1
}

// TestObserversTenantIsolation: tenant B's rules see only B's events, and
// B's deliveries all arrive while A's target holds every request A sends
// it: A's jobs may take only A's share of the workers.
func TestObserversTenantIsolation(t *testing.T) {
	p := mustPipeline(t)
	p.cfg.Observers.Workers, p.cfg.Observers.PerTenant = 16, 4
	p.cfg.Observers.MaxAttempts = 3
	// A's requests are held until the test ends, longer than any wait
	// below: had A's jobs taken B's workers, B's deliveries would wait for
	// them and never all arrive.
	p.cfg.Observers.Webhook.Timeout = config.Duration{Duration: time.Minute}
	release := make(chan struct{})
	bad, good := mustReceiver(t), mustReceiver(t)
	held := make(chan struct{}, 64)
	bad.handle = func(w http.ResponseWriter, r *http.Request, _ observe.WebhookPayload, _ int) bool {
		held <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusBadGateway)
		return false
	}
	t.Cleanup(func() { close(release) })
	p.rule(t, obsTenantA, map[string]any{"name": "a", "table": "public.orders", "actions": []map[string]any{{"kind": "webhook", "url": bad.URL}}})
	p.rule(t, obsTenantB, map[string]any{"name": "b", "table": "public.orders", "actions": []map[string]any{{"kind": "webhook", "url": good.URL}}})
	p.start(t, "w1")
	const n = 60
	for i := 1; i <= n; i++ {
		p.sql(t, obsTenantA, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obsTenantA, 1000+i)
	}
	// A's target holds as many requests as A may have in flight.
	for range p.cfg.Observers.PerTenant {
		select {
		case <-held:
		case <-time.After(30 * time.Second):
			t.Fatal("tenant A's target got fewer requests than A's share of the workers")
		}
	}
	for i := 1; i <= n; i++ {
		p.sql(t, obsTenantB, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obsTenantB, 2000+i)
	}
	eventually(t, 30*time.Second, "all of B's deliveries while A's target holds A's", func() bool { return good.delivered() == n })
	good.mu.Lock()
	for _, pl := range good.payloads {
		if pl.Event.Tenant != obsTenantB {
			t.Errorf("tenant B's receiver got an event of tenant %s", pl.Event.Tenant)
		}
	}
	good.mu.Unlock()
	if got := len(held); got > 0 {
		t.Errorf("tenant A's target holds %d requests more than A's share (%d) of the workers", got, p.cfg.Observers.PerTenant)
	}
	if bad.delivered() != 0 {
		t.Fatalf("tenant A's target: got %d deliveries, want none", bad.delivered())
	}
}

// TestObserversBackpressureFailFast: with fail-fast, jobs of a tenant whose
// queue is past its bound go to the dead-letter stream (replayable), and
// the dispatcher keeps going; nothing is dropped.
func TestObserversBackpressureFailFast(t *testing.T) {
	p := mustPipeline(t)
	p.cfg.Observers.Backpressure, p.cfg.Observers.MaxQueueMemoryMB = "fail-fast", 1
	rc := mustReceiver(t)
	p.rule(t, obsTenantA, map[string]any{"name": "all", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	o, err := newObservers(p.cfg, newSecrets(p.env.Getenv, nil), testLogger(t), p.db, "w", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// The dispatcher caches a tenant's backlog for 250 ms of its clock; the
	// test moves that clock past it between batches.
	var clockMu sync.Mutex
	now := time.Now()
	o.dispatcher.Now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The dispatcher alone: no worker drains the queue.
	go func() { _ = o.events.Lead(ctx, o.dispatcher.Name, o.dispatcher.Run) }()
	const total = 3000 // about 3 MB of jobs against a 1 MB bound
	for i := 0; i < total; i += 500 {
		if err := tryInsertRows(p, obsTenantA, i+1, 500); err != nil {
			t.Fatal(err)
		}
		// The batch decided, the next one sees a fresh backlog estimate.
		eventually(t, 10*time.Second, "the batch queued or dead-lettered", func() bool {
			n, _ := o.queue.Backlog(ctx, obsTenantA)
			dls, _ := o.queue.DeadLetters(ctx, obsTenantA, total)
			return int(n)+len(dls) == i+500
		})
		clockMu.Lock()
		now = now.Add(300 * time.Millisecond)
		clockMu.Unlock()
	}
	var queued, dead int
	eventually(t, 10*time.Second, "every event queued or dead-lettered", func() bool {
		n, _ := o.queue.Backlog(ctx, obsTenantA)
		dls, _ := o.queue.DeadLetters(ctx, obsTenantA, total)
		queued, dead = int(n), len(dls)
		return queued+dead == total
	})
	if dead == 0 || queued == 0 {
		t.Fatalf("got %d queued and %d dead-lettered, want both", queued, dead)
	}
	dls, _ := o.queue.DeadLetters(ctx, obsTenantA, 1)
	if !strings.HasPrefix(dls[0].Reason, "backpressure") {
		t.Fatalf("dead letter reason: got %q", dls[0].Reason)
	}
	t.Logf("%d queued, %d dead-lettered for backpressure", queued, dead)
}

// TestObserversBreakerHoldsJobs: once a target's breaker opens, its jobs
// wait instead of hammering it, and go through after it recovers.
func TestObserversBreakerHoldsJobs(t *testing.T) {
	p := mustPipeline(t)
	w := &p.cfg.Observers.Webhook
	w.FailureThreshold, w.OpenTimeout = 2, config.Duration{Duration: time.Second}
	p.cfg.Observers.MaxAttempts = 50
	p.cfg.Observers.Workers, p.cfg.Observers.PerTenant = 8, 4
	rc := mustReceiver(t)
	var mu sync.Mutex
	down := true
	rc.handle = func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, _ int) bool {
		mu.Lock()
		defer mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	}
	p.rule(t, obsTenantA, map[string]any{"name": "all", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	// The breakers' clock moves only when the test moves it: the breaker
	// stays open until then.
	var clockMu sync.Mutex
	now := time.Now()
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	o, _ := p.startPrepared(t, "w1", testLogger(t), func(o *observers) {
		o.worker.Breakers = observe.NewBreakers(map[string]observe.BreakerSettings{core.ActionWebhook: {
			FailureThreshold: w.FailureThreshold, Window: w.FailureWindow.Duration,
			OpenTimeout: w.OpenTimeout.Duration, SuccessThreshold: w.SuccessThreshold}}, clock)
	})
	const n = 20
	insertRows(t, p, obsTenantA, 1, n)
	attempts := func() int {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		c := 0
		for _, ts := range rc.at {
			c += len(ts)
		}
		return c
	}
	// The jobs already running when it opened fail; then nothing reaches
	// the target until the open timeout passes: every job comes back and is
	// held again, and the target is not called.
	stats := o.worker.Stats()
	eventually(t, 10*time.Second, "a job held by the open breaker", func() bool { return stats.Deferred.Load() > 0 })
	// A round of holds later, the calls under way as it opened have ended.
	d0 := stats.Deferred.Load()
	eventually(t, 20*time.Second, "the held jobs held again", func() bool { return stats.Deferred.Load() >= d0+n })
	a1, d1 := attempts(), stats.Deferred.Load()
	eventually(t, 20*time.Second, "the held jobs held again", func() bool { return stats.Deferred.Load() >= d1+n })
	a2 := attempts()
	if a1 >= n || a2 != a1 {
		t.Fatalf("the target was called %d times, then %d more while its breaker was open; want fewer than %d, then none", a1, a2-a1, n)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	clockMu.Lock()
	now = now.Add(w.OpenTimeout.Duration)
	clockMu.Unlock()
	eventually(t, 10*time.Second, "every job after recovery", func() bool { return rc.delivered() == n })
}
