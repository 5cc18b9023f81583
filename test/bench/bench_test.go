package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/loadgen"
	"github.com/fraise-dev/fraise/test/stack"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

var (
	//go:embed schema.sql
	schemaSQL string
	//go:embed seed.sql
	seedSQL string
	//go:embed schema.graphql
	schemaSDL string
)

// The tenant every request runs as; the other tenant's rows are there so
// that row-level security has something to filter.
const tenant = "11111111-1111-4111-8111-111111111111"

// The operations, each in both servers' idiom. The read: 50 published posts,
// newest first, each with its author. The write: create a post and read it
// back with its author's name.
const (
	fraiseRead = `query Feed($status: String!) {
  posts(where: {status: {eq: $status}}, orderBy: [{publishedAt: DESC_NULLS_LAST}], limit: 50) {
    id title status publishedAt author { id name email }
  }
}`
	postgraphileRead = `query Feed($status: String!) {
  allPosts(condition: {status: $status}, orderBy: [PUBLISHED_AT_DESC, ID_ASC], first: 50) {
    nodes { id title status publishedAt userByAuthorId { id name email } }
  }
}`
	fraiseCreate = `mutation Create($input: CreatePostInput!) {
  createPost(input: $input) { succeeded status post { id title author { name } } }
}`
	postgraphileCreate = `mutation Create($input: CreatePostInput!) {
  createPost(input: $input) { post { id title userByAuthorId { name } } }
}`
)

// load is the run shape: 10 s per measurement (2 s when CI is set, or
// FRAISE_BENCH_DURATION), after a warm-up, with 16 concurrent clients.
func load() loadgen.Load {
	l := loadgen.Load{Duration: 10 * time.Second, Warmup: time.Second, Concurrency: 16}
	if os.Getenv("CI") != "" {
		l.Duration, l.Warmup = 2*time.Second, 500*time.Millisecond
	}
	if d, err := time.ParseDuration(os.Getenv("FRAISE_BENCH_DURATION")); err == nil && d > 0 {
		l.Duration = d
	}
	return l
}

// BenchmarkVsPostGraphile measures the read and the write through the core
// directly, through the full ingress (Envoy, extauthz, the rate limiter)
// and on PostGraphile. The PostGraphile rows also report the ratios the
// targets are stated in: fraise-x, the core's throughput over
// PostGraphile's (targets: at least 3 for the read, 1 for the write), and
// fraise-p99-ratio, the core's p99 over PostGraphile's (target for the
// read: at most 1); ingress/postgraphile, the ingress's throughput over
// PostGraphile's (target for the read: at least 2); and fraise-cpu-x and
// ingress-cpu-x, PostGraphile's CPU time per request (server and database)
// over the core's and over the ingress's (every process of the path:
// `fraise dev`, Envoy, Redis), the throughput ratios a machine with no
// other load would show once CPU-bound (the load generator's CPU is
// counted for no one).
func BenchmarkVsPostGraphile(b *testing.B) {
	e := mustEnv(b)
	for _, op := range []string{"read", "create-post"} {
		b.Run(op, func(b *testing.B) {
			got := map[string]measurement{}
			for _, server := range []string{"core", "ingress", "postgraphile"} {
				b.Run(server, func(b *testing.B) {
					got[server] = measure(b, e.target(b, op, server), e.db)
					if server == "postgraphile" {
						reportVsPostGraphile(b, op, got)
					}
				})
			}
		})
	}
}

// reportVsPostGraphile reports, on PostGraphile's row, the core's and the
// ingress's figures over PostGraphile's, and whether the targets are met.
func reportVsPostGraphile(b *testing.B, op string, got map[string]measurement) {
	pg, core, ingress := got["postgraphile"], got["core"], got["ingress"]
	if pg.Requests == 0 {
		return
	}
	cpuX := func(m measurement) float64 {
		if c := m.serverCPU + m.pgCPU; c > 0 && pg.serverCPU+pg.pgCPU > 0 {
			return float64(pg.serverCPU+pg.pgCPU) / float64(c)
		}
		return 0
	}
	if core.Requests > 0 {
		x, p99 := core.RPS()/pg.RPS(), core.P99.Seconds()/pg.P99.Seconds()
		b.ReportMetric(x, "fraise-x")
		b.ReportMetric(p99, "fraise-p99-ratio")
		if c := cpuX(core); c > 0 {
			b.ReportMetric(c, "fraise-cpu-x")
		}
		verdict := met(x >= 1)
		if op == "read" {
			verdict = met(x >= 3 && p99 <= 1)
		}
		b.Logf("%s: core %.0f req/s, p99 %s, CPU %s + %s in PostgreSQL per request; "+
			"PostGraphile %.0f req/s, p99 %s, CPU %s + %s in PostgreSQL per request: "+
			"%.2fx the throughput, %.2f the p99, %.2fx less CPU: target %s",
			op, core.RPS(), core.P99, core.serverCPU, core.pgCPU, pg.RPS(), pg.P99, pg.serverCPU, pg.pgCPU,
			x, p99, cpuX(core), verdict)
	}
	if ingress.Requests > 0 {
		x := ingress.RPS() / pg.RPS()
		b.ReportMetric(x, "ingress/postgraphile")
		if c := cpuX(ingress); c > 0 {
			b.ReportMetric(c, "ingress-cpu-x")
		}
		verdict := "no target for this operation"
		if op == "read" {
			verdict = "target at least 2x: " + met(x >= 2)
		}
		b.Logf("%s through the ingress (Envoy, extauthz, rate limiter, core): %.0f req/s, p99 %s, CPU %s (Envoy %s) + %s in PostgreSQL per request: "+
			"%.2fx PostGraphile's throughput (%s), %.2fx less CPU",
			op, ingress.RPS(), ingress.P99, ingress.serverCPU, ingress.cpu["envoy"], ingress.pgCPU, x, verdict, cpuX(ingress))
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// presignRate bounds the requests per second a closed-loop run may send
// with assertions signed ahead: 4,000 a second per core, more than the
// core's read can serve per core (some 360 µs of CPU each, server and
// database). A faster run signs the rest as it goes and says so.
var presignRate = 4000 * runtime.NumCPU()

// measurement is one load run and the CPU it cost, per accepted request.
type measurement struct {
	loadgen.Result
	serverCPU, pgCPU time.Duration // per request; zero when unknown
	// cpu is each process's share of serverCPU, by its name in the target.
	cpu map[string]time.Duration
}

// measure checks one answer in full, then runs the load and reports it,
// with the CPU time the target's processes and the database's backends
// spent per request.
func measure(b *testing.B, t *target, db string) measurement {
	b.Helper()
	l := load()
	t.presign(1)
	mustAnswer(b, t.Target, t.verify)
	warm(b, t, l)
	// Signed before the clock starts: see assertionPool.
	t.presign(int(float64(presignRate) * (l.Warmup + l.Duration).Seconds()))
	b.ResetTimer()
	cpu := startCPU(db, t.pids()...)
	res, err := loadgen.Run(context.Background(), l, t.Target)
	procs, pg, cpuOK := cpu.stop()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	m := measurement{Result: res, cpu: map[string]time.Duration{}}
	if cpuOK && res.Requests > 0 {
		// The warm-up's requests are not recorded but cost CPU too: divide
		// by every request the run answered, estimated from its rate.
		n := res.RPS() * (l.Warmup + res.Elapsed).Seconds()
		for i, p := range t.procs {
			d := time.Duration(float64(procs[i]) / n)
			m.cpu[p.name] = d
			m.serverCPU += d
			if i > 0 { // the first is the server; the others are named
				b.ReportMetric(float64(d.Microseconds()), p.name+"-cpu-us/req")
			}
		}
		m.pgCPU = time.Duration(float64(pg) / n)
		b.ReportMetric(float64(m.serverCPU.Microseconds()), "server-cpu-us/req")
		b.ReportMetric(float64(m.pgCPU.Microseconds()), "pg-cpu-us/req")
	}
	b.ReportMetric(res.RPS(), "req/s")
	b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(res.Failures), "failures")
	if res.Requests > 0 {
		b.ReportMetric(float64(res.Elapsed.Nanoseconds())/float64(res.Requests), "ns/op")
	}
	if live := t.liveSigned(); live > 0 {
		b.ReportMetric(float64(live), "live-signed")
		b.Logf("the load generator signed %d assertions during the run (more requests than %d/s were signed ahead for): its CPU competed with the server's", live, presignRate)
	}
	if res.Failures > 0 {
		b.Errorf("%d requests failed; the first: %v", res.Failures, res.FirstErr)
	}
	return m
}

// warmRequests is how many answers warm a server up before it is
// measured, and warmMax how long that may take at most. A fixed number of
// requests, not a time: PostGraphile runs on Node's JIT, which compiles
// its hot paths only after enough calls (on the shared machine its CPU
// per request fell threefold over its first 3,000 answers); a warm-up
// measured in time would measure it colder the slower the machine.
func warmRequests() (n int, most time.Duration) {
	if os.Getenv("CI") != "" {
		return 1000, 10 * time.Second
	}
	return 3000, 30 * time.Second
}

// warm sends t's requests with l's concurrency until warmRequests are
// answered or its time is up, unmeasured.
func warm(b *testing.B, t *target, l loadgen.Load) {
	b.Helper()
	n, most := warmRequests()
	t.presign(n)
	deadline := time.Now().Add(most)
	for done := 0; done < n && time.Now().Before(deadline); {
		res, err := loadgen.Run(context.Background(), loadgen.Load{Duration: 500 * time.Millisecond, Concurrency: l.Concurrency}, t.Target)
		if err != nil {
			b.Fatal(err)
		}
		if res.Failures > 0 {
			b.Fatalf("warm-up: %d requests failed; the first: %v", res.Failures, res.FirstErr)
		}
		done += res.Requests
	}
}

// env is the running benchmark setup: one database, the core served
// directly (`fraise serve`, plain HTTP), the whole stack (`fraise dev`:
// Envoy, extauthz, the rate limiter and a core behind them, on mTLS) and
// PostGraphile.
type env struct {
	coreURL string
	signer  *assertion.Signer
	// ingressURL is Envoy's listener; ingress a client of it with the
	// end user's certificate, carrying jwt.
	ingressURL string
	ingress    *http.Client
	jwt        string
	// devCoreURL is the core behind Envoy, reached directly; devCore a
	// client of it with the gateway's certificate, as Envoy connects.
	devCoreURL string
	devCore    *http.Client
	pgURL      string
	nodePID    int
	corePID    int
	devPID     int // `fraise dev`: the core behind Envoy, extauthz, the rate limiter
	envoyPID   int
	redisPID   int // the rate limiter's
	db         string
	authorID   string
	direct     *http.Client
}

// assertionFor signs an identity assertion for one request, bound to b, as
// extauthz would: the core accepts each assertion once, so every request
// carries a fresh one.
func (e *env) assertionFor(b assertion.Binding) string {
	tok, err := e.signer.Sign(core.Principal{Subject: "bench", Tenant: tenant, Roles: []string{"admin"}}, assertiontest.RequestID(), b)
	if err != nil {
		panic(err)
	}
	return tok
}

// proc is a process a target's requests cost CPU in.
type proc struct {
	name string
	pid  int
}

// target is one operation on one server: what the load generator sends,
// the full check of one answer, the processes that serve it, and the
// identity assertions signed ahead for it (none for the ingress, where the
// client sends a JWT and extauthz signs them).
type target struct {
	loadgen.Target
	verify     func([]byte) error
	procs      []proc // the server first
	assertions *assertionPool
}

func (t *target) pids() []int {
	out := make([]int, len(t.procs))
	for i, p := range t.procs {
		out[i] = p.pid
	}
	return out
}

// presign signs the assertions of the target's next n requests.
func (t *target) presign(n int) {
	if t.assertions != nil {
		t.assertions.fill(n)
	}
}

// liveSigned is how many requests since the last presign went beyond it.
func (t *target) liveSigned() int64 {
	if t.assertions == nil {
		return 0
	}
	return t.assertions.live.Load()
}

// assertionPool holds identity assertions signed before a run for the
// requests sent to a server directly (the core, PostGraphile). The core
// accepts each assertion once, so every request carries a fresh one, as
// extauthz signs one per request in the real stack; signing it (an
// Ed25519 signature) while the load runs would take CPU from the server
// measured on this shared machine, and time from its side of a latency
// comparison, where the ingress's requests carry a JWT minted once.
// Requests beyond those signed ahead are signed as they go and counted in
// live.
type assertionPool struct {
	sign func() string
	// body and signFor, when set, give every request a body of its own (a
	// mutation that must not repeat itself, such as a create whose title
	// is unique): fill makes the bodies and signs each ahead, and takeBody
	// hands out the pairs.
	body    func() []byte
	signFor func(body []byte) string
	bodies  [][]byte
	toks    []string
	next    atomic.Int64
	live    atomic.Int64
}

// fill replaces the pool's assertions with n fresh ones, signed on every
// core. They expire a minute after (assertion.DefaultTTL): fill just
// before the run that spends them.
func (p *assertionPool) fill(n int) {
	p.toks = make([]string, n)
	if p.body != nil {
		p.bodies = make([][]byte, n)
		for i := range p.bodies {
			p.bodies[i] = p.body()
		}
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if p.body != nil {
					p.toks[i] = p.signFor(p.bodies[i])
				} else {
					p.toks[i] = p.sign()
				}
			}
		})
	}
	wg.Wait()
	p.next.Store(0)
	p.live.Store(0)
}

// take returns an assertion no request has carried.
func (p *assertionPool) take() string {
	if i := p.next.Add(1) - 1; i < int64(len(p.toks)) {
		tok := p.toks[i]
		p.toks[i] = "" // spent: let it go
		return tok
	}
	p.live.Add(1)
	return p.sign()
}

// takeBody returns a body no request has carried and its assertion, for a
// pool with bodies of their own.
func (p *assertionPool) takeBody() ([]byte, string) {
	if i := p.next.Add(1) - 1; i < int64(len(p.toks)) {
		b, tok := p.bodies[i], p.toks[i]
		p.bodies[i], p.toks[i] = nil, ""
		return b, tok
	}
	p.live.Add(1)
	b := p.body()
	return b, p.signFor(b)
}

// target returns op on server: "core" (`fraise serve`, plain HTTP, with an
// identity assertion), "core-mtls" (the core behind Envoy, reached
// directly over mTLS with the gateway's certificate, with an identity
// assertion), "ingress" (Envoy, extauthz, the rate limiter, then that
// core, with a JWT) or "postgraphile" (plain HTTP, with an identity
// assertion it verifies as the core does).
func (e *env) target(tb testing.TB, op, server string) *target {
	tb.Helper()
	var query string
	var vars map[string]any
	var verify func([]byte) error
	input := map[string]any{"authorId": e.authorID, "title": "Benchmarked", "body": "A post the benchmark wrote.", "status": "draft"}
	switch {
	case op == "read" && server == "postgraphile":
		query, vars, verify = postgraphileRead, map[string]any{"status": "published"}, verifyRead("allPosts", "userByAuthorId")
	case op == "read":
		query, vars, verify = fraiseRead, map[string]any{"status": "published"}, verifyRead("posts", "author")
	case server == "postgraphile":
		query, vars, verify = postgraphileCreate, map[string]any{"input": map[string]any{"post": input}}, verifyCreate("userByAuthorId")
	default:
		query, vars, verify = fraiseCreate, map[string]any{"input": input}, verifyCreate("author")
	}
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		tb.Fatal(err)
	}
	binding := assertiontest.GraphQL(http.MethodPost, "/graphql", body)
	t := &target{verify: verify, assertions: &assertionPool{sign: func() string { return e.assertionFor(binding) }}}
	client, url := e.direct, e.coreURL
	t.procs = []proc{{"fraise", e.corePID}}
	switch server {
	case "core":
	case "core-mtls":
		client, url = e.devCore, e.devCoreURL
		t.procs = []proc{{"fraise", e.devPID}}
	case "ingress":
		client, url = e.ingress, e.ingressURL
		t.procs = []proc{{"fraise", e.devPID}, {"envoy", e.envoyPID}, {"redis", e.redisPID}}
		t.assertions = nil
	case "postgraphile":
		url = e.pgURL // verifies the same assertion (postgraphile/server.cjs)
		t.procs = []proc{{"node", e.nodePID}}
	default:
		tb.Fatalf("no server %q", server)
	}
	header := func(h http.Header) { h.Set("Authorization", "Bearer "+e.jwt) }
	if t.assertions != nil {
		header = func(h http.Header) { h.Set(assertion.Header, t.assertions.take()) }
	}
	t.Target = loadgen.Target{
		Client: client,
		NewRequest: func() (*http.Request, error) {
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			header(req.Header)
			return req, nil
		},
		Check: func(_ int, b []byte) error {
			if bytes.Contains(b, []byte(`"errors"`)) || !bytes.HasPrefix(b, []byte(`{"data"`)) {
				return fmt.Errorf("errors in the answer: %.300s", b)
			}
			return nil
		},
	}
	return t
}

type gqlAnswer struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []json.RawMessage          `json:"errors"`
}

func decode(b []byte, root string, v any) error {
	var a gqlAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if len(a.Errors) > 0 {
		return fmt.Errorf("errors: %s", a.Errors[0])
	}
	raw, ok := a.Data[root]
	if !ok {
		return fmt.Errorf("no data.%s", root)
	}
	return json.Unmarshal(raw, v)
}

type post struct {
	ID          string            `json:"id"`
	Title       string            `json:"title"`
	Status      string            `json:"status"`
	PublishedAt string            `json:"publishedAt"`
	Author      map[string]string `json:"author"`
	Author2     map[string]string `json:"userByAuthorId"`
}

func (p post) author() map[string]string {
	if p.Author != nil {
		return p.Author
	}
	return p.Author2
}

// verifyRead checks the read's answer: 50 published posts, newest first,
// each with its author.
func verifyRead(root, authorKey string) func([]byte) error {
	return func(b []byte) error {
		var posts []post
		if root == "allPosts" {
			var conn struct {
				Nodes []post `json:"nodes"`
			}
			if err := decode(b, root, &conn); err != nil {
				return err
			}
			posts = conn.Nodes
		} else if err := decode(b, root, &posts); err != nil {
			return err
		}
		if len(posts) != 50 {
			return fmt.Errorf("got %d posts, want 50", len(posts))
		}
		var last time.Time
		for i, p := range posts {
			at, err := time.Parse(time.RFC3339, p.PublishedAt)
			if err != nil {
				return fmt.Errorf("post %d: publishedAt %q: %w", i, p.PublishedAt, err)
			}
			if p.Status != "published" || p.author()["name"] == "" || p.ID == "" {
				return fmt.Errorf("post %d: got %+v, want a published post with its %s", i, p, authorKey)
			}
			if i > 0 && at.After(last) {
				return fmt.Errorf("post %d: published %s after the one before (%s), want newest first", i, at, last)
			}
			last = at
		}
		return nil
	}
}

// verifyCreate checks the mutation's answer: the new post, with its author.
func verifyCreate(authorKey string) func([]byte) error {
	return func(b []byte) error {
		var out struct {
			Succeeded *bool `json:"succeeded"`
			Post      *post `json:"post"`
		}
		if err := decode(b, "createPost", &out); err != nil {
			return err
		}
		if out.Succeeded != nil && !*out.Succeeded {
			return errors.New("createPost did not succeed")
		}
		if out.Post == nil || out.Post.ID == "" || out.Post.Title != "Benchmarked" || out.Post.author()["name"] == "" {
			return fmt.Errorf("got %+v, want the new post with its %s", out.Post, authorKey)
		}
		return nil
	}
}

func mustRun(tb testing.TB, args ...string) string {
	tb.Helper()
	var out, errb bytes.Buffer
	dev := func(k string) string { return map[string]string{"FRAISE_PROFILE": "dev"}[k] }
	if err := cli.Run(context.Background(), args, dev, &out, &errb); err != nil {
		tb.Fatalf("fraise %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func mustEnv(tb testing.TB) *env {
	tb.Helper()
	harness.SkipShort(tb)
	pg, db := harness.NewDatabase(tb)
	rd := harness.StartRedis(tb)
	dir := tb.TempDir()
	mustRun(tb, "certs", "--dir", dir)
	certs := devcerts.FilesIn(filepath.Join(dir, "certs"))
	keys := filepath.Join(dir, "keys")
	sdlPath := filepath.Join(dir, "schema.graphql")
	if err := os.WriteFile(sdlPath, []byte(schemaSDL), 0o600); err != nil {
		tb.Fatal(err)
	}
	const maxConns = 20
	base := fmt.Sprintf(`
[log]
level = "error"
%s[database]
url = %q
admin_url = %q
max_conns = %d
[redis]
addr = %q
[authz]
grpc_addr = "127.0.0.1:0"
admin_addr = ""
assertion_key = %q
[[authz.issuers]]
issuer = %q
audiences = [%q]
jwks_file = %q
algorithms = ["ES256"]
[ratelimit]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
debug_addr = "127.0.0.1:0"
[ratelimit.tiers.default]
tenant = { requests = 1000000000, unit = "second" }
[gateway]
listen_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
authz_timeout = "2s"
`, stack.TLSTOML(certs), pg.URL("fraise_app", db), pg.AdminURL(db), maxConns, rd.Addr,
		"file://"+filepath.Join(keys, "assertion.key"),
		config.DevIssuer, config.DevAudience, filepath.Join(keys, "dev-issuer.jwks"))
	coreSection := func(addr string, tlsOn bool) string {
		return fmt.Sprintf("[server]\nhttp_addr = %q\nadmin_addr = \"\"\ntls = %t\nschema = %q\nassertion_keys = [%q]\nflight_addr = \"127.0.0.1:0\"\n",
			addr, tlsOn, sdlPath, "file://"+filepath.Join(keys, "assertion.pub"))
	}
	directAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	directCfg := mustWrite(tb, filepath.Join(dir, "direct.toml"), base+coreSection(directAddr, false))
	devCfg := mustWrite(tb, filepath.Join(dir, "dev.toml"), base+coreSection("127.0.0.1:0", true))

	mustRun(tb, "migrate", "--config", directCfg)
	authorID := mustSchema(tb, pg.AdminURL(db))

	e := &env{coreURL: "http://" + directAddr + "/graphql", authorID: authorID, db: db, redisPID: rd.Pid()}
	e.signer = mustSigner(tb, keys)
	// One lean client per route (loadgen.LeanTransport), so the load
	// generator's own CPU per request is small and the same on every side.
	e.direct = loadgen.NewLeanClient(clientConns)

	// The servers run as processes of their own, as in production, so the
	// CPU each spends is its own and not the load generator's.
	bin := mustBinary(tb, dir)
	e.corePID = startFraise(tb, bin, "serve", "--config", directCfg)
	mustListen(tb, directAddr)

	ready := filepath.Join(dir, "ready.json")
	e.devPID = startFraise(tb, bin, "dev", "--config", devCfg, "--ready-file", ready, "--dir", dir, "--quiet")
	var addrs struct {
		Gateway  string `json:"gateway"`
		CoreHTTP string `json:"core_http"`
		EnvoyPid int    `json:"envoy_pid"`
	}
	if !await.WithinEvery(60*time.Second, 50*time.Millisecond, func() bool {
		b, err := os.ReadFile(ready)
		return err == nil && json.Unmarshal(b, &addrs) == nil
	}) {
		tb.Fatal("fraise dev not ready after 60s")
	}
	if addrs.EnvoyPid <= 0 || addrs.CoreHTTP == "" {
		tb.Fatalf("fraise dev's ready file names no Envoy pid or core address: %+v", addrs)
	}
	// Envoy is a process of its own, supervised by fraise dev: its CPU is
	// counted beside fraise dev's.
	e.envoyPID = addrs.EnvoyPid
	e.ingressURL = "https://" + addrs.Gateway + "/graphql"
	e.devCoreURL = "https://" + addrs.CoreHTTP + "/graphql"
	e.jwt = strings.TrimSpace(mustRun(tb, "token", "--dir", dir, "--tenant", tenant, "--subject", "bench", "--roles", "admin"))
	// The end user's certificate opens Envoy; the gateway's, which Envoy
	// presents upstream, opens the core.
	e.ingress = mustTLSClient(tb, certs.CACert, certs.ClientCert, certs.ClientKey)
	e.devCore = mustTLSClient(tb, certs.CACert, certs.GatewayCert, certs.GatewayKey)

	addr, pid := startPostGraphile(tb, pg.URL("fraise_app", db), maxConns, filepath.Join(keys, "assertion.pub"))
	e.pgURL, e.nodePID = "http://"+addr+"/graphql", pid
	// Every server must pay for verifying who asks: PostGraphile refuses
	// a request without the assertion, as the core does.
	for _, s := range []struct {
		name, url string
		client    *http.Client
	}{
		{"PostGraphile", e.pgURL, e.direct},
		{"the core", e.coreURL, e.direct},
		{"the core behind Envoy", e.devCoreURL, e.devCore},
	} {
		resp, err := s.client.Post(s.url, "application/json", strings.NewReader(`{"query":"{ __typename }"}`))
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			tb.Fatalf("%s answered %d without an identity assertion, want 401", s.name, resp.StatusCode)
		}
	}
	return e
}

// clientConns bounds each client's connections: the closed loop's workers
// and the open loop's requests in flight.
const clientConns = 64

// mustTLSClient returns a lean https client that trusts the CA in caFile
// and presents the certificate in certFile.
func mustTLSClient(tb testing.TB, caFile, certFile, keyFile string) *http.Client {
	tb.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		tb.Fatalf("no certificate in %s", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &loadgen.LeanTransport{MaxConns: clientConns, TLS: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
	}}}
}

func mustWrite(tb testing.TB, path, content string) string {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// mustSchema creates the benchmark's tables, views and function, grants the
// application role what both servers need, seeds the data and returns an
// author of the benchmark's tenant.
func mustSchema(tb testing.TB, adminURL string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(context.Background())
	grants := `
GRANT USAGE ON SCHEMA blog TO fraise_app;
GRANT SELECT, INSERT, UPDATE ON blog.users, blog.posts, public.tv_post TO fraise_app;
GRANT EXECUTE ON FUNCTION public.fn_create_post(jsonb) TO fraise_app;`
	for _, s := range []string{schemaSQL, grants, seedSQL} {
		if _, err := conn.Exec(ctx, s); err != nil {
			tb.Fatalf("bench schema: %v", err)
		}
	}
	var id string
	if err := conn.QueryRow(ctx, "SELECT id::text FROM blog.users WHERE tenant_id = $1 ORDER BY name LIMIT 1", tenant).Scan(&id); err != nil {
		tb.Fatal(err)
	}
	return id
}

// mustBinary builds the fraise binary into dir (from the build cache the
// test binary's own build filled).
func mustBinary(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "fraise")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/fraise-dev/fraise/cmd/fraise").CombinedOutput()
	if err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startFraise runs the fraise binary with args until the benchmark ends and
// returns its pid.
func startFraise(tb testing.TB, bin string, args ...string) int {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	// Only the configuration file configures it: no FRAISE_* override
	// from the environment the benchmark happens to run in.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRAISE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The benchmarks' configurations lean on the development defaults.
	cmd.Env = append(cmd.Env, "FRAISE_PROFILE=dev")
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("fraise %s: %v", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("fraise %s exited with %v\n%s", args[0], err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			tb.Errorf("fraise %s did not stop within 30s of SIGINT", args[0])
		}
	})
	return cmd.Process.Pid
}

// syncBuffer is a bytes.Buffer a child process's output can be copied into
// while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustListen(tb testing.TB, addr string) {
	tb.Helper()
	if !await.WithinEvery(30*time.Second, 50*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		tb.Fatalf("nothing listening on %s after 30s", addr)
	}
}

// startPostGraphile installs PostGraphile from the committed lock file when
// needed, starts it on the database and returns its address and pid.
// env adds settings (PG_SCHEMA, TENANT_SETTING: see server.cjs).
func startPostGraphile(tb testing.TB, dbURL string, poolMax int, assertionPub string, env ...string) (string, int) {
	tb.Helper()
	mustNodeModules(tb, "postgraphile")
	cmd := exec.Command("node", "server.cjs")
	cmd.Dir = "postgraphile"
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+dbURL, fmt.Sprintf("POOL_MAX=%d", poolMax), "ASSERTION_PUB="+assertionPub), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("node server.cjs: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		select {
		case <-done:
			// It ended before the benchmark did: say why, for the
			// requests it refused.
			tb.Errorf("PostGraphile exited during the benchmark:\n%s", stderr.String())
			return
		default:
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				lines <- addr
			}
		}
		close(lines)
	}()
	select {
	case addr, ok := <-lines:
		if !ok {
			tb.Fatalf("PostGraphile exited before listening:\n%s", stderr.String())
		}
		return addr, cmd.Process.Pid
	case <-time.After(60 * time.Second):
		tb.Fatalf("PostGraphile not listening after 60s:\n%s", stderr.String())
	}
	return "", 0
}

// mustNodeModules runs npm ci in dir when node_modules is missing or older
// than the lock file, so a fresh clone works.
func mustNodeModules(tb testing.TB, dir string) {
	tb.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s is not on PATH: the comparison with PostGraphile needs Node.js and npm (make deps installs them)", bin)
		}
	}
	if err := npmCI(dir); err != nil {
		tb.Fatal(err)
	}
}

// npmCI runs npm ci in dir when node_modules is missing or older than the
// lock file.
func npmCI(dir string) error {
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && !st.ModTime().Before(lock.ModTime()) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return nil
}

// mustSigner signs assertions with the extauthz key `fraise certs` wrote
// under keys, as extauthz does for every request it allows.
func mustSigner(tb testing.TB, keys string) *assertion.Signer {
	tb.Helper()
	pem, err := os.ReadFile(filepath.Join(keys, "assertion.key"))
	if err != nil {
		tb.Fatal(err)
	}
	key, err := assertion.ParsePrivateKeyPEM(pem)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := assertion.NewSigner(key, assertion.KeyID(key.Public().(ed25519.PublicKey)), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
