package flight

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/fraise-dev/fraise/core"
)

// Column is one exported column of a dataset.
type Column struct {
	Name string
	Type Type
	// Field is the field of the dataset's GraphQL type (Dataset.Type) the
	// column reads: a field of the type, or a dotted path through its
	// object fields ("author.email"). Empty means the column's name in
	// camelCase (created_at: createdAt). Only datasets over a GraphQL type
	// have fields.
	Field string
	// Protection is the column's own field protection, declared with the
	// dataset; a column of a dataset over a GraphQL type also carries its
	// field's @auth and @mask (NewCatalog adds them). Values a principal
	// may not read are NULL, masked ones are masked, in the SQL the export
	// runs: see Compile.
	Protection core.Protection

	// path, set by NewCatalog for a column of a dataset over a GraphQL
	// type, is where its field sits in the view's data column; other
	// columns read the view's column of their name.
	path []string
}

// Dataset is a view, or the fields of a GraphQL type, declared exportable:
// the name clients use (a Flight path joined with "."), the view it reads,
// its typed columns and the roles that may export it.
type Dataset struct {
	Name string
	View string
	// Type, when set, is the GraphQL object type the dataset reads instead
	// of a view's columns: View is the type's view, and every column is a
	// field of the type (Column.Field), read from the view's data column
	// with the protection the schema declares for the field, so that an
	// export shows a principal what GraphQL shows it, and no more.
	Type    string
	Columns []Column
	// Roles that may export the dataset; empty means any principal the
	// policy let through.
	Roles []string
	// Endpoints, above 1, lets GetFlightInfo answer with up to that many
	// endpoints, each a disjoint range of PartitionKey read on its own
	// connection, all in one snapshot, for clients that read endpoints in
	// parallel. 0 and 1 mean one endpoint.
	Endpoints int
	// PartitionKey is the column whose ranges the endpoints read: an
	// int2, int4, int8 or uuid column; default "id".
	PartitionKey string
}

// Path returns the dataset's name as a Flight descriptor path.
func (d *Dataset) Path() []string { return strings.Split(d.Name, ".") }

// Column returns the named column.
func (d *Dataset) Column(name string) (Column, bool) {
	for _, c := range d.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Schema returns the Arrow schema of the given columns (all when names is
// empty), in that order. Every field is nullable: a view's column can be.
func (d *Dataset) Schema(names []string) (*arrow.Schema, error) {
	cols, err := d.columns(names)
	if err != nil {
		return nil, err
	}
	return schemaOf(cols), nil
}

// columns returns the named columns (all when names is empty).
func (d *Dataset) columns(names []string) ([]Column, error) {
	if len(names) == 0 {
		return d.Columns, nil
	}
	cols := make([]Column, 0, len(names))
	for _, n := range names {
		c, ok := d.Column(n)
		if !ok {
			return nil, core.Errorf(core.CodeInvalid, "dataset %s has no column %q", d.Name, n)
		}
		cols = append(cols, c)
	}
	return cols, nil
}

// allows reports whether p may export d.
func (d *Dataset) allows(p core.Principal) bool {
	if len(d.Roles) == 0 {
		return true
	}
	return slices.ContainsFunc(d.Roles, p.HasRole)
}

var (
	identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	viewRE  = regexp.MustCompile(`^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$`)
	nameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62}){0,2}$`)
	// A GraphQL name; a field path is such names joined with ".".
	gqlNameRE = regexp.MustCompile(`^[_A-Za-z][_0-9A-Za-z]*$`)
	// A JSON key written into SQL between single quotes as it is.
	jsonKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// ErrNotExportable is the cause of refusing a dataset the catalog does not
// hold, or one the principal may not export: the two are indistinguishable
// to a client, so no one learns which views exist.
var ErrNotExportable = errors.New("dataset is not exportable")

// Catalog is the set of exportable datasets.
type Catalog struct {
	byName map[string]*Dataset
	names  []string
}

// Types is the GraphQL schema as datasets over a GraphQL type read it;
// core/graphql's *Schema is one.
type Types interface {
	// Views returns the view each root-bound object type reads from.
	Views() map[string]string
	// ViewField returns where the scalar field at path (a field of typ,
	// or a path through its object fields) sits in the data column of
	// typ's view, and the protection the schema declares for it; an error
	// names what is wrong.
	ViewField(typ string, path []string) (core.ViewField, error)
}

// Check reports every problem of the declarations that can be found
// without the GraphQL schema, at once; NewCatalog reports these and the
// rest. Configuration checks it before the schema is read.
func Check(ds []Dataset) error {
	_, errs := check(ds)
	return errors.Join(errs...)
}

// NewCatalog checks the datasets and returns their catalog. Names of views
// and columns are plain lower-case identifiers, so that they can be written
// into SQL quoted but otherwise unchanged. A dataset over a GraphQL type
// (Dataset.Type) is bound to types: it reads the type's view, and each
// column the field it names, with the field's @auth and @mask. A dataset
// over the view of a GraphQL type that does not say so is refused: its
// columns would be the view's raw data, past every protection the schema
// declares. types may be nil when no dataset reads a GraphQL type (and
// then no such view can be recognised).
func NewCatalog(ds []Dataset, types Types) (*Catalog, error) {
	out, errs := check(ds)
	if len(errs) == 0 {
		errs = bind(out, types)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Catalog{byName: make(map[string]*Dataset, len(out))}
	for i := range out {
		c.byName[out[i].Name] = &out[i]
		c.names = append(c.names, out[i].Name)
	}
	sort.Strings(c.names)
	return c, nil
}

// check checks the declarations and returns copies to bind.
func check(ds []Dataset) ([]Dataset, []error) {
	var errs []error
	seenName := map[string]bool{}
	out := make([]Dataset, 0, len(ds))
	for _, d := range ds {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("dataset %q: "+format, append([]any{d.Name}, args...)...))
		}
		if !nameRE.MatchString(d.Name) {
			bad("name must be up to three dot-separated identifiers")
		}
		if seenName[d.Name] {
			bad("declared twice")
		}
		seenName[d.Name] = true
		switch {
		case d.Type != "" && !gqlNameRE.MatchString(d.Type):
			bad("GraphQL type %q is not a GraphQL name", d.Type)
		case d.Type != "" && d.View != "":
			bad("the view of GraphQL type %s is the one it reads: leave view out", d.Type)
		case d.Type == "" && !viewRE.MatchString(d.View):
			bad("view %q must be [schema.]name in lower case", d.View)
		}
		if len(d.Columns) == 0 {
			bad("no columns")
		}
		seen := map[string]bool{}
		for _, col := range d.Columns {
			if !identRE.MatchString(col.Name) {
				bad("column %q must be a lower-case identifier", col.Name)
			}
			if seen[col.Name] {
				bad("column %q declared twice", col.Name)
			}
			seen[col.Name] = true
			if col.Type.Kind == KindInvalid {
				bad("column %q has no type", col.Name)
			}
			if col.Field != "" && d.Type == "" {
				bad("column %q: field %q names a field of a GraphQL type, and the dataset reads none", col.Name, col.Field)
			}
			if col.Field != "" {
				for _, part := range strings.Split(col.Field, ".") {
					if !gqlNameRE.MatchString(part) {
						bad("column %q: field %q must be a GraphQL field name, or names joined with \".\"", col.Name, col.Field)
						break
					}
				}
			}
			if err := checkProtection(col.Protection, col.Type); err != nil {
				bad("column %q: %v", col.Name, err)
			}
		}
		switch {
		case d.Endpoints < 0:
			bad("endpoints must not be negative")
		case d.Endpoints > maxEndpoints:
			bad("endpoints: at most %d", maxEndpoints)
		case d.Endpoints > 1:
			if d.PartitionKey == "" {
				d.PartitionKey = "id"
			}
			if col, ok := d.Column(d.PartitionKey); !ok || !partitionable(col.Type) {
				bad("endpoints: partition_key %q must name an int2, int4, int8 or uuid column", d.PartitionKey)
			}
		case d.PartitionKey != "":
			bad("partition_key is for a dataset with endpoints above 1")
		}
		d.Columns = slices.Clone(d.Columns)
		for i := range d.Columns {
			pr := &d.Columns[i].Protection
			pr.Auth = slices.Clone(pr.Auth)
			if pr.Mask != "" && pr.MaskScope == "" {
				// As GraphQL's unmask:<Type>.<field>.
				pr.MaskScope = "unmask:" + d.Name + "." + d.Columns[i].Name
			}
		}
		out = append(out, d)
	}
	return out, errs
}

// checkProtection checks a declared or derived protection of a column of
// type t: a masked value is text whatever it was.
func checkProtection(pr core.Protection, t Type) error {
	for _, s := range pr.Auth {
		if strings.TrimSpace(s) == "" {
			return errors.New("empty auth scope")
		}
	}
	switch {
	case pr.Mask == "" && pr.MaskScope != "":
		return errors.New("a mask scope without a mask")
	case pr.Mask == "":
		return nil
	case !pr.Mask.Valid():
		return fmt.Errorf("mask %q is none of EMAIL, PII, SECRET", pr.Mask)
	case t.Kind != KindText || t.Array:
		return fmt.Errorf("a masked column is text (its masked values are), not %s", t)
	}
	return nil
}

// bind resolves the datasets over a GraphQL type against types, and
// refuses a dataset over a type's view that does not name the type.
func bind(ds []Dataset, types Types) []error {
	var errs []error
	var typeOfView map[string]string
	var views map[string]string
	if types != nil {
		views = types.Views()
		typeOfView = make(map[string]string, len(views))
		for typ, v := range views {
			typeOfView[qualified(v)] = typ
		}
	}
	for i := range ds {
		d := &ds[i]
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("dataset %q: "+format, append([]any{d.Name}, args...)...))
		}
		if d.Type == "" {
			if typ, ok := typeOfView[qualified(d.View)]; ok {
				bad("%s is the view of GraphQL type %s, whose data it would export past the @auth and @mask of its fields: "+
					"declare the dataset over the type (graphql_type = %q) and its fields as columns", d.View, typ, typ)
			}
			continue
		}
		if types == nil {
			bad("reads GraphQL type %s, and no GraphQL schema was given", d.Type)
			continue
		}
		view, ok := views[d.Type]
		if !ok {
			bad("GraphQL type %s reads from no view (no root query field returns it)", d.Type)
			continue
		}
		if !viewRE.MatchString(view) {
			bad("view %q of GraphQL type %s must be [schema.]name in lower case", view, d.Type)
			continue
		}
		d.View = view
		for j := range d.Columns {
			col := &d.Columns[j]
			field := col.Field
			if field == "" {
				field = camel(col.Name)
			}
			vf, err := types.ViewField(d.Type, strings.Split(field, "."))
			if err != nil {
				bad("column %q: %v", col.Name, err)
				continue
			}
			if err := bindColumn(col, vf); err != nil {
				bad("column %q (field %s.%s): %v", col.Name, d.Type, field, err)
			}
		}
	}
	return errs
}

// bindColumn makes col read vf, with vf's protection and its own.
func bindColumn(col *Column, vf core.ViewField) error {
	if len(vf.Keys) == 0 {
		return errors.New("the field has no JSON path")
	}
	for _, k := range vf.Keys {
		if !jsonKeyRE.MatchString(k) {
			return fmt.Errorf("JSON key %q must be letters, digits, _ or -", k)
		}
	}
	t := col.Type
	switch {
	case t.Kind == KindBytea:
		return errors.New("bytea cannot be read from JSON")
	case vf.List && t.Array && t.Kind == KindJSONB:
		return errors.New("the field is a list: declare jsonb (the list as it is) or an array of a scalar type")
	case vf.List && !t.Array && t.Kind != KindJSONB:
		return fmt.Errorf("the field is a list: declare %s[] or jsonb", t)
	case !vf.List && t.Array:
		return fmt.Errorf("the field is not a list: declare %s", t.Scalar())
	}
	pr := vf.Protection
	if pr.Mask != "" && col.Protection.Mask != "" {
		return fmt.Errorf("the field is masked already (@mask(kind: %s))", pr.Mask)
	}
	if pr.Mask == "" {
		pr.Mask, pr.MaskScope = col.Protection.Mask, col.Protection.MaskScope
	}
	pr.Auth = append(slices.Clone(pr.Auth), col.Protection.Auth...)
	if err := checkProtection(pr, t); err != nil {
		return err
	}
	col.Protection = pr
	col.path = slices.Clone(vf.Keys)
	return nil
}

// qualified names a view with its schema, public by default, so that
// "v_user" and "public.v_user" compare equal.
func qualified(view string) string {
	if strings.Contains(view, ".") {
		return view
	}
	return "public." + view
}

// camel returns a snake_case name in camelCase: created_at is createdAt.
func camel(s string) string {
	var b strings.Builder
	up := false
	for _, r := range s {
		switch {
		case r == '_' && b.Len() > 0:
			up = true
		case up:
			b.WriteRune(unicode.ToUpper(r))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Lookup returns the dataset named name if p may export it, and an *Error
// with CodeNotFound wrapping ErrNotExportable otherwise.
func (c *Catalog) Lookup(p core.Principal, name string) (*Dataset, error) {
	d, ok := c.byName[name]
	if !ok || !d.allows(p) {
		return nil, core.Errorf(core.CodeNotFound, "dataset %q is not exportable", name).WithOp("flight.Lookup").Wrap(ErrNotExportable)
	}
	return d, nil
}

// List returns the datasets p may export, by name.
func (c *Catalog) List(p core.Principal) []*Dataset {
	var out []*Dataset
	for _, n := range c.names {
		if d := c.byName[n]; d.allows(p) {
			out = append(out, d)
		}
	}
	return out
}
