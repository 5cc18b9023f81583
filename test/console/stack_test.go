package console_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
	"github.com/fraise-dev/fraise/test/stack"
)

// devUser is an entry of GET /console/api/dev/users.
type devUser struct {
	Subject string   `json:"subject"`
	Tenant  string   `json:"tenant"`
	Roles   []string `json:"roles"`
	Label   string   `json:"label"`
}

// viewerMutation is the request the live policy refuses: a viewer
// creating a post. The browser test opens its decision in the playground.
const viewerMutation = `mutation CreatePost($in: CreatePostInput!) { createPost(input: $in) { __typename } }`

// traceURL is the trace link template the stack is given, as Jaeger's.
const traceURL = "http://127.0.0.1:16686/trace/{trace_id}"

// collector is an OTLP/gRPC trace collector keeping the trace ids
// exported to it.
type collector struct {
	collectortracepb.UnimplementedTraceServiceServer
	addr string
	mu   sync.Mutex
	ids  map[string]bool
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: ln.Addr().String(), ids: map[string]bool{}}
	g := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(g, c)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return c
}

// Export implements collectortracepb.TraceServiceServer.
func (c *collector) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				c.ids[hex.EncodeToString(sp.TraceId)] = true
			}
		}
	}
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[id]
}

// usersQuery is the persisted operation the explorer loads and runs.
const usersQuery = "query Users { users { id } }"

// draftAllowingViewerMutations is what the browser appends to the draft
// authz.rego: viewers may run mutations. Typed into the editor, so no
// leading indentation (the editor indents).
const draftAllowingViewerMutations = "\n# Draft: viewers may run mutations.\npermits(role) if {\nrole == data.roles.viewer\ninput.graphql.operation == \"mutation\"\n}\n"

// TestConsole drives the console in Chromium through the real ingress
// (Envoy with mTLS, extauthz, the console component): each role's
// screens, a query in the explorer, a refused request made allowed in the
// playground's draft only, and a dead letter replayed and delivered.
func TestConsole(t *testing.T) {
	chromium := chromiumPath(t)
	nodeReady(t)

	// The webhook the dead letter is for: it refuses (410, a permanent
	// failure: dead-lettered at once) until the browser is about to replay.
	var accept atomic.Bool
	delivered := make(chan []byte, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !accept.Load() {
			http.Error(w, "gone", http.StatusGone)
			return
		}
		select {
		case delivered <- b:
		default:
		}
	}))
	t.Cleanup(hook.Close)

	// Tracing on, to a collector of the test's: the explorer links each
	// response to its trace, and the test checks that trace was exported.
	traces := startCollector(t)
	pg, db := harness.NewDatabase(t)
	s := stack.StartWith(t, stack.Options{
		Postgres: pg, Database: db,
		TOML:      "\n[observers]\nenabled = true\nallow_private_targets = true\n",
		SetupSQL:  "SELECT fraise.observe_table('public.posts')",
		PerTenant: 10000,
		// The demo (its rule, receiver and data) for screens with something
		// on them, and every decision stored (authz.audit), which the
		// decision log and the playground's replay read.
		Demo: true,
		Env: map[string]string{
			"FRAISE_AUTHZ_AUDIT": "true", "FRAISE_AUTHZ_DATABASE_URL": pg.URL("fraise_app", db),
			"FRAISE_TELEMETRY_OTLP_ENDPOINT": traces.addr, "FRAISE_TELEMETRY_SAMPLE_RATIO": "1",
			"FRAISE_TELEMETRY_TRACE_URL": traceURL,
		},
	})
	users := devUsers(t, s)
	byRole := map[string]devUser{}
	for _, u := range users {
		if len(u.Roles) == 1 && roleScreens[u.Roles[0]] != nil {
			if _, ok := byRole[u.Roles[0]]; !ok {
				byRole[u.Roles[0]] = u
			}
		}
	}
	cfgUsers := map[string]roleUser{}
	for role, screens := range roleScreens {
		u, ok := byRole[role]
		if !ok {
			t.Fatalf("no demo user with the single role %s in /console/api/dev/users: %+v", role, users)
		}
		cfgUsers[role] = roleUser{Subject: u.Subject, Screens: screens}
	}
	tenant := byRole["viewer"].Tenant
	admin := s.Token(t, tenant, byRole["admin"].Subject, "admin")
	operator := s.Token(t, tenant, byRole["operator"].Subject, "operator")
	viewer := s.Token(t, tenant, byRole["viewer"].Subject, "viewer")
	s.MustServe(t, admin)

	// The refused request, in the decision log before the browser looks.
	authorID := firstUserID(t, s, admin)
	refuse := func() int {
		status, _ := s.GraphQL(t, viewer, map[string]any{"query": viewerMutation, "operationName": "CreatePost",
			"variables": map[string]any{"in": map[string]any{"title": "from a viewer", "authorId": authorID}}})
		return status
	}
	if status := refuse(); status != http.StatusForbidden {
		t.Fatalf("the viewer's createPost: %d, want 403 from the live policy", status)
	}

	// A persisted operation for the explorer's list: the query it runs.
	if status, g := s.GraphQL(t, admin, map[string]any{"query": usersQuery, "extensions": map[string]any{
		"persistedQuery": map[string]any{"version": 1, "sha256Hash": core.DocumentHash(usersQuery)}}}); status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("registering the persisted query: %d %+v", status, g.Errors)
	}

	// A dead letter: a rule whose webhook refuses, and a post that fires it.
	status, g := s.GraphQL(t, operator, map[string]any{
		"query": `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded } }`,
		"variables": map[string]any{"in": map[string]any{
			"name": "console-dead-letter", "table": "public.posts", "operations": []any{"INSERT"}, "columns": []any{"id", "title"},
			"actions": []any{map[string]any{"kind": "webhook", "url": hook.URL + "/console"}},
		}},
	})
	var created struct{ CreateObserverRule struct{ Succeeded bool } }
	_ = json.Unmarshal(g.Data, &created)
	if status != http.StatusOK || len(g.Errors) > 0 || !created.CreateObserverRule.Succeeded {
		t.Fatalf("createObserverRule: %d %s %+v", status, g.Data, g.Errors)
	}
	status, g = s.GraphQL(t, admin, map[string]any{"query": viewerMutation,
		"variables": map[string]any{"in": map[string]any{"title": "dead letter", "authorId": authorID}}})
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("createPost as admin: %d %+v", status, g.Errors)
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: s.Redis.Addr})
	t.Cleanup(func() { rdb.Close() })
	await.Until(t, 30*time.Second, "a dead letter", func() bool {
		n, _ := rdb.XLen(context.Background(), "fraise:{"+tenant+"}:observer:dlq").Result()
		return n > 0
	})
	accept.Store(true)

	lines := runBrowser(t, browserConfig{
		Base:       "https://" + s.Addrs.Gateway + "/console/",
		ClientCert: &clientCert{CertPath: s.Certs.ClientCert, KeyPath: s.Certs.ClientKey},
		Chromium:   chromium, Shots: shotsDir(t, "console-screenshots"), Users: cfgUsers, TimeoutMs: 30000,
		Explorer: &explorerCase{Role: "viewer", Query: "query Users { users { id } }", Expect: authorID},
		Playground: &playgroundCase{Role: "security", Subject: byRole["viewer"].Subject, Operation: "createPost",
			File: "authz.rego", Append: draftAllowingViewerMutations},
		DLQ: &dlqCase{Role: "operator"},
	})

	// The trace the explorer linked is a trace the stack exported.
	var shown string
	for _, l := range lines {
		if _, id, ok := strings.Cut(l, "console: explorer: Trace: "); ok {
			shown = strings.TrimSpace(id)
		}
	}
	if shown == "" {
		t.Error("the explorer showed no trace id")
	} else if !await.Within(30*time.Second, func() bool { return traces.has(shown) }) {
		t.Errorf("the explorer linked trace %s, which the collector never received", shown)
	}

	// The draft changed nothing live: the same request is still refused.
	if status := refuse(); status != http.StatusForbidden {
		t.Errorf("after the playground, the viewer's createPost: %d, want 403 (the live policy unchanged)", status)
	}
	select {
	case b := <-delivered:
		if !strings.Contains(string(b), "dead letter") {
			t.Errorf("the replayed delivery carries %s, want the post titled \"dead letter\"", b)
		}
	case <-time.After(30 * time.Second):
		t.Error("the replayed dead letter never reached the webhook")
	}
	if t.Failed() {
		return
	}
	// The screenshots of a passing run are the ones docs/console.md shows:
	// CONSOLE_UPDATE_DOCS=1 copies them there.
	if os.Getenv("CONSOLE_UPDATE_DOCS") != "" {
		copyShots(t, "../../bin/console-screenshots", "../../docs/console")
	}
}

func devUsers(t *testing.T, s *stack.Stack) []devUser {
	t.Helper()
	resp, err := s.Client.Get("https://" + s.Addrs.Gateway + "/console/api/dev/users")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var users []devUser
	if err := json.NewDecoder(resp.Body).Decode(&users); resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET /console/api/dev/users: %d %v", resp.StatusCode, err)
	}
	return users
}

func firstUserID(t *testing.T, s *stack.Stack, token string) string {
	t.Helper()
	status, g := s.GraphQL(t, token, map[string]any{"query": `{ users { id } }`})
	var data struct{ Users []struct{ ID string } }
	if err := json.Unmarshal(g.Data, &data); status != http.StatusOK || err != nil || len(data.Users) == 0 {
		t.Fatalf("users: %d %s", status, g.Data)
	}
	return data.Users[0].ID
}

// copyShots copies from dir into docs the screenshots docs/console.md
// shows (the console/NAME.png it names).
func copyShots(t *testing.T, dir, docs string) {
	t.Helper()
	md, err := os.ReadFile(filepath.Join(docs, "..", "console.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`console/([a-z0-9-]+\.png)`).FindAllStringSubmatch(string(md), -1)
	copied := map[string]bool{}
	for _, m := range names {
		if copied[m[1]] {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, m[1]))
		if err != nil {
			t.Fatalf("docs/console.md shows %s, which the test did not take: %v", m[1], err)
		}
		if err := os.WriteFile(filepath.Join(docs, m[1]), b, 0o644); err != nil {
			t.Fatal(err)
		}
		copied[m[1]] = true
	}
	t.Logf("copied %d screenshots into %s", len(copied), docs)
}
