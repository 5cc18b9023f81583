// Package graphql is the core's GraphQL engine: a schema written in SDL
// whose types read from PostgreSQL views of (id, tenant_id, data jsonb), and
// an executor that compiles each root field of a request to one
// parameterized SQL statement building its JSON inside PostgreSQL, all in
// one tenant-scoped transaction. It knows the database only through the
// core.TenantDB port.
package graphql

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// directives declares Fraise's schema directives, so schemas need not.
const directives = `
"Binds an object type to the view it reads from (default v_<snake_case name>)."
directive @view(name: String!) on OBJECT
`

// Schema is a parsed and checked schema.
type Schema struct {
	ast   *ast.Schema
	views map[string]string // object type name -> view
}

// ParseSchema parses sdl and checks that every root query field can be
// compiled: it returns an object type (a view) or a list of them.
func ParseSchema(sdl string) (*Schema, error) {
	s, err := gqlparser.LoadSchema(
		&ast.Source{Name: "fraise-directives.graphql", Input: directives, BuiltIn: true},
		&ast.Source{Name: "schema.graphql", Input: sdl},
	)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	out := &Schema{ast: s, views: map[string]string{}}
	for name, def := range s.Types {
		if def.Kind != ast.Object || def.BuiltIn || strings.HasPrefix(name, "__") {
			continue
		}
		if s.Query != nil && name == s.Query.Name || s.Mutation != nil && name == s.Mutation.Name {
			continue
		}
		view := "v_" + snake(name)
		if d := def.Directives.ForName("view"); d != nil {
			if a := d.Arguments.ForName("name"); a != nil && a.Value != nil {
				view = a.Value.Raw
			}
		}
		if !isIdent(view) {
			return nil, fmt.Errorf("schema: type %s: view name %q is not a plain SQL identifier", name, view)
		}
		out.views[name] = view
	}
	if s.Query == nil {
		return nil, fmt.Errorf("schema: no Query type")
	}
	for _, f := range s.Query.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		elem := f.Type
		if elem.Elem != nil {
			elem = elem.Elem
		}
		if _, ok := out.views[elem.Name()]; !ok {
			return nil, fmt.Errorf("schema: Query.%s: returns %s, which is not an object type bound to a view", f.Name, f.Type)
		}
		if f.Type.Elem == nil && f.Arguments.ForName("id") == nil {
			return nil, fmt.Errorf("schema: Query.%s: a single-object root field needs an id argument", f.Name)
		}
	}
	return out, nil
}

// View returns the view an object type reads from.
func (s *Schema) View(typeName string) (string, bool) {
	v, ok := s.views[typeName]
	return v, ok
}

// snake converts a type name to snake_case: BlogPost -> blog_post.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isIdent reports whether s is safe to write unquoted into SQL: schema names
// come from the operator's SDL, never from requests, but a schema typo must
// not become an injection either.
func isIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || 'a' <= r && r <= 'z':
		case i > 0 && ('0' <= r && r <= '9' || r == '.'):
		default:
			return false
		}
	}
	return true
}
