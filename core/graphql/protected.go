package graphql

import "sort"

// ProtectedField is a field of the schema that not every principal may
// read in full: one masked by @mask unless the principal holds the mask's
// scope, or restricted by @auth, on the field or on its type, to
// principals that hold the directive's scope. Code that hands the same data
// out by another way (an observer rule sending a row to a URL) asks for the
// same scopes.
type ProtectedField struct {
	Type, Field string
	// Keys are the JSON keys from the object's JSON to the value: the
	// field's name, or its @field path.
	Keys []string
	// Scope is what lifts the protection: the mask's scope, or @auth's.
	Scope string
	// Mask is the mask's kind (EMAIL, PII, SECRET); empty for @auth.
	Mask string
	// OnType is set when the protection is an @auth on the field's type,
	// which restricts every field of it.
	OnType bool
	// View is the view the type is read from, when a root field binds it.
	View string
}

// ProtectedFields returns every protected field of the schema's object
// types, by type and field name; a field both masked and restricted is
// listed once for each.
func (s *Schema) ProtectedFields() []ProtectedField {
	var out []ProtectedField
	for typ, fields := range s.fields {
		def := s.ast.Types[typ]
		for name, fi := range fields {
			keys := append([]string(nil), fi.keys...)
			if fi.mask != "" {
				out = append(out, ProtectedField{Type: typ, Field: name, Keys: keys, Scope: fi.maskScope, Mask: fi.mask, View: s.views[typ]})
			}
			if fi.auth != "" {
				onType := def != nil && (def.Fields.ForName(name) == nil || def.Fields.ForName(name).Directives.ForName("auth") == nil)
				out = append(out, ProtectedField{Type: typ, Field: name, Keys: keys, Scope: fi.auth, OnType: onType, View: s.views[typ]})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Mask > b.Mask
	})
	return out
}
