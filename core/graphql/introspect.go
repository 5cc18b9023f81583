package graphql

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
)

// hiddenDirectives are Fraise's schema directives: they name database
// objects and scopes, which introspection does not tell clients.
var hiddenDirectives = map[string]bool{"view": true, "field": true, "function": true, "auth": true, "mask": true, "resolver": true}

// introspect answers a __schema or __type root field from the schema, in
// the engine: introspection never reaches the database. It stops with
// ctx's error once ctx is done.
func introspect(ctx context.Context, s *Schema, f *ast.Field, vars map[string]any) (json.RawMessage, error) {
	in := &introspector{s: s, vars: vars}
	var v any
	switch f.Name {
	case "__schema":
		v = in.resolve(ctx, f.SelectionSet, "__Schema", schemaNode{})
	case "__type":
		name, _ := f.ArgumentMap(vars)["name"].(string)
		if def := in.named(name); def != nil {
			v = in.resolve(ctx, f.SelectionSet, "__Type", typeNode{def: def})
		}
	}
	if in.err != nil {
		return nil, in.err
	}
	return json.Marshal(v)
}

type introspector struct {
	s    *Schema
	vars map[string]any
	err  error // the context's error, once it ended: resolving stops
}

// Nodes of the introspection graph.
type (
	schemaNode    struct{}
	typeNode      struct{ def *ast.Definition }
	wrapNode      struct{ t *ast.Type } // NON_NULL or LIST around t's inner type
	fieldNode     struct{ f *ast.FieldDefinition }
	inputNode     struct{ a *ast.ArgumentDefinition }
	enumNode      struct{ v *ast.EnumValueDefinition }
	directiveNode struct{ d *ast.DirectiveDefinition }
)

// ordered is a JSON object whose keys keep the selection's order.
type ordered []orderedKV

type orderedKV struct {
	k string
	v any
}

// MarshalJSON writes the keys in order.
func (o ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(kv.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (in *introspector) named(name string) *ast.Definition {
	def := in.s.ast.Types[name]
	if def == nil || name == "MaskKind" {
		return nil
	}
	return def
}

func (in *introspector) typeOf(t *ast.Type) any {
	if t.NonNull || t.Elem != nil {
		return wrapNode{t}
	}
	if def := in.named(t.NamedType); def != nil {
		return typeNode{def}
	}
	return nil
}

func (in *introspector) resolve(ctx context.Context, set ast.SelectionSet, typ string, node any) any {
	if in.err != nil {
		return nil
	}
	if in.err = ctx.Err(); in.err != nil {
		return nil
	}
	var out ordered
	for _, f := range collectFields(set, in.vars, typ, in.s) {
		var v any
		if f.Name == "__typename" {
			v = typ
		} else {
			v = in.value(node, f)
		}
		out = append(out, orderedKV{f.Alias, in.wrap(ctx, v, f)})
	}
	return out
}

// wrap resolves nodes (and lists of them) through the field's selection.
func (in *introspector) wrap(ctx context.Context, v any, f *ast.Field) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = in.wrap(ctx, e, f)
		}
		return out
	case schemaNode:
		return in.resolve(ctx, f.SelectionSet, "__Schema", x)
	case typeNode, wrapNode:
		return in.resolve(ctx, f.SelectionSet, "__Type", x)
	case fieldNode:
		return in.resolve(ctx, f.SelectionSet, "__Field", x)
	case inputNode:
		return in.resolve(ctx, f.SelectionSet, "__InputValue", x)
	case enumNode:
		return in.resolve(ctx, f.SelectionSet, "__EnumValue", x)
	case directiveNode:
		return in.resolve(ctx, f.SelectionSet, "__Directive", x)
	}
	return v
}

func deprecation(ds ast.DirectiveList) (bool, any) {
	d := ds.ForName("deprecated")
	if d == nil {
		return false, nil
	}
	if a := d.Arguments.ForName("reason"); a != nil && a.Value != nil {
		return true, a.Value.Raw
	}
	return true, "No longer supported"
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (in *introspector) value(node any, f *ast.Field) any {
	args := f.ArgumentMap(in.vars)
	includeDeprecated, _ := args["includeDeprecated"].(bool)
	switch n := node.(type) {
	case schemaNode:
		s := in.s.ast
		switch f.Name {
		case "description":
			return nilIfEmpty(s.Description)
		case "types":
			names := make([]string, 0, len(s.Types))
			for name := range s.Types {
				if in.named(name) != nil {
					names = append(names, name)
				}
			}
			sort.Strings(names)
			out := make([]any, len(names))
			for i, name := range names {
				out[i] = typeNode{s.Types[name]}
			}
			return out
		case "queryType":
			return typeNode{s.Query}
		case "mutationType":
			if s.Mutation == nil {
				return nil
			}
			return typeNode{s.Mutation}
		case "subscriptionType":
			return nil
		case "directives":
			names := make([]string, 0, len(s.Directives))
			for name := range s.Directives {
				if !hiddenDirectives[name] {
					names = append(names, name)
				}
			}
			sort.Strings(names)
			out := make([]any, len(names))
			for i, name := range names {
				out[i] = directiveNode{s.Directives[name]}
			}
			return out
		}
	case wrapNode:
		switch f.Name {
		case "kind":
			if n.t.NonNull {
				return "NON_NULL"
			}
			return "LIST"
		case "ofType":
			if n.t.NonNull {
				inner := *n.t
				inner.NonNull = false
				return in.typeOf(&inner)
			}
			return in.typeOf(n.t.Elem)
		}
		return nil
	case typeNode:
		d := n.def
		switch f.Name {
		case "kind":
			return string(d.Kind)
		case "name":
			return d.Name
		case "description":
			return nilIfEmpty(d.Description)
		case "specifiedByURL":
			if sd := d.Directives.ForName("specifiedBy"); sd != nil {
				if a := sd.Arguments.ForName("url"); a != nil && a.Value != nil {
					return a.Value.Raw
				}
			}
			return nil
		case "isOneOf":
			if d.Kind != ast.InputObject {
				return nil
			}
			return d.Directives.ForName("oneOf") != nil
		case "fields":
			if d.Kind != ast.Object && d.Kind != ast.Interface {
				return nil
			}
			out := []any{}
			for _, fd := range d.Fields {
				if strings.HasPrefix(fd.Name, "__") {
					continue
				}
				if dep, _ := deprecation(fd.Directives); dep && !includeDeprecated {
					continue
				}
				out = append(out, fieldNode{fd})
			}
			return out
		case "interfaces":
			if d.Kind != ast.Object && d.Kind != ast.Interface {
				return nil
			}
			out := []any{}
			for _, i := range d.Interfaces {
				out = append(out, typeNode{in.s.ast.Types[i]})
			}
			return out
		case "possibleTypes":
			if !d.IsAbstractType() {
				return nil
			}
			out := []any{}
			for _, p := range in.s.ast.GetPossibleTypes(d) {
				out = append(out, typeNode{p})
			}
			return out
		case "enumValues":
			if d.Kind != ast.Enum {
				return nil
			}
			out := []any{}
			for _, ev := range d.EnumValues {
				if dep, _ := deprecation(ev.Directives); dep && !includeDeprecated {
					continue
				}
				out = append(out, enumNode{ev})
			}
			return out
		case "inputFields":
			if d.Kind != ast.InputObject {
				return nil
			}
			out := []any{}
			for _, fd := range d.Fields {
				out = append(out, inputNode{&ast.ArgumentDefinition{Name: fd.Name, Description: fd.Description, Type: fd.Type, DefaultValue: fd.DefaultValue, Directives: fd.Directives}})
			}
			return out
		case "ofType":
			return nil
		}
	case fieldNode:
		switch f.Name {
		case "name":
			return n.f.Name
		case "description":
			return nilIfEmpty(n.f.Description)
		case "args":
			out := []any{}
			for _, a := range n.f.Arguments {
				out = append(out, inputNode{a})
			}
			return out
		case "type":
			return in.typeOf(n.f.Type)
		case "isDeprecated":
			dep, _ := deprecation(n.f.Directives)
			return dep
		case "deprecationReason":
			_, r := deprecation(n.f.Directives)
			return r
		}
	case inputNode:
		switch f.Name {
		case "name":
			return n.a.Name
		case "description":
			return nilIfEmpty(n.a.Description)
		case "type":
			return in.typeOf(n.a.Type)
		case "defaultValue":
			if n.a.DefaultValue == nil {
				return nil
			}
			return n.a.DefaultValue.String()
		case "isDeprecated":
			dep, _ := deprecation(n.a.Directives)
			return dep
		case "deprecationReason":
			_, r := deprecation(n.a.Directives)
			return r
		}
	case enumNode:
		switch f.Name {
		case "name":
			return n.v.Name
		case "description":
			return nilIfEmpty(n.v.Description)
		case "isDeprecated":
			dep, _ := deprecation(n.v.Directives)
			return dep
		case "deprecationReason":
			_, r := deprecation(n.v.Directives)
			return r
		}
	case directiveNode:
		switch f.Name {
		case "name":
			return n.d.Name
		case "description":
			return nilIfEmpty(n.d.Description)
		case "locations":
			out := []any{}
			for _, l := range n.d.Locations {
				out = append(out, string(l))
			}
			return out
		case "args":
			out := []any{}
			for _, a := range n.d.Arguments {
				out = append(out, inputNode{a})
			}
			return out
		case "isRepeatable":
			return n.d.IsRepeatable
		}
	}
	return nil
}
