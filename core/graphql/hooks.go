package graphql

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/fraise-dev/fraise/core"
)

// Hooks maps a root field's name to the Go code the engine runs for it
// (Options.Hooks). They let a server add checks that SQL cannot express
// (compiling an expression language, say) and fields computed in Go,
// without the engine knowing what they are for.
type Hooks map[string]Hook

// Hook is Go code for one root field. Both functions run inside the
// request's tenant transaction, before the field's statement, with the
// field's coerced arguments and the transaction's Querier, so what they
// read is what the statement will see, and their error aborts the
// transaction (a mutation is then audited as failed).
type Hook struct {
	// Check refuses the field by returning an error, a *core.Error whose
	// code becomes extensions.code (INVALID for bad input). For a mutation,
	// nothing the function would have written is written.
	Check func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) error
	// Resolve computes the value of a root query field declared @resolver:
	// JSON of the field's type, which the engine projects through the
	// request's selection as it does a view's data.
	Resolve func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) (json.RawMessage, error)
}

// hookRun is a hook bound to one root field of one request.
type hookRun struct {
	hook Hook
	args map[string]any
	slot int // index in the statement's args that Resolve fills; -1 for none
}

// checkHook returns the Check of root field f, nil when it has none.
func (c *compiler) checkHook(f *ast.Field, hooks Hooks) *hookRun {
	h, ok := hooks[f.Name]
	if !ok || h.Check == nil {
		return nil
	}
	return &hookRun{hook: Hook{Check: h.Check}, args: f.ArgumentMap(c.vars), slot: -1}
}

// compileResolved builds the statement of a root field declared @resolver:
// the value its Resolve hook computes, passed as a parameter and projected
// through the selection.
func (c *compiler) compileResolved(ctx context.Context, f *ast.Field, hooks Hooks) (string, *hookRun, error) {
	h, ok := hooks[f.Name]
	if !ok || h.Resolve == nil {
		return "", nil, core.Errorf(core.CodeInternal, "field %s is @resolver but the server registered no resolver for it", f.Name).WithOp("graphql.resolve")
	}
	run := &hookRun{hook: h, args: f.ArgumentMap(c.vars), slot: len(c.args)}
	ph := c.param(nil)
	t := f.Definition.Type
	named := c.s.ast.Types[t.Name()]
	var expr string
	switch {
	case named == nil || named.Kind == ast.Scalar || named.Kind == ast.Enum:
		expr = "r.j"
	case t.Elem == nil:
		inner, err := c.composite(ctx, f.SelectionSet, named, "r.j")
		if err != nil {
			return "", nil, err
		}
		expr = fmt.Sprintf("case when jsonb_typeof(r.j) = 'object' then %s end", inner)
	case t.Elem.Elem == nil:
		e := c.alias()
		inner, err := c.composite(ctx, f.SelectionSet, named, e+".value")
		if err != nil {
			return "", nil, err
		}
		expr = fmt.Sprintf("case when jsonb_typeof(r.j) = 'array' then (select coalesce(json_agg(%[1]s order by %[2]s.ord), '[]'::json) from jsonb_array_elements(r.j) with ordinality %[2]s(value, ord)) end", inner, e)
	default:
		return "", nil, invalid("field %s: lists of lists of objects are not supported", f.Name)
	}
	return fmt.Sprintf("select %s from (select %s::jsonb as j) r", expr, ph), run, nil
}

// before runs the hook ahead of its statement, filling the resolver's
// parameter in args. A nil hookRun does nothing.
func (h *hookRun) before(ctx context.Context, q core.Querier, p core.Principal, args []any) error {
	if h == nil {
		return nil
	}
	if h.hook.Check != nil {
		if err := h.hook.Check(ctx, q, p, h.args); err != nil {
			return err
		}
	}
	if h.hook.Resolve != nil {
		v, err := h.hook.Resolve(ctx, q, p, h.args)
		if err != nil {
			return err
		}
		if v == nil {
			v = json.RawMessage("null")
		}
		args[h.slot] = string(v)
	}
	return nil
}

// hooked reports whether any statement runs a hook, which needs the
// transaction rather than the query batch.
func hooked(stmts []stmt) bool {
	for _, st := range stmts {
		if st.hook != nil {
			return true
		}
	}
	return false
}
