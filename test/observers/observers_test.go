package observers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/internal/logtest"
	"github.com/fraise-dev/fraise/test/observers/obstest"
)

func TestObserversEachActionKind(t *testing.T) {
	p := mustPipeline(t)
	hook, slack := obstest.StartReceiver(t), obstest.StartReceiver(t)
	bigRule := p.Rule(t, obstest.TenantA, map[string]any{"name": "big", "table": "public.orders", "operations": []string{"INSERT"},
		"condition": "after.total > 1000", "actions": []map[string]any{{"kind": "webhook", "url": hook.URL, "secret": "s3cret"}}})
	p.Rule(t, obstest.TenantA, map[string]any{"name": "changed", "table": "public.orders", "operations": []string{"UPDATE"},
		"condition": `"total" in changed`, "actions": []map[string]any{{"kind": "slack", "url": slack.URL,
			"template": "order {{key.id}}: {{before.total}} -> {{after.total}} by {{after.note}}"}}})
	p.Rule(t, obstest.TenantA, map[string]any{"name": "gone", "table": "public.orders", "operations": []string{"DELETE"},
		"actions": []map[string]any{{"kind": "email", "to": []string{"sales@acme.test"}, "subject": "Order {{key.id}} deleted"}}})
	var sigOK bool
	// Verify the signature on the raw body.
	hook.Config.Handler = verifying(hook.Config.Handler, "s3cret", &sigOK)
	o, _ := p.start(t, "w1")

	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total, note) values (1, $1, 5000, 'big'), (2, $1, 10, 'small')", obstest.TenantA)
	p.SQL(t, obstest.TenantA, "update orders set note = 'x' where id = 2")                     // no total change: no Slack
	p.SQL(t, obstest.TenantA, "update orders set total = 7, note = '<!channel>' where id = 2") // Slack
	p.SQL(t, obstest.TenantA, "delete from orders where id = 1")                               // email

	await.Until(t, 10*time.Second, "webhook, slack and email", func() bool {
		return hook.Delivered() == 1 && slack.Delivered() == 1 && len(p.SMTP.Messages()) == 1
	})
	// Once the queue is empty every job has been acknowledged: nothing is
	// left to deliver a second time.
	await.Until(t, 10*time.Second, "the queue drained", func() bool {
		n, err := o.queue.Backlog(context.Background(), obstest.TenantA)
		return err == nil && n == 0
	})
	if hook.Delivered() != 1 || slack.Delivered() != 1 {
		t.Fatalf("got %d webhooks and %d slack messages, want 1 and 1", hook.Delivered(), slack.Delivered())
	}
	for _, pl := range hook.Snapshot().Payloads {
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
	await.Until(t, 10*time.Second, "the webhook's delivery in its rule's log", func() bool {
		ds, err := o.queue.Recent(context.Background(), obstest.TenantA, bigRule, 10)
		return err == nil && len(ds) == 1 && ds[0].Status == core.DeliveryDelivered && ds[0].Attempt == 1
	})
	if got := slack.Snapshot().Bodies[0]; got != `{"text":"order 2: 10 -\u003e 7 by \u0026lt;!channel\u0026gt;"}` {
		t.Fatalf("slack body: got %s", got)
	}
	if st := o.Stats(); st.Delivered.Load() != 3 || o.Enqueued() != 3 || o.Degraded() || o.Backlog(context.Background()).Pending != 0 {
		t.Fatalf("got %d delivered, %d enqueued, degraded %v, backlog %+v; want 3, 3, not degraded, nothing pending",
			st.Delivered.Load(), o.Enqueued(), o.Degraded(), o.Backlog(context.Background()))
	}
	m := p.SMTP.Messages()[0]
	if !m.TLS || m.User != p.SMTP.Username || m.Header.Get("Subject") != "Order 1 deleted" || !strings.Contains(string(m.Body), "DELETE") {
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
	flaky, gone, slow := obstest.StartReceiver(t), obstest.StartReceiver(t), obstest.StartReceiver(t)
	flaky.Handle(func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, n int) bool {
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	})
	var fixed sync.Mutex
	broken := true
	gone.Handle(func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, _ int) bool {
		fixed.Lock()
		defer fixed.Unlock()
		if broken {
			w.WriteHeader(http.StatusNotFound)
			return false
		}
		return true
	})
	slow.Handle(func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, n int) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return false
		}
		return true
	})
	for i, rc := range []*obstest.Receiver{flaky, gone, slow} {
		p.Rule(t, obstest.TenantA, map[string]any{"name": fmt.Sprint("r", i), "table": "public.orders",
			"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	}
	o, _ := p.start(t, "w1")
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values (1, $1, 1)", obstest.TenantA)

	await.Until(t, 10*time.Second, "retried deliveries", func() bool { return flaky.Delivered() == 1 && slow.Delivered() == 1 })
	fd := flaky.Snapshot()
	for k, times := range fd.Attempts {
		if len(times) != 3 || fd.Count[k] != 1 {
			t.Fatalf("flaky target: got %d attempts, %d deliveries, want 3 and 1", len(times), fd.Count[k])
		}
	}
	for _, times := range slow.Snapshot().Attempts {
		// The backoff cap is 100ms: only Retry-After explains a second's wait.
		if gap := times[1].Sub(times[0]); gap < time.Second {
			t.Fatalf("retry came %v after a Retry-After of 1s", gap)
		}
	}
	ctx := context.Background()
	var dls []core.DeadLetter
	await.Until(t, 5*time.Second, "the dead letter", func() bool {
		dls, _ = o.queue.DeadLetters(ctx, obstest.TenantA, 10)
		return len(dls) == 1
	})
	for _, times := range gone.Snapshot().Attempts {
		if len(times) != 1 {
			t.Fatalf("a permanent error was retried: %d attempts", len(times))
		}
	}
	if !strings.Contains(dls[0].Reason, "404") {
		t.Fatalf("dead letter reason: got %q", dls[0].Reason)
	}
	// Fix the target and replay (what `fraise observers dlq replay` does;
	// cmd/fraise/cli tests the command).
	fixed.Lock()
	broken = false
	fixed.Unlock()
	if n, err := o.queue.Replay(ctx, obstest.TenantA, nil); err != nil || n != 1 {
		t.Fatalf("replay: got %d, %v; want 1 job replayed", n, err)
	}
	await.Until(t, 5*time.Second, "the replayed job", func() bool { return gone.Delivered() == 1 })
}

// TestObserversRedactSecretsInLogsAndDeadLetters: deliveries to secret URLs
// fail in every way a target can (an answer quoting the path, a transient
// failure until the attempts run out, no answer at all); the pipeline's
// logs, at debug level, the dead letters' reasons and last errors, and
// `fraise observers dlq list` name the targets redacted only (security
// #13, defect 7b).
func TestObserversRedactSecretsInLogsAndDeadLetters(t *testing.T) {
	p := mustPipeline(t)
	p.opts.MaxAttempts = 2
	gone, failing := obstest.StartReceiver(t), obstest.StartReceiver(t)
	gone.Handle(func(w http.ResponseWriter, r *http.Request, _ observe.WebhookPayload, _ int) bool {
		http.Error(w, "no such hook: "+r.URL.String(), http.StatusNotFound)
		return false
	})
	failing.Handle(func(w http.ResponseWriter, r *http.Request, _ observe.WebhookPayload, _ int) bool {
		http.Error(w, "down for "+r.URL.String(), http.StatusServiceUnavailable)
		return false
	})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	secrets := []string{"slackSECRET", "tokSECRET", "pwSECRET"}
	targets := []map[string]any{
		{"kind": "slack", "url": gone.URL + "/services/T0001/B0001/slackSECRETslackSECRET42"},
		{"kind": "webhook", "url": failing.URL + "/in?token=tokSECRET"},
		{"kind": "webhook", "url": strings.Replace(closed.URL, "://", "://u:pwSECRET@", 1) + "/in"},
	}
	for i, a := range targets {
		p.Rule(t, obstest.TenantA, map[string]any{"name": fmt.Sprint("secret", i), "table": "public.orders", "actions": []map[string]any{a}})
	}
	logs := &logtest.Buffer{}
	o, _ := p.startLogging(t, "w1", slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values (1, $1, 1)", obstest.TenantA)

	ctx := context.Background()
	var dls []core.DeadLetter
	await.Until(t, 15*time.Second, "three dead letters", func() bool {
		dls, _ = o.queue.DeadLetters(ctx, obstest.TenantA, 10)
		return len(dls) == 3
	})
	seen := map[string]string{"logs": logs.String()}
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
		if !strings.Contains(seen["logs"], want) {
			t.Errorf("the logs do not name %s:\n%s", want, seen["logs"])
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
	p.opts.Protection = observe.NewProtection()
	p.opts.Protection.GuardColumn("note", observe.Guard{Field: "Order.note", Scope: "read:Order.note"})
	named, older, slack := obstest.StartReceiver(t), obstest.StartReceiver(t), obstest.StartReceiver(t)
	p.Rule(t, obstest.TenantA, map[string]any{"name": "named", "table": "public.orders", "columns": []string{"id", "total"},
		"actions": []map[string]any{{"kind": "webhook", "url": named.URL}}})
	p.Rule(t, obstest.TenantA, map[string]any{"name": "older", "table": "public.orders",
		"actions": []map[string]any{{"kind": "webhook", "url": older.URL}, {"kind": "slack", "url": slack.URL,
			"template": "{{key.id}} {{after.total}} {{after.note}}."}}})
	p.start(t, "w1")
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total, note) values (1, $1, 10, 'noteSECRET')", obstest.TenantA)
	p.SQL(t, obstest.TenantA, "update orders set total = 11, note = 'noteSECRET2' where id = 1")
	await.Until(t, 10*time.Second, "the deliveries", func() bool {
		return named.Delivered() == 2 && older.Delivered() == 2 && slack.Delivered() == 2
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
		rc            *obstest.Receiver
		rows, changed string
	}{
		{"the columns named", named, "id,total", "total"},
		{"no columns named: all but the protected", older, "at,id,tenant_id,total", "total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.rc.Snapshot()
			for _, body := range got.Bodies {
				if strings.Contains(body, "noteSECRET") || strings.Contains(body, `"note"`) {
					t.Fatalf("a body holds the note: %s", body)
				}
			}
			for _, pl := range got.Payloads {
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
	bodies := slack.Snapshot().Bodies
	sort.Strings(bodies)
	if got := strings.Join(bodies, " "); got != `{"text":"1 10 ."} {"text":"1 11 ."}` {
		t.Fatalf("slack: got %s, want the total without the note", got)
	}
}

// TestObserversChaos stops Redis while events flow and kills a worker in
// the middle of a job: every matching event arrives, each idempotency key
// counted once at the receiver.
func TestObserversChaos(t *testing.T) {
	p := mustPipeline(t)
	rc := obstest.StartReceiver(t)
	var hung sync.Once
	hang := make(chan struct{})
	rc.Handle(func(w http.ResponseWriter, r *http.Request, pl observe.WebhookPayload, n int) bool {
		var row struct{ ID int }
		_ = json.Unmarshal(pl.Event.After, &row)
		if row.ID == 7 && n == 1 {
			// The first worker dies holding this job.
			hung.Do(func() { close(hang) })
			<-r.Context().Done()
			return false
		}
		return true
	})
	p.Rule(t, obstest.TenantA, map[string]any{"name": "odd", "table": "public.orders", "condition": "after.id % 2 == 1",
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
			p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obstest.TenantA, i)
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
	await.Until(t, 10*time.Second, "the second worker delivering", func() bool { return o2.Stats().Delivered.Load() > 0 })
	p.Redis.Stop()
	// At least this event arrives while Redis is down.
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obstest.TenantA, 1001)
	await.Until(t, 10*time.Second, "degraded mode", o2.Degraded)
	// Events keep coming while degraded: some 20 more rows (or the rest).
	degradedAt := insertedRows.Load()
	await.Until(t, 10*time.Second, "rows inserted while degraded", func() bool {
		select {
		case <-inserted:
			return true
		default:
			return insertedRows.Load() >= degradedAt+20
		}
	})
	if err := p.Redis.Start(); err != nil {
		t.Fatal(err)
	}
	<-inserted
	await.Until(t, 20*time.Second, "every odd row delivered", func() bool { return rc.Delivered() == total/2+1 })
	await.Until(t, 5*time.Second, "leaving degraded mode", func() bool { return !o2.Degraded() })
	// At least once on the wire (a job whose acknowledgement Redis lost is
	// sent again); exactly once by idempotency key: one key per event, so
	// a receiver that deduplicates on it processes every event once.
	got := rc.Snapshot()
	rows := map[int]string{}
	dups := 0
	for k, n := range got.Count {
		dups += n - 1
		var row struct{ ID int }
		_ = json.Unmarshal(got.Payloads[k].Event.After, &row)
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
	p.opts.Workers, p.opts.PerTenant = 16, 4
	p.opts.MaxAttempts = 3
	// A's requests are held until the test ends, longer than any wait
	// below: had A's jobs taken B's workers, B's deliveries would wait for
	// them and never all arrive.
	p.opts.Timeouts[core.ActionWebhook] = time.Minute
	release := make(chan struct{})
	bad, good := obstest.StartReceiver(t), obstest.StartReceiver(t)
	held := make(chan struct{}, 64)
	bad.Handle(func(w http.ResponseWriter, r *http.Request, _ observe.WebhookPayload, _ int) bool {
		held <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusBadGateway)
		return false
	})
	t.Cleanup(func() { close(release) })
	p.Rule(t, obstest.TenantA, map[string]any{"name": "a", "table": "public.orders", "actions": []map[string]any{{"kind": "webhook", "url": bad.URL}}})
	p.Rule(t, obstest.TenantB, map[string]any{"name": "b", "table": "public.orders", "actions": []map[string]any{{"kind": "webhook", "url": good.URL}}})
	p.start(t, "w1")
	const n = 60
	for i := 1; i <= n; i++ {
		p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obstest.TenantA, 1000+i)
	}
	// A's target holds as many requests as A may have in flight.
	for range p.opts.PerTenant {
		select {
		case <-held:
		case <-time.After(30 * time.Second):
			t.Fatal("tenant A's target got fewer requests than A's share of the workers")
		}
	}
	for i := 1; i <= n; i++ {
		p.SQL(t, obstest.TenantB, "insert into orders (id, tenant_id, total) values ($2, $1, 1)", obstest.TenantB, 2000+i)
	}
	await.Until(t, 30*time.Second, "all of B's deliveries while A's target holds A's", func() bool { return good.Delivered() == n })
	for _, pl := range good.Snapshot().Payloads {
		if pl.Event.Tenant != obstest.TenantB {
			t.Errorf("tenant B's receiver got an event of tenant %s", pl.Event.Tenant)
		}
	}
	if got := len(held); got > 0 {
		t.Errorf("tenant A's target holds %d requests more than A's share (%d) of the workers", got, p.opts.PerTenant)
	}
	if bad.Delivered() != 0 {
		t.Fatalf("tenant A's target: got %d deliveries, want none", bad.Delivered())
	}
}

// TestObserversBackpressureFailFast: with fail-fast, jobs of a tenant whose
// queue is past its bound go to the dead-letter stream (replayable), and
// the dispatcher keeps going; nothing is dropped.
func TestObserversBackpressureFailFast(t *testing.T) {
	p := mustPipeline(t)
	p.opts.Backpressure.Policy, p.opts.Backpressure.MaxBytes = observe.PolicyFailFast, 1<<20
	rc := obstest.StartReceiver(t)
	p.Rule(t, obstest.TenantA, map[string]any{"name": "all", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	o := p.open(t, "w", obstest.Logger(t))
	// The dispatcher caches a tenant's backlog for 250 ms of its clock; the
	// test moves that clock past it between batches.
	var clockMu sync.Mutex
	now := time.Now()
	d := &observe.Dispatcher{Events: o.events, Rules: o.events, Queue: o.queue, Name: p.opts.Cursor,
		Backpressure: p.opts.Backpressure, Logger: obstest.Logger(t),
		Now: func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The dispatcher alone: no worker drains the queue.
	go func() { _ = o.events.Lead(ctx, d.Name, d.Run) }()
	const total = 3000 // about 3 MB of jobs against a 1 MB bound
	for i := 0; i < total; i += 500 {
		if err := tryInsertRows(p, obstest.TenantA, i+1, 500); err != nil {
			t.Fatal(err)
		}
		// The batch decided, the next one sees a fresh backlog estimate.
		await.Until(t, 10*time.Second, "the batch queued or dead-lettered", func() bool {
			n, _ := o.queue.Backlog(ctx, obstest.TenantA)
			dls, _ := o.queue.DeadLetters(ctx, obstest.TenantA, total)
			return int(n)+len(dls) == i+500
		})
		clockMu.Lock()
		now = now.Add(300 * time.Millisecond)
		clockMu.Unlock()
	}
	var queued, dead int
	await.Until(t, 10*time.Second, "every event queued or dead-lettered", func() bool {
		n, _ := o.queue.Backlog(ctx, obstest.TenantA)
		dls, _ := o.queue.DeadLetters(ctx, obstest.TenantA, total)
		queued, dead = int(n), len(dls)
		return queued+dead == total
	})
	if dead == 0 || queued == 0 {
		t.Fatalf("got %d queued and %d dead-lettered, want both", queued, dead)
	}
	dls, _ := o.queue.DeadLetters(ctx, obstest.TenantA, 1)
	if !strings.HasPrefix(dls[0].Reason, "backpressure") {
		t.Fatalf("dead letter reason: got %q", dls[0].Reason)
	}
	t.Logf("%d queued, %d dead-lettered for backpressure", queued, dead)
}

// TestObserversBreakerHoldsJobs: once a target's breaker opens, its jobs
// wait instead of hammering it, and go through after it recovers.
func TestObserversBreakerHoldsJobs(t *testing.T) {
	p := mustPipeline(t)
	const openTimeout = time.Second
	p.opts.Breakers[core.ActionWebhook] = observe.BreakerSettings{FailureThreshold: 2, Window: time.Minute,
		OpenTimeout: openTimeout, SuccessThreshold: 1}
	p.opts.MaxAttempts = 50
	p.opts.Workers, p.opts.PerTenant = 8, 4
	rc := obstest.StartReceiver(t)
	var mu sync.Mutex
	down := true
	rc.Handle(func(w http.ResponseWriter, _ *http.Request, _ observe.WebhookPayload, _ int) bool {
		mu.Lock()
		defer mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	})
	p.Rule(t, obstest.TenantA, map[string]any{"name": "all", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	// The pipeline's clock moves only when the test moves it: the breaker
	// stays open until then.
	var clockMu sync.Mutex
	now := time.Now()
	p.opts.Now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	o, _ := p.start(t, "w1")
	const n = 20
	insertRows(t, p, obstest.TenantA, 1, n)
	attempts := func() int {
		c := 0
		for _, ts := range rc.Snapshot().Attempts {
			c += len(ts)
		}
		return c
	}
	// The jobs already running when it opened fail; then nothing reaches
	// the target until the open timeout passes: every job comes back and is
	// held again, and the target is not called.
	stats := o.Stats()
	await.Until(t, 10*time.Second, "a job held by the open breaker", func() bool { return stats.Deferred.Load() > 0 })
	// A round of holds later, the calls under way as it opened have ended.
	d0 := stats.Deferred.Load()
	await.Until(t, 20*time.Second, "the held jobs held again", func() bool { return stats.Deferred.Load() >= d0+n })
	a1, d1 := attempts(), stats.Deferred.Load()
	await.Until(t, 20*time.Second, "the held jobs held again", func() bool { return stats.Deferred.Load() >= d1+n })
	a2 := attempts()
	if a1 >= n || a2 != a1 {
		t.Fatalf("the target was called %d times, then %d more while its breaker was open; want fewer than %d, then none", a1, a2-a1, n)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	clockMu.Lock()
	now = now.Add(openTimeout)
	clockMu.Unlock()
	await.Until(t, 10*time.Second, "every job after recovery", func() bool { return rc.Delivered() == n })
}
