// Package drill_test is the restore drill of docs/operations.md: the whole
// stack on an archiving primary, traffic that fires observer webhooks, the
// primary destroyed, a new cluster restored from the archive at a point in
// time, the stack started on it, and the recovery point and time measured.
//
// `make test` runs the short drill (a few seconds of traffic); `make drill`
// runs the long one:
//
//	go test -count=1 -v -run TestRestoreDrill ./test/drill/ -args -drill.rows=20000 -drill.traffic=60s -drill.rpo-max=5s
package drill_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/stack"
)

var loadRows = flag.Int("drill.rows", 1_000, "posts loaded before the base backup (make drill: 20000)")

var trafficFor = flag.Duration("drill.traffic", 6*time.Second,
	"how long the drill writes before it destroys the primary (make drill: 60s)")

// rpoTarget is the recovery point objective deploy/backup/postgresql.conf's
// archive_timeout (4 s) is set for.
const rpoTarget = 5 * time.Second

// rpoMax fails the drill above it. make drill holds the drill to the
// target; make test, whose short drill shares two cores with every other
// package's tests, only to archiving working at all (twice the target): a
// time objective belongs to the drill, not to the unit tests.
var rpoMax = flag.Duration("drill.rpo-max", 2*rpoTarget, "the drill fails with an RPO above this (make drill: 5s)")

// aliceID is the demo's author of Acme posts.
const aliceID = "a0000000-0000-4000-8000-00000000000a"

// drillTOML enables observers with webhooks to the loopback receiver, and
// retries soon enough for a test: the receiver's outage opens the breaker,
// which tries again after a second rather than the default 30.
const drillTOML = `
[observers]
enabled = true
allow_private_targets = true
backoff_base = "50ms"
backoff_cap = "500ms"
[observers.webhook]
open_timeout = "1s"
`

// receiver is the webhook target: it records each attempt and each
// delivery (a 2xx answer) of each post's event. While down it answers 503,
// as a receiver in an outage does: the jobs wait in the queue.
type receiver struct {
	*httptest.Server
	down      atomic.Bool
	mu        sync.Mutex
	delivered map[string][]string    // post id → idempotency keys delivered
	attempts  map[string][]time.Time // post id → attempt times
	keys      map[string]int         // idempotency key → deliveries
	changed   chan struct{}
}

func mustReceiver(tb testing.TB) *receiver {
	tb.Helper()
	rc := &receiver{delivered: map[string][]string{}, attempts: map[string][]time.Time{}, keys: map[string]int{},
		changed: make(chan struct{}, 1)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p observe.WebhookPayload
		var key struct{ ID string }
		if json.Unmarshal(body, &p) != nil || json.Unmarshal(p.Event.Key, &key) != nil || key.ID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.attempts[key.ID] = append(rc.attempts[key.ID], time.Now())
		if rc.down.Load() {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ik := r.Header.Get(webhook.HeaderIdempotencyKey)
		rc.delivered[key.ID] = append(rc.delivered[key.ID], ik)
		rc.keys[ik]++
		select {
		case rc.changed <- struct{}{}:
		default:
		}
	}))
	tb.Cleanup(rc.Close)
	return rc
}

// write is one acknowledged createPost: its post, when its transaction
// began (the post's publishedAt, now() in fn_create_post: the commit
// follows within the request) and when the answer came.
type write struct {
	id    string
	began time.Time
	ack   time.Time
}

// traffic is what a writer did: the writes acknowledged, and the first
// failure.
type traffic struct {
	acked  []write
	failed int
	first  error
}

// writer creates posts through the gateway, one at a time, until stop is
// closed, and returns those whose creation was acknowledged (each of those
// transactions had committed) and the first failure.
func writer(s *stack.Stack, token, prefix string, stop <-chan struct{}, enough func(traffic) bool) traffic {
	var out traffic
	for n := 0; ; n++ {
		select {
		case <-stop:
			return out
		default:
		}
		if enough != nil && enough(out) {
			return out
		}
		body, _ := json.Marshal(map[string]any{
			"query":     `mutation($in: CreatePostInput!) { createPost(input: $in) { ... on CreatePostSuccess { post { id publishedAt } } } }`,
			"variables": map[string]any{"in": map[string]any{"title": prefix + strconv.Itoa(n), "authorId": aliceID}},
		})
		id, began, err := createPost(s, token, body)
		if err != nil {
			out.failed++
			if out.first == nil {
				out.first = err
			}
			continue
		}
		out.acked = append(out.acked, write{id: id, began: began, ack: time.Now()})
	}
}

func createPost(s *stack.Stack, token string, body []byte) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+s.Addrs.Gateway+"/graphql", strings.NewReader(string(body)))
	if err != nil {
		return "", time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.Client.Do(req)
	if err != nil {
		return "", time.Time{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var g struct {
		Data struct {
			CreatePost struct {
				Post struct{ ID, PublishedAt string }
			}
		}
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &g) != nil || g.Data.CreatePost.Post.ID == "" {
		return "", time.Time{}, fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	began, err := time.Parse(time.RFC3339Nano, g.Data.CreatePost.Post.PublishedAt)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("publishedAt: %w", err)
	}
	return g.Data.CreatePost.Post.ID, began, nil
}

// backupScript runs one of deploy/backup's scripts as the server's OS user,
// as an operator does.
func backupScript(tb testing.TB, env []string, script string, args ...string) string {
	tb.Helper()
	bin, err := harness.PostgresBinDir()
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "deploy", "backup"))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, err := harness.PostgresCommand(ctx, filepath.Join(dir, script), args...)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Env = append(append(os.Environ(), "PG_BINDIR="+bin), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// archivingPrimary starts a durable primary archiving with
// deploy/backup/archive-wal.sh into archive, with
// deploy/backup/postgresql.conf's settings (archive_timeout among them).
func archivingPrimary(tb testing.TB, archive string) *harness.Postgres {
	tb.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "deploy", "backup"))
	if err != nil {
		tb.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "postgresql.conf"))
	if err != nil {
		tb.Fatal(err)
	}
	var settings []string
	for _, line := range strings.Split(string(conf), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "archive_command") {
			settings = append(settings, line)
		}
	}
	settings = append(settings, "archive_command = '"+filepath.Join(dir, "archive-wal.sh")+" "+archive+" %p %f'")
	return harness.StartPostgresWith(tb, harness.PostgresOptions{WALSegmentMB: 1, Durable: true, Settings: settings})
}

func queryStrings(tb testing.TB, url, sql string, args ...any) []string {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return out
}

// TestRestoreDrill is the restore drill (docs/operations.md, Restore). It
// prints the recovery point (RPO: the seconds of acknowledged writes before
// the primary's destruction that the restore lost) and the recovery time
// (RTO: from the decision to restore to the first request the restored
// stack answers), and checks what observers promise across a restore: no
// event delivered twice, every event whose change survived delivered,
// none of a lost change delivered after the restore, and the queue in
// Redis reconciled with the restored outbox.
func TestRestoreDrill(t *testing.T) {
	harness.SkipShort(t)
	ctx := context.Background()
	var phases []string
	began := time.Now()
	phase := func(name string) { phases = append(phases, fmt.Sprintf("%s %.1fs", name, time.Since(began).Seconds())) }
	archive := harness.PostgresDir(t)
	pg := archivingPrimary(t, archive)
	phase("primary started")
	rd := harness.StartPersistentRedis(t)
	rc := mustReceiver(t)
	setup := "SELECT fraise.observe_table('public.posts')"
	s1 := stack.StartWith(t, stack.Options{Postgres: pg, Database: "postgres", Redis: rd, TOML: drillTOML, SetupSQL: setup, PerTenant: 1_000_000})
	admin := s1.Token(t, demo.TenantAcme, "alice", "admin")
	s1.MustServe(t, admin)
	phase("stack started")
	// The data: posts loaded before the base backup (and before the rule:
	// they are no event anyone observes), which the restore must bring back.
	stack.Exec(t, pg.AdminURL("postgres"), fmt.Sprintf(`INSERT INTO public.posts (tenant_id, author_id, title, body, published_at)
		SELECT '%s', '%s', 'drill-load-' || g, repeat('lorem ipsum ', 20), now() FROM generate_series(1, %d) g`,
		demo.TenantAcme, aliceID, *loadRows))
	phase("data loaded")
	status, g := s1.GraphQL(t, admin, map[string]any{
		"query": `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded } }`,
		"variables": map[string]any{"in": map[string]any{"name": "drill", "table": "public.posts", "operations": []any{"INSERT"}, "columns": []any{"id", "title"},
			"actions": []any{map[string]any{"kind": "webhook", "url": rc.URL}}}}})
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("creating the observer rule: status %d errors %+v", status, g.Errors)
	}
	backupScript(t, []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(pg.Port), "PGUSER=postgres"}, "base-backup.sh", archive)
	phase("base backup taken")

	// Traffic. For its last seconds the receiver is down, so that jobs of
	// changes that survive and of changes that are lost wait in the queue
	// when the primary goes.
	stop := make(chan struct{})
	done := make(chan traffic, 1)
	go func() { done <- writer(s1, admin, "drill-before-", stop, nil) }()
	outage := min(3*time.Second, *trafficFor*2/5)
	time.Sleep(*trafficFor - outage) // the traffic's length: nothing is awaited
	rc.down.Store(true)
	time.Sleep(outage) // the receiver's outage: its length is the drill's
	destroyed := time.Now()
	pg.Destroy(t)
	close(stop)
	tr := <-done
	before := tr.acked
	s1.Stop()
	phase("primary destroyed")

	// The decision: restore the archive to the moment of the loss into a
	// new cluster, start it, start Fraise on it.
	decided := time.Now()
	data := filepath.Join(harness.PostgresDir(t), "data")
	out := backupScript(t, nil, "restore.sh", "--archive", archive, "--pgdata", data,
		"--target-time", destroyed.UTC().Format("2006-01-02 15:04:05.000000Z07:00"))
	prepared := time.Now()
	rpg := harness.StartPostgresFrom(t, data, "archive_mode = off")
	restoredDB := time.Now()
	rc.down.Store(false)
	s2 := stack.StartWith(t, stack.Options{Postgres: rpg, Database: "postgres", Redis: rd, TOML: drillTOML, SetupSQL: setup, PerTenant: 1_000_000})
	admin2 := s2.Token(t, demo.TenantAcme, "alice", "admin")
	if !await.WithinEvery(2*time.Minute-time.Since(decided), 20*time.Millisecond, func() bool {
		status, _ = s2.GraphQL(t, admin2, map[string]any{"query": "{ __typename }"})
		return status == http.StatusOK
	}) {
		t.Fatalf("the restored stack answers no request after 2 minutes: status %d", status)
	}
	rto := time.Since(decided)
	phase("restored stack answers")

	// RPO: the acknowledged writes the restore lost, and the span of time
	// whose commits they were: from the first lost write's transaction to
	// the loss (0 when none was lost). The newest surviving write bounds
	// it from above; both are printed.
	admURL := rpg.AdminURL("postgres")
	if got := queryStrings(t, admURL, "select count(*)::text from public.posts where title like 'drill-load-%'"); got[0] != strconv.Itoa(*loadRows) {
		t.Fatalf("got %s loaded posts restored, want %d", got[0], *loadRows)
	}
	survived := map[string]bool{}
	for _, id := range queryStrings(t, admURL, "select id::text from public.posts where title like 'drill-before-%'") {
		survived[id] = true
	}
	var lastSurvived, firstLost time.Time
	lost := 0
	for i, w := range before {
		if !survived[w.id] {
			if lost == 0 {
				firstLost = w.began
			}
			lost++
			continue
		}
		if lost > 0 {
			t.Fatalf("write %d (%s) survived although an earlier acknowledged write was lost", i, w.id)
		}
		lastSurvived = w.ack
	}
	if len(before) == 0 || lost == len(before) {
		t.Fatalf("got %d acknowledged writes, %d of them lost (%d failed, the first: %v): the drill restored nothing it wrote",
			len(before), lost, tr.failed, tr.first)
	}
	var rpo time.Duration
	if lost > 0 {
		rpo = destroyed.Sub(firstLost)
	}

	// Traffic on the restored stack.
	// Fifty writes, or fewer if one fails.
	tr2 := writer(s2, admin2, "drill-after-", nil, func(tr traffic) bool { return len(tr.acked) >= 50 || tr.failed > 0 })
	after := tr2.acked
	if len(after) == 0 || tr2.failed > 0 {
		t.Fatalf("the restored stack acknowledged %d writes and failed %d, the first: %v", len(after), tr2.failed, tr2.first)
	}

	// Every surviving change's event is delivered: wait for them all.
	want := map[string]bool{}
	for _, w := range before {
		if survived[w.id] {
			want[w.id] = true
		}
	}
	for _, w := range after {
		want[w.id] = true
	}
	deadline := time.After(90 * time.Second)
	for {
		rc.mu.Lock()
		missing := 0
		for id := range want {
			if len(rc.delivered[id]) == 0 {
				missing++
			}
		}
		rc.mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-rc.changed:
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatalf("%d of %d events of surviving changes not delivered after 90s\n%s", missing, len(want), s2.Logs())
		}
	}

	phase("every surviving event delivered")
	// The queue is reconciled with the restored outbox, and drained.
	check := s2.Run(t, "observers", "reconcile", "--check", "--config", s2.ConfigPath)
	var gen struct {
		Generation int
		Reconciled bool
		Current    bool
	}
	if err := json.Unmarshal([]byte(check), &gen); err != nil || !gen.Current || !gen.Reconciled || gen.Generation < 1 {
		t.Fatalf("observers reconcile --check: got %s (%v), want a new generation, current and reconciled", check, err)
	}
	q := goredis.NewClient(&goredis.Options{Addr: rd.Addr})
	t.Cleanup(func() { q.Close() })
	tk := func(k string) string { return "fraise:{" + demo.TenantAcme + "}:observer:" + k }
	drained := func() (int64, int64, int64) {
		n, _ := q.XLen(ctx, tk("jobs")).Result()
		z, _ := q.ZCard(ctx, tk("delayed")).Result()
		d, _ := q.XLen(ctx, tk("dlq")).Result()
		return n, z, d
	}
	for {
		n, z, d := drained()
		if n == 0 && z == 0 && d == 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("the queue did not drain: %d jobs, %d delayed, %d dead-lettered", n, z, d)
		case <-time.After(100 * time.Millisecond):
		}
	}
	lostJobs, _ := q.XLen(ctx, tk("lost")).Result()
	// The tenant's enqueue marker (the last outbox position it took) is of
	// the new generation: it names a position the restored outbox has.
	marker, err := q.Get(ctx, tk("enqueued")).Result()
	if wantPrefix := fmt.Sprintf("g%010d:", gen.Generation); err != nil || !strings.HasPrefix(marker, wantPrefix) {
		t.Errorf("enqueue marker: got %q (%v), want a position of generation %d (%s...)", marker, err, gen.Generation, wantPrefix)
	}
	phase("queue drained")
	pending := queryStrings(t, admURL, "select pending::text from fraise.observer_position('default')")

	// The same archive restored to a point in time before the loss, as
	// after damage (a bad migration, a mistaken delete): restore.sh sets
	// recovery_target_time, and recovery stops between two writes. The
	// writer is sequential, so write k committed before it answered and
	// write k+1 began after that: a target between the two keeps writes
	// 0..k and no later one.
	kept := len(before) - lost
	k := kept / 2
	if k+1 >= kept {
		t.Fatalf("got %d surviving writes, too few to restore between two of them", kept)
	}
	target := before[k].ack
	if next := before[k+1].began; next.After(target) {
		target = target.Add(next.Sub(target) / 2)
	}
	pitData := filepath.Join(harness.PostgresDir(t), "data")
	pitOut := backupScript(t, nil, "restore.sh", "--archive", archive, "--pgdata", pitData,
		"--target-time", target.UTC().Format("2006-01-02 15:04:05.000000Z07:00"))
	if strings.Contains(pitOut, "replaying the whole archive") {
		t.Fatalf("restore.sh to %s replays the whole archive, want it to stop there:\n%s", target, pitOut)
	}
	pitStarted := time.Now()
	ppg := harness.StartPostgresFrom(t, pitData, "archive_mode = off")
	pitRestored := time.Since(pitStarted)
	pit := map[string]bool{}
	for _, id := range queryStrings(t, ppg.AdminURL("postgres"), "select id::text from public.posts where title like 'drill-before-%'") {
		pit[id] = true
	}
	for i, w := range before[:kept] {
		if pit[w.id] != (i <= k) {
			t.Errorf("restored to %s: write %d (answered %s) kept %v, want %v", target.Format(time.RFC3339Nano), i,
				w.ack.Format(time.RFC3339Nano), pit[w.id], i <= k)
		}
	}
	if len(pit) != k+1 {
		t.Errorf("restored to %s: got %d writes, want %d", target.Format(time.RFC3339Nano), len(pit), k+1)
	}
	phase("point-in-time restore checked")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for ik, n := range rc.keys {
		if n != 1 {
			t.Errorf("idempotency key %s: delivered %d times, want 1", ik, n)
		}
	}
	deliveredLost, attemptedLost := 0, 0
	for _, w := range before {
		n := len(rc.delivered[w.id])
		if survived[w.id] && n != 1 {
			t.Errorf("post %s, which survived: delivered %d times, want 1", w.id, n)
		}
		if survived[w.id] {
			continue
		}
		if n > 1 {
			t.Errorf("post %s, lost by the restore: delivered %d times, want at most 1 (before the loss)", w.id, n)
		}
		deliveredLost += n
		for _, at := range rc.attempts[w.id] {
			if at.After(restoredDB) {
				attemptedLost++
				t.Errorf("post %s, lost by the restore, was attempted at %s, after the restored database was up", w.id, at.Format(time.RFC3339Nano))
				break
			}
		}
	}
	for _, w := range after {
		if n := len(rc.delivered[w.id]); n != 1 {
			t.Errorf("post %s, written after the restore: delivered %d times, want 1", w.id, n)
		}
	}

	t.Logf("restore.sh:\n%s", out)
	t.Logf("restore.sh to a point in time:\n%s", pitOut)
	t.Logf("phases, since the test began: %s", strings.Join(phases, ", "))
	fmt.Printf("drill: %d posts loaded, then %s of traffic: %d writes acknowledged before the loss, %d after the restore\n",
		*loadRows, *trafficFor, len(before), len(after))
	fmt.Printf("drill: RPO %.2fs (%d acknowledged writes lost, from the first one's transaction to the loss; the newest surviving write was answered %.2fs before it; target %s, archive_timeout 4s)\n",
		rpo.Seconds(), lost, destroyed.Sub(lastSurvived).Seconds(), rpoTarget)
	fmt.Printf("drill: RTO %.2fs (decision to first answered request: restore.sh %.2fs, PostgreSQL's replay and promotion %.2fs, the stack's start %.2fs)\n",
		rto.Seconds(), prepared.Sub(decided).Seconds(), restoredDB.Sub(prepared).Seconds(), rto.Seconds()-restoredDB.Sub(decided).Seconds())
	fmt.Printf("drill: point-in-time restore (recovery_target_time) to between write %d and %d of %d: %d kept, replayed and promoted in %.2fs\n",
		k, k+1, kept, len(pit), pitRestored.Seconds())
	fmt.Printf("drill: observers: %d events delivered once each; %d jobs of lost changes set aside (%d of those changes delivered before the loss); outbox generation %d, %s pending\n",
		len(want), lostJobs, deliveredLost, gen.Generation, pending[0])
	if rpo > *rpoMax {
		t.Errorf("RPO %s, want at most %s (target %s)", rpo, *rpoMax, rpoTarget)
	}
}
