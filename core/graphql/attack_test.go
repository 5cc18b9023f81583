package graphql_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// attackBound is how long a test lets the engine work on an attack
// document before it calls the engine stuck. It is no speed target (the
// benchmarks measure that): the fixed engine answers in milliseconds, the
// engine these tests guard against took minutes to days, and the bound only
// keeps such a failure from hanging the test run.
const attackBound = 10 * time.Second

// executeBounded runs req and returns its response, failing the test if
// the engine has not answered within attackBound. A stuck engine keeps its
// goroutine until the test binary exits; the test fails either way.
func executeBounded(tb testing.TB, e *graphql.Engine, ctx context.Context, req graphql.Request) *graphql.Response {
	tb.Helper()
	done := make(chan *graphql.Response, 1)
	go func() { done <- e.Execute(ctx, req) }()
	timer := time.NewTimer(attackBound)
	defer timer.Stop()
	select {
	case r := <-done:
		return r
	case <-timer.C:
		tb.Fatalf("got no answer within %s, want one at once", attackBound)
		return nil
	}
}

// fragmentBomb returns a document of levels fragments, each spreading the
// one before it twice, selected once: 2^levels copies of User { id name }
// written in about 40 bytes a level.
func fragmentBomb(levels int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{ users { ...F%d } }\nfragment F0 on User { id name }\n", levels)
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "fragment F%d on User { ...F%d ...F%d }\n", i, i-1, i-1)
	}
	return b.String()
}

// fragmentPerField returns a document spreading n fragments into one
// selection set, each selecting the same field.
func fragmentPerField(n int) string {
	var b strings.Builder
	b.WriteString(`{ user(id: "x") {`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, " ...F%d", i)
	}
	b.WriteString(" } }")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, " fragment F%d on User { id }", i)
	}
	return b.String()
}

// fragmentChain returns a document of n fragments, each spreading the one
// before it once: validation walks each with all those it reaches.
func fragmentChain(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{ user(id: "x") { ...F%d } } fragment F0 on User { id }`, n-1)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, " fragment F%d on User { ...F%d }", i, i-1)
	}
	return b.String()
}

// TestFragmentBomb shows that a fragment spread again and again is expanded
// once per selection set (security #13, defect 2), and that a bomb is
// refused for what it would expand to, in the time it takes to read it.
func TestFragmentBomb(t *testing.T) {
	tests := []struct {
		name  string
		query string
		code  string // "" for compiled
	}{
		{name: "30 levels, each spreading the previous twice", query: fragmentBomb(30), code: graphql.CodeSelectionLimit},
		{name: "spread twice under a merged field", query: `{ users { posts { ...P ...P } posts { ...P } } }
			fragment P on PostSummary { ...Q ...Q } fragment Q on PostSummary { id title }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := mustRecordingEngine(t, graphql.Options{})
			ctx, cancel := context.WithTimeout(as(demo.TenantAcme), attackBound)
			defer cancel()
			r := executeBounded(t, e, ctx, graphql.Request{Query: tt.query})
			if tt.code != "" {
				mustCode(t, r, tt.code)
				return
			}
			if len(r.Errors) > 0 {
				t.Fatalf("got %+v, want the fields compiled", *r.Errors[0])
			}
			if n := len(db.take()); n != 1 {
				t.Fatalf("got %d statements, want 1", n)
			}
		})
	}
}

// TestQuadraticDocuments shows that documents whose validation costs the
// square of their length are refused before validation (security #13,
// defect 8): by the alias limit, or by the selection limit, which counts
// repeated fields rather than merging them away. The engine used to spend
// seconds to minutes on each, and answered the repeated fields with 200.
func TestQuadraticDocuments(t *testing.T) {
	tests := []struct {
		name  string
		query string
		code  string
	}{
		{name: "20,000 copies of one alias", query: "{ users {" + strings.Repeat(" a:id", 20000) + " } }", code: graphql.CodeAliasLimit},
		{name: "20,000 copies of one field", query: "{ users {" + strings.Repeat(" id", 20000) + " } }", code: graphql.CodeSelectionLimit},
		{name: "20,000 copies of one root field", query: "{" + strings.Repeat(" __typename", 20000) + " }", code: graphql.CodeSelectionLimit},
		{name: "1,000 copies of one field, few selections but a million pairs", query: `{ user(id: "x") {` + strings.Repeat(" id", 1000) + " } }", code: graphql.CodeSelectionLimit},
		{name: "1,000 copies of one root field and its selection", query: "{" + strings.Repeat(` user(id: "x") { posts { id } }`, 1000) + " }", code: graphql.CodeSelectionLimit},
		{name: "1,000 fragments spread into one set", query: fragmentPerField(1000), code: graphql.CodeSelectionLimit},
		{name: "a chain of 1,000 fragments", query: fragmentChain(1000), code: graphql.CodeSelectionLimit},
		{name: "100 copies of a field in 500 nested inline fragments",
			query: `{ user(id: "x") {` + strings.Repeat(" ... on User {", 500) + strings.Repeat(" id", 100) + strings.Repeat(" }", 500) + " } }",
			code:  graphql.CodeSelectionLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := mustRecordingEngine(t, graphql.Options{})
			ctx, cancel := context.WithTimeout(as(demo.TenantAcme), attackBound)
			defer cancel()
			r := executeBounded(t, e, ctx, graphql.Request{Query: tt.query})
			mustCode(t, r, tt.code)
			if r.Data != nil || len(r.Errors) != 1 || r.Errors[0].Message == "" {
				t.Fatalf("got data %s and %d errors, want one request error with a message", r.Data, len(r.Errors))
			}
			if n := len(db.take()); n != 0 {
				t.Fatalf("got %d statements, want none", n)
			}
		})
	}
}

// TestLimitsBeforeValidation shows what the limits measure on the parsed
// document: fragments counted at every spread, repeated fields counted,
// variables and their defaults applied, and every operation and fragment
// definition counted towards the selections validation visits.
func TestLimitsBeforeValidation(t *testing.T) {
	tests := []struct {
		name  string
		o     graphql.Options
		query string
		vars  map[string]any
		op    string
		code  string // "" for compiled
	}{
		{name: "a fragment's aliases count at each spread", o: graphql.Options{MaxAliases: 2},
			query: `{ users { ...A } u2: users { ...A } } fragment A on User { n: name }`, code: graphql.CodeAliasLimit},
		{name: "a fragment's aliases within the limit", o: graphql.Options{MaxAliases: 2},
			query: `{ users { ...A } } fragment A on User { n: name }`},
		{name: "repeated fields cost each time", o: graphql.Options{MaxCost: 150},
			query: `{ users { id id } }`, code: graphql.CodeCostLimit},
		{name: "a field once within the cost", o: graphql.Options{MaxCost: 150}, query: `{ users { id } }`},
		{name: "a variable's default sizes a list", o: graphql.Options{MaxCost: 500},
			query: `query($n: Int = 1000) { users(limit: $n) { id } }`, code: graphql.CodeCostLimit},
		{name: "a variable's value sizes a list", o: graphql.Options{MaxCost: 500},
			query: `query($n: Int = 1000) { users(limit: $n) { id } }`, vars: map[string]any{"n": float64(3)}},
		{name: "skipped by a variable's default, no cost", o: graphql.Options{MaxCost: 150},
			query: `query($s: Boolean = true) { users { id posts @skip(if: $s) { id title } } }`},
		{name: "included by a variable, its cost", o: graphql.Options{MaxCost: 150},
			query: `query($s: Boolean = true) { users { id posts @skip(if: $s) { id title } } }`, vars: map[string]any{"s": false},
			code: graphql.CodeCostLimit},
		{name: "depth through a fragment and an inline fragment", o: graphql.Options{MaxDepth: 2},
			query: `{ posts { ...P } } fragment P on Post { ... on Post { author { name } } }`, code: graphql.CodeDepthLimit},
		{name: "selections within the limit", o: graphql.Options{MaxSelections: 3}, query: `{ users { id name } }`},
		{name: "a repeated field is a selection", o: graphql.Options{MaxSelections: 3}, query: `{ users { id name id } }`, code: graphql.CodeSelectionLimit},
		{name: "every operation's selections count", o: graphql.Options{MaxSelections: 3},
			query: `query A { users { id } } query B { users { name } }`, op: "A", code: graphql.CodeSelectionLimit},
		{name: "root fields counted merged", o: graphql.Options{MaxRootFields: 1}, query: `{ users { id } users { name } }`},
		{name: "limits before validation", o: graphql.Options{MaxAliases: 1},
			query: `{ a: users { nope } b: users { nope } }`, code: graphql.CodeAliasLimit},
		{name: "a fragment that spreads itself", query: `{ users { ...A } } fragment A on User { ...B } fragment B on User { ...A }`,
			code: graphql.CodeValidationFailed},
		{name: "an integer too large for the cost", query: `{ users(limit: 99999999999999999999999) { id } }`,
			code: graphql.CodeValidationFailed},
		{name: "a limit of the wrong type", query: `{ users(limit: "many") { id } }`, code: graphql.CodeValidationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := mustRecordingEngine(t, tt.o)
			r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: tt.query, Variables: tt.vars, OperationName: tt.op})
			stmts := db.take()
			if tt.code != "" {
				mustCode(t, r, tt.code)
				if len(stmts) != 0 {
					t.Fatalf("got %d statements, want none", len(stmts))
				}
				return
			}
			if len(r.Errors) > 0 {
				t.Fatalf("got %+v, want no error", *r.Errors[0])
			}
			if len(stmts) == 0 {
				t.Fatalf("got no statement, want the operation run")
			}
		})
	}
}

// TestCancelledRequest shows that the engine stops working for a client
// that went away (security #13, defect 2): nothing is compiled or run once
// the request's context is done.
func TestCancelledRequest(t *testing.T) {
	tests := []struct {
		name  string
		query string
		end   func(context.Context) (context.Context, context.CancelFunc)
		code  string
	}{
		{name: "cancelled", query: `{ users { id } }`, end: context.WithCancel, code: string(core.CodeUnavailable)},
		{name: "past its deadline", query: `{ users { id } }`, code: string(core.CodeTimeout),
			end: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithDeadline(ctx, time.Unix(0, 0))
			}},
		{name: "cancelled, fragment bomb", query: fragmentBomb(30), end: context.WithCancel, code: string(core.CodeUnavailable)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := mustRecordingEngine(t, graphql.Options{})
			ctx, cancel := tt.end(as(demo.TenantAcme))
			cancel()
			mustCode(t, executeBounded(t, e, ctx, graphql.Request{Query: tt.query}), tt.code)
			if n := len(db.take()); n != 0 {
				t.Fatalf("got %d statements, want none", n)
			}
		})
	}
}
