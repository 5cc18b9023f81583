package graphql_test

import (
	"context"
	"testing"

	"github.com/fraise-dev/fraise/core/graphql"
)

// TestEstimate measures operations as Execute would before running them,
// without running them: the recording database sees no statement.
func TestEstimate(t *testing.T) {
	e, db := mustRecordingEngine(t, graphql.Options{MaxDepth: 3, MaxCost: 5000})
	tests := []struct {
		name       string
		query, op  string
		vars       map[string]any
		wantDepth  int
		wantErrors bool
		costAbove  int
	}{
		{name: "flat query", query: "{ users { id name } }", wantDepth: 2, costAbove: 0},
		{name: "nested query", query: "{ users { id posts { id } } }", wantDepth: 3, costAbove: 1},
		{name: "too deep", query: "{ users { posts { author { id } } } }", wantDepth: 4, wantErrors: true},
		{name: "first of a variable", query: "query Q($n: Int) { users(limit: $n) { id posts { id } } }", op: "Q", vars: map[string]any{"n": 100000}, wantDepth: 3, wantErrors: true},
		{name: "unknown field", query: "{ nope }", wantErrors: true},
		{name: "syntax error", query: "{ users { id ", wantErrors: true},
		{name: "operation not in the document", query: "query A { users { id } }", op: "B", wantDepth: 0, wantErrors: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			est := e.Estimate(context.Background(), tt.query, tt.op, tt.vars)
			if est.Limit != 5000 || est.MaxDepth != 3 {
				t.Errorf("got limits %d/%d, want 5000/3", est.Limit, est.MaxDepth)
			}
			if est.Depth != tt.wantDepth && !(tt.wantErrors && tt.wantDepth == 0) {
				t.Errorf("got depth %d, want %d", est.Depth, tt.wantDepth)
			}
			if got := len(est.Errors) > 0; got != tt.wantErrors {
				t.Errorf("got errors %v, want errors %v", messages(est.Errors), tt.wantErrors)
			}
			if !tt.wantErrors && est.Cost <= tt.costAbove {
				t.Errorf("got cost %d, want more than %d", est.Cost, tt.costAbove)
			}
		})
	}
	if got := db.take(); len(got) != 0 {
		t.Errorf("got %d statements run, want none", len(got))
	}
}

func messages(errs []*graphql.Error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Message)
	}
	return out
}
