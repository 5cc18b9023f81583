package flight

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/fraise-dev/fraise/core"
)

// Column is one exported column of a dataset.
type Column struct {
	Name string
	Type Type
}

// Dataset is a view declared exportable: the name clients use (a Flight
// path joined with "."), the view it reads, its typed columns and the roles
// that may export it.
type Dataset struct {
	Name    string
	View    string
	Columns []Column
	// Roles that may export the dataset; empty means any principal the
	// policy let through.
	Roles []string
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

// NewCatalog checks the datasets and returns their catalog. Names of views
// and columns are plain lower-case identifiers, so that they can be written
// into SQL quoted but otherwise unchanged.
func NewCatalog(ds []Dataset) (*Catalog, error) {
	c := &Catalog{byName: make(map[string]*Dataset, len(ds))}
	var errs []error
	for i := range ds {
		d := ds[i]
		if !nameRE.MatchString(d.Name) {
			errs = append(errs, fmt.Errorf("dataset %q: name must be up to three dot-separated identifiers", d.Name))
		}
		if _, dup := c.byName[d.Name]; dup {
			errs = append(errs, fmt.Errorf("dataset %q: declared twice", d.Name))
		}
		if !viewRE.MatchString(d.View) {
			errs = append(errs, fmt.Errorf("dataset %q: view %q must be [schema.]name in lower case", d.Name, d.View))
		}
		if len(d.Columns) == 0 {
			errs = append(errs, fmt.Errorf("dataset %q: no columns", d.Name))
		}
		seen := map[string]bool{}
		for _, col := range d.Columns {
			if !identRE.MatchString(col.Name) {
				errs = append(errs, fmt.Errorf("dataset %q: column %q must be a lower-case identifier", d.Name, col.Name))
			}
			if seen[col.Name] {
				errs = append(errs, fmt.Errorf("dataset %q: column %q declared twice", d.Name, col.Name))
			}
			seen[col.Name] = true
			if col.Type.Kind == KindInvalid {
				errs = append(errs, fmt.Errorf("dataset %q: column %q has no type", d.Name, col.Name))
			}
		}
		d.Columns = slices.Clone(d.Columns)
		c.byName[d.Name] = &d
		c.names = append(c.names, d.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Strings(c.names)
	return c, nil
}

// Lookup returns the dataset named name if p may export it, and an *Error
// with CodeNotFound wrapping ErrNotExportable otherwise.
func (c *Catalog) Lookup(p core.Principal, name string) (*Dataset, error) {
	d, ok := c.byName[name]
	if !ok || !d.allows(p) {
		return nil, &core.Error{Code: core.CodeNotFound, Op: "flight.Lookup",
			Message: fmt.Sprintf("dataset %q is not exportable", name), Err: ErrNotExportable}
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
