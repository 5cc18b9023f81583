package graphql

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/fraise-dev/fraise/deploy/demo"
)

// FuzzLimits runs the limit walker over arbitrary documents and variables,
// which it sees before validation. It must not panic, whatever the
// document holds. For a document that then passes validation, what the
// walker measured must not understate what execution does, measured here as
// the engine measured it before the walker, on the validated operation with
// its fields merged: the same depth and root fields, at least the cost and
// the aliases, and at least as many selections as execution collects
// fields. What scan reads of the tokens must agree. Seeds are in
// testdata/fuzz/FuzzLimits.
func FuzzLimits(f *testing.F) {
	f.Add(`{ users { ...A ...A } } fragment A on User { id n: name posts { id } }`, `{}`)
	f.Add(`query($s: Boolean = true, $n: Int) { users(limit: $n) { id posts @skip(if: $s) { title } } }`, `{"n": 3}`)
	s, err := ParseSchema(demo.SDL)
	if err != nil {
		f.Fatal(err)
	}
	// Small limits, so that small documents reach them.
	e := NewEngine(s, nopDB{}, Options{Introspection: true, MaxSelections: 64, MaxAliases: 4})
	f.Fuzz(func(t *testing.T, doc, vars string) {
		var raw map[string]any
		if json.Unmarshal([]byte(vars), &raw) != nil {
			raw = nil
		}
		d, err := parser.ParseQuery(&ast.Source{Input: doc})
		if err != nil {
			return
		}
		ctx := context.Background()
		key, scanned := e.scan(ctx, doc, "")
		op, pickErr := pickOperation(d, "")
		refused := e.checkLimits(ctx, e.Schema(), d, op, raw, true)
		if scanned != nil {
			// The tokens may show a document over the limits early, but
			// never one within them.
			if refused == nil && pickErr == nil {
				t.Fatalf("scan refused it with %s, the walker did not", scanned.Errors[0].Message)
			}
			return
		}
		if other, _ := e.scan(ctx, "# a comment\n"+doc, ""); other != key {
			t.Fatalf("a comment changed the document's key")
		}
		if refused != nil || pickErr != nil {
			return
		}
		m := newMeasure(ctx, s, &e.opts, d, op, raw)
		st := m.set(op.SelectionSet, m.rootType(op), true)
		keys := map[string]bool{}
		m.rootKeys(op.SelectionSet, keys, map[*ast.FragmentDefinition]bool{})
		if len(validator.ValidateWithRules(s.ast, d, nil)) > 0 || op.Operation == ast.Subscription {
			return
		}
		coerced, err := validator.VariableValues(s.ast, op, raw)
		if err != nil {
			return
		}
		root := s.ast.Query
		if op.Operation == ast.Mutation {
			root = s.ast.Mutation
		}
		roots := collectFields(op.SelectionSet, coerced, root.Name, s)
		if len(keys) != len(roots) {
			t.Fatalf("got %d root fields, want %d", len(keys), len(roots))
		}
		var data []*ast.Field
		depth := 0
		for _, f := range roots {
			if f.Name != "__schema" && f.Name != "__type" {
				data = append(data, f)
				depth = max(depth, refDepth(f.SelectionSet, coerced, s, 1))
			}
		}
		if st.depth != depth {
			t.Fatalf("got depth %d, want %d", st.depth, depth)
		}
		if c := refCost(e, data, coerced, 1, true); st.cost < c {
			t.Fatalf("got cost %d, want at least %d", st.cost, c)
		}
		if n := refAliases(op.SelectionSet, map[string]bool{}); st.aliases < n {
			t.Fatalf("got %d aliases, want at least %d", st.aliases, n)
		}
		if n := refFields(roots, coerced, s); st.selections < n {
			t.Fatalf("got %d selections, want at least the %d fields execution collects", st.selections, n)
		}
	})
}

// refDepth, refCost and refAliases are the limits as the engine measured
// them on the validated operation before the walker.
func refDepth(set ast.SelectionSet, vars map[string]any, s *Schema, d int) int {
	out := d
	for _, f := range collectFields(set, vars, "", s) {
		out = max(out, d+1)
		if len(f.SelectionSet) > 0 {
			out = max(out, refDepth(f.SelectionSet, vars, s, d+1))
		}
	}
	return out
}

func refCost(e *Engine, fields []*ast.Field, vars map[string]any, mult int, root bool) int {
	total := 0
	for _, f := range fields {
		total = satAdd(total, mult)
		if len(f.SelectionSet) == 0 || f.Definition == nil {
			continue
		}
		m := mult
		t := f.Definition.Type
		_, isConn := e.Schema().connections[t.Name()]
		switch {
		case root && (t.Elem != nil || isConn):
			args := f.ArgumentMap(vars)
			n := int64(e.opts.DefaultLimit)
			for _, a := range []string{"limit", "first", "last"} {
				if v, ok := args[a]; ok && v != nil {
					if x, err := toInt(v); err == nil && x >= 0 {
						n = min(x, int64(e.opts.MaxLimit))
					}
				}
			}
			m = satMul(m, int(n))
		case t.Elem != nil && f.Name != "edges":
			n := e.opts.NestedListSize
			if v, ok := f.ArgumentMap(vars)["limit"]; ok && v != nil {
				if x, err := toInt(v); err == nil && x >= 0 && x < int64(n) {
					n = int(x)
				}
			}
			m = satMul(m, n)
		}
		total = satAdd(total, refCost(e, collectFields(f.SelectionSet, vars, "", e.Schema()), vars, m, false))
	}
	return total
}

func refAliases(set ast.SelectionSet, seen map[string]bool) int {
	n := 0
	for _, sel := range set {
		switch x := sel.(type) {
		case *ast.Field:
			if x.Alias != "" && x.Alias != x.Name {
				n++
			}
			n += refAliases(x.SelectionSet, seen)
		case *ast.InlineFragment:
			n += refAliases(x.SelectionSet, seen)
		case *ast.FragmentSpread:
			if x.Definition != nil && !seen[x.Name] {
				seen[x.Name] = true
				n += refAliases(x.Definition.SelectionSet, seen)
			}
		}
	}
	return n
}

// refFields counts the fields execution collects, every level merged.
func refFields(fields []*ast.Field, vars map[string]any, s *Schema) int {
	n := len(fields)
	for _, f := range fields {
		if len(f.SelectionSet) > 0 && f.Definition != nil {
			n += refFields(collectFields(f.SelectionSet, vars, f.Definition.Type.Name(), s), vars, s)
		}
	}
	return n
}
