package graphql

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/fraise-dev/fraise/core"
)

// ViewField returns where the scalar field at path sits in the data column
// of the view typ reads from, and the protection its @auth and @mask
// directives declare, for readers of the view other than this engine
// (Flight datasets over a GraphQL type), so that they protect it as the
// engine does. path is a field of typ, or a path through object-typed
// fields to a scalar field of a nested object ("author", "email"). Every
// field on the way adds its @auth (its own, or its type's); the last adds
// its @mask. Errors name the type and field.
func (s *Schema) ViewField(typ string, path []string) (core.ViewField, error) {
	var vf core.ViewField
	if _, ok := s.views[typ]; !ok {
		return vf, fmt.Errorf("type %s reads from no view (no root query field returns it)", typ)
	}
	if len(path) == 0 {
		return vf, errors.New("empty field path")
	}
	cur := typ
	for i, name := range path {
		def := s.ast.Types[cur]
		fi := s.fields[cur][name]
		if def == nil || fi == nil || def.Fields.ForName(name) == nil {
			return core.ViewField{}, fmt.Errorf("type %s has no field %s", cur, name)
		}
		fd := def.Fields.ForName(name)
		vf.Keys = append(vf.Keys, fi.keys...)
		if fi.auth != "" {
			vf.Protection.Auth = append(vf.Protection.Auth, fi.auth)
		}
		named := s.ast.Types[fd.Type.Name()]
		if named == nil {
			return core.ViewField{}, fmt.Errorf("field %s.%s has unknown type %s", cur, name, fd.Type.Name())
		}
		scalar := named.Kind == ast.Scalar || named.Kind == ast.Enum
		if i < len(path)-1 {
			if named.Kind != ast.Object || fd.Type.Elem != nil {
				return core.ViewField{}, fmt.Errorf("field %s.%s is %s, not an object: a path leads through object fields to one scalar (%s)",
					cur, name, fd.Type, strings.Join(path, "."))
			}
			cur = named.Name
			continue
		}
		if !scalar {
			return core.ViewField{}, fmt.Errorf("field %s.%s is %s, not a scalar: name its scalar fields (%s.<field>)", cur, name, fd.Type, strings.Join(path, "."))
		}
		if fd.Type.Elem != nil {
			if fd.Type.Elem.Elem != nil {
				return core.ViewField{}, fmt.Errorf("field %s.%s is a list of lists", cur, name)
			}
			vf.List = true
		}
		if fi.mask != "" {
			vf.Protection.Mask, vf.Protection.MaskScope = core.MaskKind(fi.mask), fi.maskScope
		}
	}
	return vf, nil
}
