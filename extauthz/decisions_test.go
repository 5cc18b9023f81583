package extauthz_test

import (
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/extauthz"
)

// TestDecisionCache reuses a decision only for an identical request under
// the same policy revision, and never for a policy that reads more than
// the cache key holds.
func TestDecisionCache(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	viewer := "Bearer " + f.token(t, "viewer")
	operator := "Bearer " + f.token(t, "operator")
	cached := func() bool {
		t.Helper()
		lines := f.logs.lines(t)
		c, _ := lines[len(lines)-1]["cached"].(bool)
		return c
	}
	steps := []struct {
		name   string
		authz  string
		query  string
		allow  bool
		cached bool
	}{
		{name: "first query", authz: viewer, query: "{ users { id } }", allow: true},
		{name: "same query again", authz: viewer, query: "{ users { id } }", allow: true, cached: true},
		{name: "same root fields, other selection", authz: viewer, query: "{ users { id name } }", allow: true, cached: true},
		{name: "other root field", authz: viewer, query: "{ rules { id } }", allow: true},
		{name: "mutation, same credential", authz: viewer, query: "mutation { deleteRule(id: 1) { id } }"},
		{name: "denial again", authz: viewer, query: "mutation { deleteRule(id: 1) { id } }", cached: true},
		{name: "other credential, same mutation", authz: operator, query: "mutation { deleteRule(id: 1) { id } }"},
		{name: "operator may update", authz: operator, query: "mutation { updateRule(id: 1) { id } }", allow: true},
	}
	for _, s := range steps {
		resp := mustCheck(t, f.client, graphqlRequest(s.authz, s.query))
		if got := resp.GetOkResponse() != nil; got != s.allow {
			t.Fatalf("%s: got allow=%v, want %v", s.name, got, s.allow)
		}
		if got := cached(); got != s.cached {
			t.Fatalf("%s: got cached=%v, want %v", s.name, got, s.cached)
		}
	}

	// A reload starts a new cache.
	if err := f.srv.ReloadPolicy(t.Context(), rbacWith(t, map[string]string{"data/extra.json": `{"a": 1}`})); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, f.client, graphqlRequest(viewer, "{ users { id } }"))
	if cached() {
		t.Fatal("after a reload: got a cached decision, want a fresh evaluation")
	}

	// A policy that reads a header is never cached.
	headerPolicy := `package fraise.authz

default decision := {"allow": false, "status": 403, "reason": "no"}

decision := {"allow": true, "reason": "header"} if input.request.headers["x-allow"] == "yes"
`
	if err := f.srv.ReloadPolicy(t.Context(), rbacWith(t, map[string]string{"authz.rego": headerPolicy,
		"authz_test.rego": "package fraise.authz_test\n\nimport data.fraise.authz\n\ntest_header if authz.decision.allow with input as {\"request\": {\"headers\": {\"x-allow\": \"yes\"}}}\n"})); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		mustCheck(t, f.client, graphqlRequest(viewer, "{ users { id } }"))
		if cached() {
			t.Fatal("header-reading policy: got a cached decision, want none")
		}
	}
	if !strings.Contains(f.logs.String(), "not_cached_because") {
		t.Fatal("got no log of why decisions are not cached")
	}
}

// TestDecisionCacheOff evaluates every request when the cache is disabled.
func TestDecisionCacheOff(t *testing.T) {
	t.Parallel()
	f := mustFixture(t, func(o *extauthz.Options) { o.DecisionCacheTTL = -1 })
	tok := "Bearer " + f.token(t, "viewer")
	for range 3 {
		mustCheck(t, f.client, graphqlRequest(tok, "{ users { id } }"))
	}
	for _, l := range f.logs.lines(t) {
		if l["cached"] == true {
			t.Fatalf("got a cached decision %v, want none", l)
		}
	}
}
