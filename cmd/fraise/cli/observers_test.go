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
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/observers/obstest"
)

// pipeline is the observers' world (obstest.Fixture) and the fraise.toml
// that wires them to it, which a test changes before it starts them.
type pipeline struct {
	*obstest.Fixture
	cfg config.Config
	env Env
}

func mustPipeline(tb testing.TB) *pipeline {
	tb.Helper()
	f := obstest.Start(tb)
	caFile := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.SMTP.CAPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := config.Default()
	cfg.Redis.Addr = f.Redis.Addr
	o := &cfg.Observers
	o.Enabled, o.AllowPrivateTargets = true, true
	o.BackoffBase, o.BackoffCap = config.Duration{Duration: 20 * time.Millisecond}, config.Duration{Duration: 100 * time.Millisecond}
	o.ReclaimIdle = config.Duration{Duration: 2 * time.Second}
	o.Webhook.Timeout = config.Duration{Duration: time.Second}
	o.Slack.Timeout, o.Email.Timeout = o.Webhook.Timeout, o.Webhook.Timeout
	o.SMTP = config.SMTP{Addr: f.SMTP.Addr, From: "observers@fraise.test", Username: f.SMTP.Username, Password: "env://SMTP_PW", CA: caFile}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	env := Env{Getenv: func(k string) string {
		switch k {
		case "SMTP_PW":
			return f.SMTP.Password
		case "FRAISE_REDIS_ADDR":
			return f.Redis.Addr
		}
		return ""
	}, Stdout: io.Discard, Stderr: io.Discard}
	return &pipeline{Fixture: f, cfg: cfg, env: env}
}

// start runs the observers as `fraise serve` wires them from p.cfg until
// the returned stop is called (or the test ends).
func (p *pipeline) start(tb testing.TB, consumer string) (*observers, func()) {
	tb.Helper()
	log := obstest.Logger(tb)
	o, err := newObservers(p.cfg, newSecrets(p.env.Getenv, log), log, p.DB, consumer, nil, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return o, obstest.Run(tb, o.Run, o.Close)
}

// TestObserversWiring runs the observers newObservers builds from
// fraise.toml, one rule of each action kind: the webhook and Slack rules
// reach private targets (observers.allow_private_targets), the email goes
// over TLS trusting observers.smtp.ca, logged in as observers.smtp.username
// with the password its env:// reference names, from observers.smtp.from;
// each rule's deliveries are recorded for the console; and the metrics
// carry docs/metrics.md's names. What the pipeline does with the jobs is
// test/observers' TestObserversEachActionKind.
func TestObserversWiring(t *testing.T) {
	p := mustPipeline(t)
	hook, slack := obstest.StartReceiver(t), obstest.StartReceiver(t)
	hookRule := p.Rule(t, obstest.TenantA, map[string]any{"name": "big", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": hook.URL}}})
	p.Rule(t, obstest.TenantA, map[string]any{"name": "changed", "table": "public.orders", "operations": []string{"UPDATE"},
		"actions": []map[string]any{{"kind": "slack", "url": slack.URL, "template": "order {{key.id}}"}}})
	p.Rule(t, obstest.TenantA, map[string]any{"name": "gone", "table": "public.orders", "operations": []string{"DELETE"},
		"actions": []map[string]any{{"kind": "email", "to": []string{"sales@acme.test"}, "subject": "Order {{key.id}} deleted"}}})
	o, _ := p.start(t, "w1")
	reg := prometheus.NewRegistry()
	if err := o.register(reg); err != nil {
		t.Fatal(err)
	}

	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values (1, $1, 5000)", obstest.TenantA)
	p.SQL(t, obstest.TenantA, "update orders set total = 7 where id = 1")
	p.SQL(t, obstest.TenantA, "delete from orders where id = 1")
	await.Until(t, 10*time.Second, "webhook, slack and email", func() bool {
		return hook.Delivered() == 1 && slack.Delivered() == 1 && len(p.SMTP.Messages()) == 1
	})
	m := p.SMTP.Messages()[0]
	if !m.TLS || m.User != p.SMTP.Username || m.From != "observers@fraise.test" {
		t.Fatalf("email: got tls=%v user=%q from=%q, want TLS, %q, observers@fraise.test", m.TLS, m.User, m.From, p.SMTP.Username)
	}
	await.Until(t, 10*time.Second, "the webhook's delivery in its rule's log", func() bool {
		ds, err := o.queue.Recent(context.Background(), obstest.TenantA, hookRule, 10)
		return err == nil && len(ds) == 1 && ds[0].Status == core.DeliveryDelivered
	})
	// The queue drained: every job acknowledged, the counters final.
	await.Until(t, 10*time.Second, "the queue drained", func() bool {
		n, err := o.queue.Backlog(context.Background(), obstest.TenantA)
		return err == nil && n == 0
	})
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
	job := core.Job{ID: "j1", Tenant: obstest.TenantA, RuleID: "r", RuleName: "rule",
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
		{"list", []string{"list", "--tenant", obstest.TenantA}, []string{`"j1"`, "https://hooks.slack.example/services/***"},
			[]string{"slackSECRET", "sigSECRET"}},
		{"replay", []string{"replay", "--tenant", obstest.TenantA, "--all"}, []string{"replayed 1 jobs\n"}, nil},
		{"list, replayed", []string{"list", "--tenant", obstest.TenantA}, nil, []string{"j1"}},
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
	if n, err := q.Backlog(ctx, obstest.TenantA); err != nil || n != 1 {
		t.Errorf("backlog after replay: got %d, %v; want the job back (1)", n, err)
	}
}
