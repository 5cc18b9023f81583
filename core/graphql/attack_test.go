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

// TestFragmentBomb shows that a fragment spread again and again is expanded
// once per selection set (security #13, defect 2): the bomb costs what the
// two fields it selects cost.
func TestFragmentBomb(t *testing.T) {
	tests := []struct {
		name  string
		query string
	}{
		{name: "30 levels, each spreading the previous twice", query: fragmentBomb(30)},
		{name: "spread twice under a merged field", query: `{ users { posts { ...P ...P } posts { ...P } } }
			fragment P on PostSummary { ...Q ...Q } fragment Q on PostSummary { id title }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := mustRecordingEngine(t, graphql.Options{})
			ctx, cancel := context.WithTimeout(as(demo.TenantAcme), attackBound)
			defer cancel()
			r := executeBounded(t, e, ctx, graphql.Request{Query: tt.query})
			if len(r.Errors) > 0 {
				t.Fatalf("got %+v, want the fields compiled", *r.Errors[0])
			}
			if n := len(db.take()); n != 1 {
				t.Fatalf("got %d statements, want 1", n)
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
