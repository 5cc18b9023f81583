package policy_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fraise-dev/fraise/extauthz/policy"
	"github.com/fraise-dev/fraise/policies"
)

// minimal is a small valid policy folder: allow iff input.ok, with a test.
func minimal() fstest.MapFS {
	return fstest.MapFS{
		"authz.rego": {Data: []byte(`package fraise.authz

default decision := {"allow": false, "reason": "no", "status": 403}

decision := {"allow": true, "reason": "ok", "headers": {"x-policy": data.settings.label}} if input.ok
`)},
		"authz_test.rego": {Data: []byte(`package fraise.authz_test

import data.fraise.authz

test_allows_ok if authz.decision.allow with input as {"ok": true}

test_denies_otherwise if not authz.decision.allow
`)},
		"data/settings.json": {Data: []byte(`{"label": "minimal"}`)},
	}
}

func with(fsys fstest.MapFS, name, content string) fstest.MapFS {
	out := maps.Clone(fsys)
	if content == "" {
		delete(out, name)
	} else {
		out[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return out
}

func mustPrepare(tb testing.TB, fsys fstest.MapFS) *policy.Policy {
	tb.Helper()
	src, err := policy.Load(fsys)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := policy.Prepare(context.Background(), src)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string
	}{
		{name: "the embedded policy", fsys: nil},
		{name: "minimal", fsys: minimal()},
		{name: "syntax error", fsys: with(minimal(), "authz.rego", "package fraise.authz\n\ndecision := {"), wantErr: "rego_parse_error"},
		{name: "strict: unused variable", fsys: with(minimal(), "authz.rego", "package fraise.authz\n\ndecision := {\"allow\": false} if {\n\tx := 1\n}\n"), wantErr: "var x unused"},
		{name: "strict applies to tests too", fsys: with(minimal(), "authz_test.rego", "package fraise.authz_test\n\nimport data.fraise.authz\n\ntest_x if {\n\ttrue\n}\n"), wantErr: "import data.fraise.authz unused"},
		{name: "no decision rule", fsys: with(minimal(), "authz.rego", "package fraise.authz\n\nallow := true\n"), wantErr: "no rule defines data.fraise.authz.decision"},
		{name: "no modules", fsys: fstest.MapFS{"data/roles.json": {Data: []byte(`{}`)}}, wantErr: "no .rego modules"},
		{name: "bad data", fsys: with(minimal(), "data/roles.json", "{"), wantErr: "data/roles.json"},
		{name: "data defined twice", fsys: with(with(minimal(), "data/a.json", `{"b": 1}`), "data/a/b.json", `2`), wantErr: "data.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.fsys == nil {
				err = policy.Check(policies.FS)
			} else {
				err = policy.Check(tt.fsys)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestTest(t *testing.T) {
	ctx := context.Background()
	t.Run("passing tests", func(t *testing.T) {
		rep, err := policy.Test(ctx, minimal())
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		if rep.Passed != 2 || rep.Failed != 0 || len(rep.Results) != 2 {
			t.Fatalf("got %d passed, %d failed of %d, want 2, 0 of 2", rep.Passed, rep.Failed, len(rep.Results))
		}
		var buf bytes.Buffer
		if err := rep.Write(&buf, true); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"authz_test.rego:5: fraise.authz_test.test_allows_ok: PASS", "\npolicy: 2 passed, 0 failed\n"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("got report %q, want it to contain %q", buf.String(), want)
			}
		}
	})
	t.Run("a failing test fails the run", func(t *testing.T) {
		fsys := with(minimal(), "more_test.rego", "package fraise.more_test\n\nimport data.fraise.authz\n\ntest_wrong if authz.decision.allow with input as {\"ok\": false}\n")
		rep, err := policy.Test(ctx, fsys)
		if !errors.Is(err, policy.ErrTestsFailed) {
			t.Fatalf("got error %v, want ErrTestsFailed", err)
		}
		if rep.Failed != 1 || rep.Passed != 2 {
			t.Fatalf("got %d passed, %d failed, want 2, 1", rep.Passed, rep.Failed)
		}
		if !strings.Contains(err.Error(), "fraise.more_test.test_wrong") {
			t.Errorf("got error %q, want it to name the failing test", err)
		}
		var buf bytes.Buffer
		_ = rep.Write(&buf, false)
		if !strings.Contains(buf.String(), "test_wrong: FAIL") || strings.Contains(buf.String(), "PASS") {
			t.Errorf("got report %q, want only the failure and the totals", buf.String())
		}
	})
	t.Run("a builtin error fails the test", func(t *testing.T) {
		fsys := with(minimal(), "more_test.rego", "package fraise.more_test\n\ntest_error if {\n\tto_number(input.s) > 0 with input as {\"s\": \"not a number\"}\n}\n")
		rep, err := policy.Test(ctx, fsys)
		if !errors.Is(err, policy.ErrTestsFailed) || rep.Failed != 1 {
			t.Fatalf("got %d failed, error %v, want 1 and ErrTestsFailed", rep.Failed, err)
		}
	})
	t.Run("no tests", func(t *testing.T) {
		_, err := policy.Test(ctx, with(minimal(), "authz_test.rego", ""))
		if !errors.Is(err, policy.ErrNoTests) {
			t.Fatalf("got error %v, want ErrNoTests", err)
		}
	})
	t.Run("the embedded policy", func(t *testing.T) {
		rep, err := policy.Test(ctx, policies.FS)
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		if rep.Passed < 20 {
			t.Fatalf("got %d tests passed, want the embedded suite (at least 20)", rep.Passed)
		}
	})
}

func TestRevision(t *testing.T) {
	a, err := policy.Load(minimal())
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Load(with(minimal(), "data/settings.json", `{"label": "changed"}`))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := policy.Load(minimal())
	if a.Revision == b.Revision || a.Revision != again.Revision || len(a.Revision) != 12 {
		t.Fatalf("got revisions %q, %q, %q, want stable 12-digit revisions that change with data", a.Revision, b.Revision, again.Revision)
	}
}

func TestEval(t *testing.T) {
	ctx := context.Background()
	p := mustPrepare(t, minimal())
	d, err := p.Eval(ctx, map[string]any{"ok": true})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow || d.Reason != "ok" || d.Headers["x-policy"] != "minimal" || d.Status != 0 {
		t.Errorf("got %+v, want allow with reason ok and header x-policy: minimal", d)
	}
	d, err = p.Eval(ctx, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Allow || d.Status != 403 || d.Reason != "no" {
		t.Errorf("got %+v, want deny 403", d)
	}
}

func TestEvalRefusesMalformedDecisions(t *testing.T) {
	tests := []struct {
		name, rule string
	}{
		{name: "undefined", rule: `decision := {"allow": true} if input.never`},
		{name: "not an object", rule: `decision := true`},
		{name: "no allow", rule: `decision := {"reason": "x"}`},
		{name: "allow not a boolean", rule: `decision := {"allow": "yes"}`},
		{name: "unknown key", rule: `decision := {"allow": true, "allowed": true}`},
		{name: "status out of range", rule: `decision := {"allow": false, "status": 200}`},
		{name: "status not an integer", rule: `decision := {"allow": false, "status": 403.5}`},
		{name: "header not a string", rule: `decision := {"allow": true, "headers": {"x-a": 1}}`},
		{name: "conflict", rule: "decision := {\"allow\": true} if input.a\n\ndecision := {\"allow\": false} if input.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPrepare(t, with(minimal(), "authz.rego", "package fraise.authz\n\n"+tt.rule+"\n"))
			d, err := p.Eval(context.Background(), map[string]any{"a": true})
			if err == nil {
				t.Fatalf("got %+v, want an error", d)
			}
		})
	}
}

// BenchmarkEval measures one evaluation of the embedded RBAC policy's
// decision, the part of a Check that the policy's authors control.
func BenchmarkEval(b *testing.B) {
	src, err := policy.Load(policies.FS)
	if err != nil {
		b.Fatal(err)
	}
	p, err := policy.Prepare(context.Background(), src)
	if err != nil {
		b.Fatal(err)
	}
	input := map[string]any{
		"request":   map[string]any{"method": "POST", "path": "/graphql", "host": "fraise", "headers": map[string]string{"content-type": "application/json"}},
		"principal": map[string]any{"subject": "alice", "tenant": "t", "roles": []string{"viewer", "operator"}, "scopes": []string{}, "kind": "jwt", "claims": map[string]any{}},
		"graphql":   map[string]any{"operation": "mutation", "name": "M", "root_fields": []string{"updateRule", "createUser"}},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := p.Eval(ctx, input)
		if err != nil || !d.Allow {
			b.Fatalf("got %+v, %v, want allowed", d, err)
		}
	}
}
