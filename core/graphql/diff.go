package graphql

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
)

// Diff lists how schema b differs from a, ignoring the order of types,
// fields and arguments: types, fields, arguments, input fields, enum
// values and union members, their types, descriptions and directives (the
// ones only Fraise reads included). Each line is "- " what only a has or
// "+ " what only b has; none when they serve the same.
func Diff(a, b *Schema) []string {
	la, lb := a.canonical(), b.canonical()
	var out []string
	for l := range la {
		if !lb[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range lb {
		if !la[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][2:] < out[j][2:] || out[i][2:] == out[j][2:] && out[i] < out[j] })
	return out
}

// canonical describes the schema's own definitions (not the built-in ones
// or those Fraise generates from them) as a set of lines.
func (s *Schema) canonical() map[string]bool {
	out := map[string]bool{}
	for name, def := range s.ast.Types {
		if def.BuiltIn || def.Position != nil && def.Position.Src != nil && def.Position.Src.BuiltIn || strings.HasPrefix(name, "__") {
			continue
		}
		out[fmt.Sprintf("%s %s%s%s", strings.ToLower(string(def.Kind)), name, directives(def.Directives), desc(def.Description))] = true
		for _, m := range def.Types {
			out[fmt.Sprintf("union %s member %s", name, m)] = true
		}
		for _, v := range def.EnumValues {
			out[fmt.Sprintf("enum %s value %s%s%s", name, v.Name, directives(v.Directives), desc(v.Description))] = true
		}
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			out[fmt.Sprintf("%s.%s: %s%s%s", name, f.Name, f.Type, directives(f.Directives), desc(f.Description))] = true
			for _, a := range f.Arguments {
				out[fmt.Sprintf("%s.%s(%s: %s%s)%s", name, f.Name, a.Name, a.Type, defaultValue(a.DefaultValue), desc(a.Description))] = true
			}
		}
	}
	for _, d := range s.ast.SchemaDirectives {
		out["schema"+directives(ast.DirectiveList{d})] = true
	}
	return out
}

func directives(ds ast.DirectiveList) string {
	var parts []string
	for _, d := range ds {
		var args []string
		for _, a := range d.Arguments {
			args = append(args, a.Name+": "+a.Value.String())
		}
		sort.Strings(args)
		parts = append(parts, "@"+d.Name+"("+strings.Join(args, ", ")+")")
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func desc(d string) string {
	if d == "" {
		return ""
	}
	return fmt.Sprintf(" %q", d)
}

func defaultValue(v *ast.Value) string {
	if v == nil {
		return ""
	}
	return " = " + v.String()
}
