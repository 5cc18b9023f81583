package graphql

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
)

// builder accumulates one SQL statement and its parameters. Every value
// from a request becomes a $n parameter; only names from the schema (views,
// JSON keys) and generated aliases are written into the text.
type builder struct {
	sb   strings.Builder
	args []any
}

func (b *builder) param(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

// compileRoot builds the statement for one root field.
func (e *Engine) compileRoot(f *ast.Field, vars map[string]any) (string, []any, error) {
	b := &builder{}
	view, _ := e.schema.View(f.Definition.Type.Name())
	args := f.ArgumentMap(vars)
	if f.Definition.Type.Elem != nil { // a list of objects
		limit := e.opts.DefaultLimit
		if v, ok := args["limit"]; ok && v != nil {
			n, err := toInt(v)
			if err != nil || n < 0 {
				return "", nil, fmt.Errorf("limit must be a non-negative integer")
			}
			limit = n
		}
		if limit > e.opts.MaxLimit {
			limit = e.opts.MaxLimit
		}
		obj, err := e.object(b, f.SelectionSet, "t.data", vars)
		if err != nil {
			return "", nil, err
		}
		fmt.Fprintf(&b.sb, "select coalesce(jsonb_agg(%s order by t.id), '[]'::jsonb) from (select id, data from %s order by id limit %s) t",
			obj, view, b.param(limit))
		return b.sb.String(), b.args, nil
	}
	id, ok := args["id"]
	if !ok || id == nil {
		return "", nil, fmt.Errorf("id is required")
	}
	idStr := fmt.Sprint(id)
	if !isUUIDText(idStr) {
		// Not a UUID can match no row; asking PostgreSQL would only turn it
		// into a cast error.
		return "select null::jsonb", nil, nil
	}
	obj, err := e.object(b, f.SelectionSet, "t.data", vars)
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(&b.sb, "select %s from %s t where t.id = %s::uuid", obj, view, b.param(idStr))
	return b.sb.String(), b.args, nil
}

// object returns a jsonb_build_object expression projecting only the
// selected JSON paths of base.
func (e *Engine) object(b *builder, set ast.SelectionSet, base string, vars map[string]any) (string, error) {
	fields, err := collectFields(set, vars)
	if err != nil {
		return "", err
	}
	if len(fields) == 0 {
		return "'{}'::jsonb", nil
	}
	var parts []string
	for _, f := range fields {
		key := b.param(f.Alias)
		if f.Name == "__typename" {
			parts = append(parts, key+"::text, to_jsonb("+b.param(f.ObjectDefinition.Name)+"::text)")
			continue
		}
		lit, ok := quoteKey(f.Name)
		if !ok {
			return "", fmt.Errorf("field %q is not a GraphQL name", f.Name)
		}
		path := base + "->" + lit
		switch {
		case len(f.SelectionSet) == 0:
			parts = append(parts, key+"::text, "+path)
		case f.Definition.Type.Elem != nil:
			inner, err := e.object(b, f.SelectionSet, "e.value", vars)
			if err != nil {
				return "", err
			}
			parts = append(parts, fmt.Sprintf("%s::text, (select coalesce(jsonb_agg(%s), '[]'::jsonb) from jsonb_array_elements(case when jsonb_typeof(%s) = 'array' then %s else '[]'::jsonb end) e)",
				key, inner, path, path))
		default:
			inner, err := e.object(b, f.SelectionSet, path, vars)
			if err != nil {
				return "", err
			}
			parts = append(parts, fmt.Sprintf("%s::text, case when jsonb_typeof(%s) = 'object' then %s else 'null'::jsonb end", key, path, inner))
		}
	}
	// jsonb_build_object takes at most 100 arguments: nest wider objects.
	const maxPairs = 50
	var chunks []string
	for len(parts) > 0 {
		n := min(len(parts), maxPairs)
		chunks = append(chunks, "jsonb_build_object("+strings.Join(parts[:n], ", ")+")")
		parts = parts[n:]
	}
	return strings.Join(chunks, " || "), nil
}

// quoteKey writes a schema field name as a SQL string literal; field names
// are GraphQL Names ([_A-Za-z][_0-9A-Za-z]*), so there is nothing to escape,
// and the check keeps it that way.
func quoteKey(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	for _, r := range name {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return "", false
		}
	}
	return "'" + name + "'", true
}

// collectFields flattens a selection set: fragments expanded, @skip and
// @include applied, fields of one response key merged in order.
func collectFields(set ast.SelectionSet, vars map[string]any) ([]*ast.Field, error) {
	var out []*ast.Field
	index := map[string]int{}
	var walk func(ast.SelectionSet) error
	walk = func(set ast.SelectionSet) error {
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				if !included(s.Directives, vars) {
					continue
				}
				if i, ok := index[s.Alias]; ok {
					merged := *out[i]
					merged.SelectionSet = append(append(ast.SelectionSet{}, merged.SelectionSet...), s.SelectionSet...)
					out[i] = &merged
					continue
				}
				index[s.Alias] = len(out)
				out = append(out, s)
			case *ast.InlineFragment:
				if included(s.Directives, vars) {
					if err := walk(s.SelectionSet); err != nil {
						return err
					}
				}
			case *ast.FragmentSpread:
				if included(s.Directives, vars) && s.Definition != nil {
					if err := walk(s.Definition.SelectionSet); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	return out, walk(set)
}

func included(ds ast.DirectiveList, vars map[string]any) bool {
	if d := ds.ForName("skip"); d != nil {
		if v, _ := d.ArgumentMap(vars)["if"].(bool); v {
			return false
		}
	}
	if d := ds.ForName("include"); d != nil {
		if v, _ := d.ArgumentMap(vars)["if"].(bool); !v {
			return false
		}
	}
	return true
}

func toInt(v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case float64:
		if n != float64(int(n)) {
			return 0, fmt.Errorf("not an integer")
		}
		return int(n), nil
	case string:
		return strconv.Atoi(n)
	}
	return 0, fmt.Errorf("not an integer")
}

func isUUIDText(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
