package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// observedTOML has the observers deliver to private addresses (the test's
// webhook is on loopback) and ask the rate limiter before each action.
const observedTOML = `
[observers]
enabled = true
allow_private_targets = true
rate_limits = true
`

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// TestOneTraceFromMutationToWebhook (issue 16, Done 1) sends one GraphQL
// mutation through Envoy whose insert fires an observer webhook, and
// finds, in an OTLP receiver, one trace holding the spans of every hop:
// Envoy, extauthz's Check, the rate limiter, the core's request, its
// PostgreSQL statements, the job's send into Redis, the observer worker's
// run and its Redis acknowledgement, and the webhook request, whose
// traceparent the target received; every span's parent is in the trace,
// with Envoy's server span the one root.
func TestOneTraceFromMutationToWebhook(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	// The target: what it records of each delivery is its traceparent.
	hooks := make(chan string, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hooks <- r.Header.Get("Traceparent"):
		default:
		}
	}))
	t.Cleanup(hook.Close)

	// The rule is in place before the stack starts, so the dispatcher has
	// it from its first load whenever the mutation's event reaches it.
	rule, err := json.Marshal(map[string]any{
		"name": "traced-posts", "table": "public.posts", "operations": []any{"INSERT"}, "columns": []any{"id", "title"},
		"actions": []any{map[string]any{"kind": "webhook", "url": hook.URL + "/posts"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rcv := mustTraceReceiver(t)
	logs := newLogLines()
	s := stack.StartWith(t, stack.Options{
		TOML: fmt.Sprintf(telemetryTOML, rcv.addr) + observedTOML,
		SetupSQL: fmt.Sprintf(`SELECT fraise.observe_table('public.posts');
			SELECT set_config('fraise.tenant', '%s', false);
			SELECT fraise.graphql_create_observer_rule('%s'::jsonb);`, demo.TenantAcme, rule),
		Log: logs,
		// Decisions are logged at info.
		Env: map[string]string{"FRAISE_LOG_LEVEL": "info"},
	})
	admin := s.Token(t, demo.TenantAcme, "alice", "admin")
	s.MustServe(t, admin)

	// An author, in a request of its own.
	status, g := s.GraphQL(t, admin, map[string]any{"query": `{ users { id } }`})
	var users struct{ Users []struct{ ID string } }
	if err := json.Unmarshal(g.Data, &users); status != http.StatusOK || err != nil || len(users.Users) == 0 {
		t.Fatalf("users: got status %d data %s, want users", status, g.Data)
	}

	// The one request.
	status, hdr, g := stack.Post(t, s.Client, s.Addrs.Gateway,
		fmt.Sprintf(`mutation { createPost(input: {title: "Traced", body: "b", authorId: %q}) { __typename } }`, users.Users[0].ID),
		map[string]string{"Authorization": "Bearer " + admin})
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("createPost: got status %d errors %+v, want 200", status, g.Errors)
	}
	line := logs.accessLog(t, hdr.Get("X-Request-Id"))
	traceID, _ := line["trace_id"].(string)
	if len(traceID) != 32 {
		t.Fatalf("got trace_id %q in the access log, want 32 hex digits:\n%v", traceID, line)
	}

	var got string
	select {
	case got = <-hooks:
	case <-time.After(30 * time.Second):
		logs.mu.Lock()
		defer logs.mu.Unlock()
		t.Fatalf("the webhook received nothing within 30s; the stack's log:\n%s", logs.buf.String())
	}
	m := traceparentRE.FindStringSubmatch(got)
	if m == nil || m[1] != traceID {
		t.Fatalf("got traceparent %q at the webhook, want one of trace %s (the mutation's)", got, traceID)
	}
	webhookParent := m[2]

	// The hops, each a span of the component that made it; attr (when
	// set) is an attribute=value the span must have.
	type hop struct {
		name, service string
		kind          tracepb.Span_SpanKind
		span          string // "": any name
		attr          string
	}
	hops := []hop{
		{"Envoy's server span", serviceIngress, tracepb.Span_SPAN_KIND_SERVER, "", ""},
		{"extauthz's Check", serviceAuthz, tracepb.Span_SPAN_KIND_SERVER, checkSpanName, ""},
		{"the rate limiter's decision", serviceRateLimit, tracepb.Span_SPAN_KIND_SERVER, "", ""},
		{"the core's request", serviceCore, tracepb.Span_SPAN_KIND_SERVER, "", ""},
		{"a PostgreSQL statement", serviceCore, tracepb.Span_SPAN_KIND_CLIENT, "", "db.system=postgresql"},
		{"the job's send into its Redis stream", serviceCore, tracepb.Span_SPAN_KIND_PRODUCER, "send observer.jobs", "db.system=redis"},
		{"the observer worker's run", serviceCore, tracepb.Span_SPAN_KIND_CONSUMER, "process observer.jobs", "fraise.action.kind=webhook"},
		{"the worker's Redis acknowledgement", serviceCore, tracepb.Span_SPAN_KIND_CLIENT, "XACK", "db.system=redis"},
		{"the webhook request", serviceCore, tracepb.Span_SPAN_KIND_CLIENT, "POST", "fraise.action.kind=webhook"},
	}
	has := func(sp span, h hop) bool {
		if sp.service != h.service || sp.kind != h.kind || (h.span != "" && sp.name != h.span) {
			return false
		}
		k, v, _ := strings.Cut(h.attr, "=")
		return h.attr == "" || sp.attrs[k] == v
	}
	// complete: every hop is there and every parent named is in the trace.
	complete := func(spans []span) bool {
		ids := map[string]bool{}
		for _, sp := range spans {
			ids[sp.spanID] = true
		}
		for _, sp := range spans {
			if sp.parentID != "" && !ids[sp.parentID] {
				return false
			}
		}
		for _, h := range hops {
			found := false
			for _, sp := range spans {
				found = found || has(sp, h)
			}
			if !found {
				return false
			}
		}
		// A call's server span is exported by the process it reached, on
		// its own schedule: the worker's call to the rate limiter is there
		// only once the limiter's span under it is.
		served := map[string]bool{}
		for _, sp := range spans {
			if sp.service == serviceRateLimit && sp.kind == tracepb.Span_SPAN_KIND_SERVER {
				served[sp.parentID] = true
			}
		}
		for _, sp := range spans {
			if sp.service == serviceCore && sp.kind == tracepb.Span_SPAN_KIND_CLIENT && strings.HasSuffix(sp.name, "RateLimitService/ShouldRateLimit") && !served[sp.spanID] {
				return false
			}
		}
		return true
	}
	spans := rcv.waitTrace(t, traceID, complete)
	t.Logf("trace %s:\n%s", traceID, spanList(spans))

	byID := map[string]span{}
	var roots []span
	for _, sp := range spans {
		byID[sp.spanID] = sp
		if sp.parentID == "" {
			roots = append(roots, sp)
		}
	}
	if len(roots) != 1 || roots[0].service != serviceIngress || roots[0].kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("got roots %v, want one, Envoy's server span:\n%s", roots, spanList(spans))
	}
	// Each hop descends from the one before it where it is caused by it.
	find := func(h hop) span {
		for _, sp := range spans {
			if has(sp, h) {
				return sp
			}
		}
		return span{}
	}
	descends := func(child, ancestor span) bool {
		for p := child; p.parentID != ""; p = byID[p.parentID] {
			if p.parentID == ancestor.spanID {
				return true
			}
		}
		return false
	}
	envoy, core := find(hops[0]), find(hops[3])
	send, run, post := find(hops[5]), find(hops[6]), find(hops[8])
	for _, c := range []struct {
		name              string
		child, ancestor   span
		childN, ancestorN string
	}{
		{"Check under Envoy", find(hops[1]), envoy, hops[1].name, hops[0].name},
		{"the core under Envoy", core, envoy, hops[3].name, hops[0].name},
		{"the send under the core's request", send, core, hops[5].name, hops[3].name},
		{"the worker's run under the send", run, send, hops[6].name, hops[5].name},
		{"the webhook request under the worker's run", post, run, hops[8].name, hops[6].name},
		{"the acknowledgement under the worker's run", find(hops[7]), run, hops[7].name, hops[6].name},
	} {
		if !descends(c.child, c.ancestor) {
			t.Errorf("%s: got %s (%s) not under %s (%s):\n%s", c.name, c.childN, c.child, c.ancestorN, c.ancestor, spanList(spans))
		}
	}
	// extauthz's decision log line names the trace and its Check span.
	check := find(hops[1])
	logs.mu.Lock()
	text := logs.buf.String()
	logs.mu.Unlock()
	var decision string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, `msg="authz decision"`) && strings.Contains(l, " request_id="+hdr.Get("X-Request-Id")+" ") {
			decision = l
		}
	}
	if !strings.Contains(decision, " trace_id="+traceID) || !strings.Contains(decision, " span_id="+check.spanID) {
		t.Errorf("got decision log line %q, want trace_id=%s span_id=%s (the Check's span)", decision, traceID, check.spanID)
	}
	if webhookParent != post.spanID {
		t.Errorf("got parent %s in the webhook's traceparent, want the webhook request's span %s", webhookParent, post.spanID)
	}
	var rateLimited bool
	for _, sp := range spans {
		if sp.service == serviceRateLimit && sp.kind == tracepb.Span_SPAN_KIND_SERVER && descends(sp, run) {
			rateLimited = true
		}
	}
	if !rateLimited {
		t.Errorf("got no rate limiter server span under the worker's run, want its decision on the webhook:\n%s", spanList(spans))
	}
}

// TestCallersTraceIsContinued: a request that arrives with a W3C
// traceparent is traced in that trace, Envoy's server span the caller's
// span's child: what `fraise dev`'s sample request relies on to print the
// link to its trace before it is sent.
func TestCallersTraceIsContinued(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	rcv := mustTraceReceiver(t)
	logs := newLogLines()
	s := stack.StartWith(t, stack.Options{TOML: fmt.Sprintf(telemetryTOML, rcv.addr), Log: logs})
	tok := s.Token(t, demo.TenantAcme, "alice", "viewer")
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	status, hdr, g := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", map[string]string{
		"Authorization": "Bearer " + tok, "traceparent": "00-" + traceID + "-" + parent + "-01",
	})
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("got status %d errors %+v, want 200", status, g.Errors)
	}
	if got := logs.accessLog(t, hdr.Get("X-Request-Id"))["trace_id"]; got != traceID {
		t.Errorf("got trace_id %v in the access log, want the caller's %s", got, traceID)
	}
	// The response names its trace, for the console's explorer to link.
	if got := hdr.Get("X-Fraise-Trace-Id"); got != traceID {
		t.Errorf("got x-fraise-trace-id %q, want the caller's %s", got, traceID)
	}
	spans := rcv.waitTrace(t, traceID, func(spans []span) bool {
		_, ok1 := findSpan(spans, serviceIngress, tracepb.Span_SPAN_KIND_SERVER, "")
		_, ok2 := findSpan(spans, serviceCore, tracepb.Span_SPAN_KIND_SERVER, "")
		return ok1 && ok2
	})
	if srv, _ := findSpan(spans, serviceIngress, tracepb.Span_SPAN_KIND_SERVER, ""); srv.parentID != parent {
		t.Errorf("got Envoy's server span's parent %q, want the caller's span %s", srv.parentID, parent)
	}
}
