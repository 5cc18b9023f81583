package policy_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fraise-dev/fraise/extauthz/policy"
	"github.com/fraise-dev/fraise/policies"
)

func TestCacheable(t *testing.T) {
	t.Run("the RBAC policy", func(t *testing.T) {
		src, err := policy.Load(policies.FS)
		if err != nil {
			t.Fatal(err)
		}
		p := mustPrepareSource(t, src)
		if ok, why := p.Cacheable(); !ok {
			t.Fatalf("got not cacheable (%s), want cacheable", why)
		}
	})
	const head = "package fraise.authz\n\ndefault decision := {\"allow\": false}\n\n"
	for _, tt := range []struct {
		name, rule string
		ok         bool
		why        string
	}{
		{name: "principal, operation, method and path", ok: true,
			rule: `decision := {"allow": true} if { input.principal.roles[_] == "admin"; input.graphql.operation == "query"; input.request.method == "POST"; startswith(input.request.path, "/g"); some f in input.graphql.root_fields; f != "" }`},
		{name: "a header", why: "input.request[\"headers\"]",
			rule: `decision := {"allow": true} if input.request.headers["x-debug"] == "1"`},
		{name: "the whole request", why: "whole input.request",
			rule: `decision := {"allow": true} if count(input.request) > 0`},
		{name: "the whole input", why: "whole input",
			rule: `decision := {"allow": true} if object.get(input, ["principal", "tenant"], "") != ""`},
		{name: "an unknown member", why: "input.extra",
			rule: `decision := {"allow": true} if input.extra`},
		{name: "the clock", why: "time.now_ns",
			rule: `decision := {"allow": true} if time.now_ns() > 0`},
		{name: "a nested nondeterministic call", why: "rand.intn",
			rule: `decision := {"allow": x > 0} if x := 1 + rand.intn("a", 10)`},
		{name: "with", why: "with",
			rule: "decision := d if d := other with input.principal as {}\n\nother := {\"allow\": true}"},
		{name: "an index read from the input", why: "index",
			rule: `decision := {"allow": true} if input.principal.claims[input.principal.subject]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPrepare(t, fstest.MapFS{"authz.rego": {Data: []byte(head + tt.rule + "\n")}})
			ok, why := p.Cacheable()
			if ok != tt.ok || !strings.Contains(why, tt.why) {
				t.Fatalf("got %v (%q), want %v (%q)", ok, why, tt.ok, tt.why)
			}
		})
	}
}

func mustPrepareSource(tb testing.TB, src *policy.Source) *policy.Policy {
	tb.Helper()
	p, err := policy.Prepare(context.Background(), src)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
