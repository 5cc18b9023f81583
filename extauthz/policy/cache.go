package policy

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// CacheableInputs are the members of the input a policy may read and still
// have its decisions memoised by the members' values: the principal (which
// follows from the credential), the operation, the console's path and
// session kind, and the request's method, path and host. Headers, for one, carry per-request values.
var cacheableInputs = map[string]map[string]bool{
	"principal": nil, // any member
	"graphql":   nil,
	"flight":    nil,
	// console is the path (part of the request's) and the session's kind,
	// which the decision cache's key holds.
	"console": nil,
	"request": {"method": true, "path": true, "host": true},
}

// cacheability reports whether the decision of modules is a function of
// the cacheable inputs alone: no reference to other parts of the input (or
// to the input as a whole), no nondeterministic built-in (time, random,
// HTTP), and no `with` that could rewrite input or data. When it is not,
// the reason says what prevents it, for the log.
func cacheability(mods map[string]*ast.Module) (bool, string) {
	reason := ""
	fail := func(format string, args ...any) {
		if reason == "" {
			reason = fmt.Sprintf(format, args...)
		}
	}
	checkCall := func(op ast.Ref) {
		if b, ok := ast.BuiltinMap[op.String()]; ok && b.IsNondeterministic() {
			fail("calls the nondeterministic built-in %s", op)
		}
	}
	for name, m := range mods {
		vis := ast.NewGenericVisitor(func(x any) bool {
			switch t := x.(type) {
			case *ast.Expr:
				if len(t.With) > 0 {
					fail("%s: uses with", name)
				}
				if t.IsCall() {
					checkCall(t.Operator())
				}
			case ast.Call:
				if len(t) > 0 {
					if r, ok := t[0].Value.(ast.Ref); ok {
						checkCall(r)
					}
				}
			case ast.Ref:
				if !t.HasPrefix(ast.InputRootRef) {
					return false
				}
				if len(t) < 2 {
					fail("%s: reads the whole input", name)
					return true
				}
				top, ok := t[1].Value.(ast.String)
				if !ok {
					fail("%s: reads input[%v]", name, t[1])
					return true
				}
				members, allowed := cacheableInputs[string(top)]
				if !allowed {
					fail("%s: reads input.%s", name, string(top))
					return true
				}
				if members != nil {
					if len(t) < 3 {
						fail("%s: reads the whole input.%s", name, string(top))
						return true
					}
					if m, ok := t[2].Value.(ast.String); !ok || !members[string(m)] {
						fail("%s: reads input.%s[%v]", name, string(top), t[2])
						return true
					}
				}
				// The rest of the ref may hold variables (input.graphql.root_fields[_]).
				for _, e := range t[1:] {
					checkIndex(e, fail, name)
				}
				return true
			case ast.Var:
				if t.Equal(ast.InputRootDocument.Value) {
					fail("%s: reads the whole input", name)
				}
			}
			return false
		})
		vis.Walk(m)
	}
	return reason == "", reason
}

// checkIndex refuses an index into the input that is itself read from
// the input, which the member check above cannot see through.
func checkIndex(t *ast.Term, fail func(string, ...any), name string) {
	if r, ok := t.Value.(ast.Ref); ok && r.HasPrefix(ast.InputRootRef) {
		fail("%s: indexes with a value read from input", name)
	}
}
