package observe

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fraise-dev/fraise/core"
)

// MaxColumns bounds how many columns a rule names (PostgreSQL's own limit
// on a table's columns); MaxColumnName how long a name is, in bytes.
const (
	MaxColumns    = 1600
	MaxColumnName = 63
)

// Guard is what protects a column: the schema field that reads it and the
// scope a principal must hold to read it in full.
type Guard struct {
	Field string // Type.field
	Scope string
}

// Protection says which columns of observed tables the GraphQL schema
// protects with @mask or @auth, so that a rule sends them only when its
// author could read them, and a rule that names no columns does not send
// them at all. Schemas bind types to views, not tables, so columns are
// matched to fields by name: a column is guarded by every protected field
// whose name, or a key of whose @field path, is the column's name once
// case, _ and - are set aside (internal_note is internalNote), whatever
// the table; a table is guarded whole by an @auth on a type named like it.
// The nil *Protection protects nothing.
type Protection struct {
	columns map[string][]Guard
	tables  map[string][]Guard
}

// NewProtection returns an empty Protection.
func NewProtection() *Protection {
	return &Protection{columns: map[string][]Guard{}, tables: map[string][]Guard{}}
}

// normalName is how column, field and table names are compared.
func normalName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' {
			return -1
		}
		return r
	}, strings.ToLower(s))
}

// bareTable is table without its schema.
func bareTable(table string) string {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		return table[i+1:]
	}
	return table
}

func addGuard(m map[string][]Guard, name string, g Guard) {
	k := normalName(name)
	if k != "" && !slices.Contains(m[k], g) {
		m[k] = append(m[k], g)
	}
}

// GuardColumn records that columns named name are read by g.Field.
func (p *Protection) GuardColumn(name string, g Guard) { addGuard(p.columns, name, g) }

// GuardTable records that every column of the tables named like name (a
// type's or a view's name: without a schema, a v_ or tv_ prefix, in the
// singular or an English plural) is read by g.Field, a type restricted
// whole.
func (p *Protection) GuardTable(name string, g Guard) {
	n := bareTable(name)
	for _, prefix := range []string{"v_", "tv_"} {
		n = strings.TrimPrefix(n, prefix)
	}
	n = normalName(n)
	names := []string{n, n + "s", n + "es"}
	if strings.HasSuffix(n, "y") {
		names = append(names, strings.TrimSuffix(n, "y")+"ies")
	}
	for _, t := range names {
		addGuard(p.tables, t, g)
	}
}

// Guards returns what protects column of table (schema.table).
func (p *Protection) Guards(table, column string) []Guard {
	if p == nil {
		return nil
	}
	gs := append([]Guard(nil), p.tables[normalName(bareTable(table))]...)
	for _, g := range p.columns[normalName(column)] {
		if !slices.Contains(gs, g) {
			gs = append(gs, g)
		}
	}
	return gs
}

// Protected reports whether column of table needs a scope to be read.
func (p *Protection) Protected(table, column string) bool { return len(p.Guards(table, column)) > 0 }

func (p *Protection) empty() bool { return p == nil || len(p.columns) == 0 && len(p.tables) == 0 }

// Authorize checks that principal pr may have a rule on table capture
// columns: it must hold the scope of every guard of every column. The
// error is a *core.Error with CodeForbidden naming the column, the field
// and the scope.
func (p *Protection) Authorize(pr core.Principal, table string, columns []string) error {
	for _, c := range columns {
		for _, g := range p.Guards(table, c) {
			if !pr.HasScope(g.Scope) {
				return core.Errorf(core.CodeForbidden, "capturing column %q of %s needs scope %s, which protects %s in the schema", c, table, g.Scope, g.Field).WithOp("observe.Authorize")
			}
		}
	}
	return nil
}

// capture returns which columns rule r's events keep: the columns it names;
// when it names none (rules older than column lists), every column the
// schema does not protect. nil keeps every column.
func capture(r core.Rule, p *Protection) func(string) bool {
	if r.Columns != nil {
		set := make(map[string]bool, len(r.Columns))
		for _, c := range r.Columns {
			set[c] = true
		}
		return func(c string) bool { return set[c] }
	}
	if p.empty() {
		return nil
	}
	table := r.Table
	return func(c string) bool { return !p.Protected(table, c) }
}

// captureVars returns vars with only the columns keep keeps, in key,
// before, after and changed; vars itself is shared between rules and left
// as it is.
func captureVars(vars Vars, keep func(string) bool) Vars {
	out := make(Vars, len(vars))
	for k, v := range vars {
		out[k] = v
	}
	for _, k := range []string{"key", "before", "after"} {
		m, _ := vars[k].(map[string]any)
		f := make(map[string]any, len(m))
		for c, v := range m {
			if keep(c) {
				f[c] = v
			}
		}
		out[k] = f
	}
	if ch, ok := vars["changed"].([]string); ok {
		out["changed"] = keptColumns(ch, keep)
	}
	return out
}

// captureEvent returns e with only the columns keep keeps, in its key,
// rows and changed columns: what a job carries to its target.
func captureEvent(e core.ChangeEvent, keep func(string) bool) (core.ChangeEvent, error) {
	var err error
	for _, raw := range []*json.RawMessage{&e.Key, &e.Before, &e.After} {
		if *raw, err = captureObject(*raw, keep); err != nil {
			return e, fmt.Errorf("observe: event %s of %s: %w", e.Pos, e.Table, err)
		}
	}
	if e.Changed != nil {
		e.Changed = keptColumns(e.Changed, keep)
	}
	return e, nil
}

func captureObject(raw json.RawMessage, keep func(string) bool) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return raw, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	for c := range m {
		if !keep(c) {
			delete(m, c)
		}
	}
	return json.Marshal(m)
}

func keptColumns(cols []string, keep func(string) bool) []string {
	out := make([]string, 0, len(cols))
	for _, c := range cols {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// validateColumns checks a rule's column list: names of 1 to MaxColumnName
// bytes, each once, at most MaxColumns of them. nil (no list) is valid.
func validateColumns(cols []string) error {
	const op = "observe.ValidateRule"
	if len(cols) > MaxColumns {
		return core.Errorf(core.CodeInvalid, "a rule captures at most %d columns", MaxColumns).WithOp(op)
	}
	seen := make(map[string]bool, len(cols))
	for i, c := range cols {
		if c == "" || len(c) > MaxColumnName {
			return core.Errorf(core.CodeInvalid, "columns[%d]: a column name has 1 to %d bytes", i, MaxColumnName).WithOp(op)
		}
		if seen[c] {
			return core.Errorf(core.CodeInvalid, "columns[%d]: %q is named twice", i, c).WithOp(op)
		}
		seen[c] = true
	}
	return nil
}

// columns returns the columns template t reads from the key and
// the rows.
func (t *Template) columns() []string {
	var out []string
	for _, p := range t.parts {
		if len(p.path) > 1 && (p.path[0] == "key" || p.path[0] == "before" || p.path[0] == "after") {
			out = append(out, p.path[1])
		}
	}
	return out
}
