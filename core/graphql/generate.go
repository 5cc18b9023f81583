package graphql

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/fraise-dev/fraise/core"
)

// GenerateOptions tune GenerateSDL.
type GenerateOptions struct {
	// DefaultSchema is the schema whose relations and functions are named
	// unqualified (those of others are written schema.name): the first of
	// the core's search path, "public" by default.
	DefaultSchema string
}

// GenerateSDL writes a schema for a database from its catalog, following
// FraiseQL's conventions where the database uses them and reading a plain
// schema's tables and views as their columns otherwise:
//
//   - a view v_<entity> (or the table-backed tv_<entity>, preferred) with
//     an id column is the object type <Entity>, with a list, a by-id and a
//     connection root field; its fields are the keys of the jsonb_build_object
//     its data column is, typed by the columns they read; a key holding
//     another view's data is that view's type, a jsonb_agg of it a list of
//     it, an inline object a type of its own (<Entity><Key>);
//   - keys in snake_case make the schema @keys(case: SNAKE) and the fields
//     camelCase;
//   - without any v_ or tv_ relation, every table and view with an id
//     column is a type, its columns its fields (pk_, fk_ and tenant_id
//     left out);
//   - a function fn_<action>_<entity> returning a composite with succeeded
//     or status is a mutation <action><Entity>, its input read from the
//     keys its body reads of a jsonb argument, or its named arguments; its
//     result a union of <Mutation>Success, carrying the entity, and
//     <Mutation>Error;
//   - COMMENT ON text is the description; a line @omit leaves the object
//     out, @name <Name> renames its type or field.
//
// Directives (@auth, @mask, @field, ...) refine the result by hand, or
// through smart comments (docs/schema.md).
func GenerateSDL(db *core.DatabaseInfo, o GenerateOptions) (string, error) {
	if o.DefaultSchema == "" {
		o.DefaultSchema = "public"
	}
	g := &generator{db: db, o: o, rels: map[string]*core.RelationInfo{}, types: map[string]*genType{}, entities: map[string]*genEntity{}, scalars: map[string]bool{}}
	for i := range db.Relations {
		r := &db.Relations[i]
		g.rels[r.Name] = r
		g.rels[r.Schema+"."+r.Name] = r
	}
	g.collectEntities()
	if err := g.buildTypes(); err != nil {
		return "", err
	}
	g.buildMutations()
	g.dropOmitted()
	return g.write(), nil
}

// dropOmitted removes the types of omitted relations nothing refers to: an
// omitted view another view composes stays, as a type without root fields.
func (g *generator) dropOmitted() {
	used := map[string]bool{}
	for _, t := range g.types {
		for _, f := range t.fields {
			used[strings.Trim(f.typ, "[]!")] = true
		}
	}
	extra := strings.Join(g.extra, "\n")
	for _, name := range g.order {
		e := g.entities[name]
		if !e.omit || used[e.typ] || regexp.MustCompile(`\b`+e.typ+`\b`).MatchString(extra) {
			continue
		}
		delete(g.types, e.typ)
		g.typeList = slices.DeleteFunc(g.typeList, func(n string) bool { return n == e.typ })
	}
}

type generator struct {
	db       *core.DatabaseInfo
	o        GenerateOptions
	rels     map[string]*core.RelationInfo
	entities map[string]*genEntity // entity name (post) -> entity
	order    []string              // entity names in order
	types    map[string]*genType
	typeList []string
	snake    bool
	scalars  map[string]bool
	refine   tagSet // the smart tags of the entity being built
	muts     []*genMutation
	extra    []string // inputs, results and unions, written after Query
}

// genEntity is one exposed (or omitted but composed) object of the database.
type genEntity struct {
	name      string // post
	typ       string // Post
	rel       *core.RelationInfo
	shape     *core.RelationInfo // the view whose definition says the data shape
	omit      bool
	tags      tagSet // smart tags of its relations' comments
	plain     bool   // read as columns
	uuidID    bool
	desc      string
	viewName  string
	defaulted bool // the view is v_<snake(typ)>, no @view needed
}

type genType struct {
	name   string
	desc   string
	view   string // @view name, "" for none
	fields []*genField
}

type genField struct {
	name, typ, desc, path string
	dirs                  string // directives a smart tag adds
}

// shape is what a data key holds.
type shape struct {
	scalar  string // GraphQL scalar, for a scalar
	entity  string // relation whose data it is, for another view's object
	inline  []keyShape
	list    *shape
	notNull bool
}

type keyShape struct {
	key string
	s   *shape
}

// ownObjects are Fraise's own views and functions (fraise migrate puts
// them in public): serve adds their schema itself when observers are on.
var ownObjects = map[string]bool{
	"v_observer_rule": true, "v_quota_usage": true, "v_tenant_quota": true,
	"fn_create_observer_rule": true, "fn_update_observer_rule": true, "fn_delete_observer_rule": true,
	"fn_enable_observer_rule": true, "fn_disable_observer_rule": true,
}

func (g *generator) collectEntities() {
	rels := g.db.Relations[:0:0]
	for _, r := range g.db.Relations {
		if !(r.Schema == "public" && ownObjects[r.Name]) {
			rels = append(rels, r)
		}
	}
	g.db = &core.DatabaseInfo{Relations: rels, Functions: g.db.Functions}
	fraiseql := false
	for _, r := range g.db.Relations {
		if (strings.HasPrefix(r.Name, "v_") || strings.HasPrefix(r.Name, "tv_")) && hasColumn(&r, "id") {
			fraiseql = true
		}
	}
	for i := range g.db.Relations {
		r := &g.db.Relations[i]
		if !hasColumn(r, "id") {
			continue
		}
		var name string
		switch {
		case fraiseql && strings.HasPrefix(r.Name, "v_"):
			name = strings.TrimPrefix(r.Name, "v_")
		case fraiseql && strings.HasPrefix(r.Name, "tv_"):
			name = strings.TrimPrefix(r.Name, "tv_")
		case fraiseql:
			continue
		default:
			name = singular(r.Name)
		}
		if r.Schema != g.o.DefaultSchema {
			name = r.Schema + "_" + name
		}
		e := g.entities[name]
		if e == nil {
			e = &genEntity{name: name, typ: pascal(name)}
			g.entities[name] = e
			g.order = append(g.order, name)
		}
		tags, desc := smartComment(r.Comment)
		if tags.has("omit", "") {
			e.omit = true
		}
		if n := tags.first("name"); n != "" {
			e.typ = n
		}
		if e.tags == nil {
			e.tags = tagSet{}
		}
		for k, v := range tags {
			e.tags[k] = append(e.tags[k], v...)
		}
		if strings.HasPrefix(r.Name, "tv_") || e.rel == nil {
			e.rel = r
		}
		if strings.HasPrefix(r.Name, "v_") || e.shape == nil {
			e.shape = r
		}
		if desc != "" && (e.desc == "" || strings.HasPrefix(r.Name, "v_")) {
			e.desc = desc
		}
	}
	sort.Strings(g.order)
	for _, name := range g.order {
		e := g.entities[name]
		e.plain = !hasColumn(e.rel, "data")
		e.uuidID = columnType(e.rel, "id") == "uuid"
		e.viewName = g.relName(e.rel)
		e.defaulted = e.viewName == "v_"+snake(e.typ)
		if !e.plain {
			for _, ks := range g.dataShape(e.shape) {
				if strings.Contains(ks.key, "_") {
					g.snake = true
				}
			}
		}
	}
}

func (g *generator) relName(r *core.RelationInfo) string {
	if r.Schema == g.o.DefaultSchema {
		return r.Name
	}
	return r.Schema + "." + r.Name
}

// entityOf returns the entity a relation's data is, by the relation's name.
func (g *generator) entityOf(rel string) *genEntity {
	r := g.rels[rel]
	if r == nil {
		return nil
	}
	for _, p := range []string{"v_", "tv_"} {
		if strings.HasPrefix(r.Name, p) {
			name := strings.TrimPrefix(r.Name, p)
			if r.Schema != g.o.DefaultSchema {
				name = r.Schema + "_" + name
			}
			return g.entities[name]
		}
	}
	return nil
}

func (g *generator) buildTypes() error {
	for _, name := range g.order {
		e := g.entities[name]
		t := &genType{name: e.typ, desc: e.desc}
		if !e.defaulted {
			t.view = e.viewName
		}
		if g.types[t.name] != nil {
			return fmt.Errorf("generate: two relations make type %s (rename one with a comment line @name <Type>)", t.name)
		}
		g.types[t.name] = t
		g.typeList = append(g.typeList, t.name)
		if e.plain {
			for _, c := range e.rel.Columns {
				if strings.HasPrefix(c.Name, "pk_") || strings.HasPrefix(c.Name, "fk_") || c.Name == "tenant_id" {
					continue
				}
				tags, desc := smartComment(c.Comment)
				if tags.has("omit", "") {
					continue
				}
				typ := g.scalarType(c.Type)
				if strings.HasSuffix(c.Type, "[]") {
					typ = "[" + g.scalarType(strings.TrimSuffix(c.Type, "[]")) + "!]"
				}
				if c.Name == "id" {
					typ = "ID"
				}
				if c.NotNull || c.Name == "id" {
					typ += "!"
				}
				f := &genField{name: g.fieldName(c.Name), typ: typ, desc: desc}
				if f.name != c.Name {
					f.path = c.Name
				}
				if n := tags.first("name"); n != "" {
					f.name, f.path = n, c.Name
				}
				if d := tags.first("directive"); d != "" {
					f.dirs = d
				}
				t.fields = append(t.fields, f)
			}
			continue
		}
		g.refine = e.tags
		g.objectFields(t, g.dataShape(e.shape), "")
		for _, add := range e.tags["add"] {
			// @add "description" name: Type @directives
			desc, rest := cutDescription(add)
			name, typ, _ := strings.Cut(rest, ":")
			r := parseRefinement(":" + typ)
			t.fields = append(t.fields, &genField{name: strings.TrimSpace(name), typ: r.typ, desc: desc, dirs: r.dirs})
		}
		g.refine = nil
	}
	return nil
}

// objectFields adds the fields of a data shape to t, adding the inline
// objects' types.
func (g *generator) objectFields(t *genType, keys []keyShape, prefix string) {
	for _, ks := range keys {
		f := &genField{name: g.fieldName(ks.key)}
		if g.keyOf(f.name) != ks.key {
			f.path = ks.key
		}
		path := prefix + f.name
		if ks.key == "id" {
			f.typ = "ID!"
		} else {
			f.typ = g.typeOf(t.name, ks.key, ks.s, path)
		}
		for _, v := range g.refine["field"] {
			if p, rest := pathTag(v); p == path || p == prefix+ks.key {
				r := parseRefinement(rest)
				if r.desc != "" {
					f.desc = r.desc
				}
				if r.typ != "" {
					f.typ = r.typ
				}
				f.dirs = strings.TrimSpace(f.dirs + " " + r.dirs)
			}
		}
		t.fields = append(t.fields, f)
	}
}

// typeOf writes the GraphQL type of a shape, adding inline types.
func (g *generator) typeOf(parent, key string, s *shape, path string) string {
	var typ string
	switch {
	case s.list != nil:
		typ = "[" + strings.TrimSuffix(g.typeOf(parent, singular(key), s.list, path), "!") + "!]"
	case s.entity != "":
		e := g.entityOf(s.entity)
		if e == nil {
			typ = g.useScalar("JSON")
		} else {
			typ = e.typ
		}
	case s.inline != nil:
		name := parent + pascal(key)
		var desc string
		for _, v := range g.refine["type"] {
			// @type path Name "description": the inline object's type.
			if p, rest := pathTag(v); p == path {
				n, d, _ := strings.Cut(rest, " ")
				name, desc = n, parseRefinement(d).desc
			}
		}
		for g.types[name] != nil {
			name += "Item"
		}
		t := &genType{name: name, desc: desc}
		g.types[name] = t
		g.typeList = append(g.typeList, name)
		g.objectFields(t, s.inline, path+".")
		typ = name
	default:
		typ = g.useScalar(s.scalar)
	}
	if s.notNull {
		typ += "!"
	}
	return typ
}

func (g *generator) useScalar(name string) string {
	switch name {
	case "String", "Int", "Float", "Boolean", "ID":
	default:
		g.scalars[name] = true
	}
	return name
}

// fieldName is the GraphQL name of a key or column.
func (g *generator) fieldName(key string) string {
	if g.snake || strings.Contains(key, "_") {
		return camel(key)
	}
	return key
}

// keyOf is the key the engine reads for a field name.
func (g *generator) keyOf(field string) string {
	if g.snake {
		return snake(field)
	}
	return field
}

var (
	reAlias   = regexp.MustCompile(`(?i)\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)(?:\s+(?:AS\s+)?([a-z_][a-z0-9_]*))?`)
	reColumn  = regexp.MustCompile(`^([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)$`)
	reNumber  = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	keywords  = map[string]bool{"on": true, "where": true, "join": true, "left": true, "right": true, "inner": true, "full": true, "cross": true, "group": true, "order": true, "limit": true, "union": true, "using": true, "natural": true, "lateral": true}
	reDataEnd = regexp.MustCompile(`\)\s+AS\s+data\b`)
)

// aliases maps the aliases of the FROM and JOIN clauses of sql to their
// relations.
func aliases(sql string, into map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range into {
		out[k] = v
	}
	for _, m := range reAlias.FindAllStringSubmatch(sql, -1) {
		rel, alias := m[1], m[2]
		if alias == "" || keywords[strings.ToLower(alias)] {
			alias = rel
			if i := strings.LastIndex(rel, "."); i >= 0 {
				alias = rel[i+1:]
			}
		}
		out[alias] = rel
	}
	return out
}

// dataShape reads the keys of a view's data column from its definition:
// the jsonb_build_object named data, or another view's data it passes on.
// A table-backed projection (tv_x) has the shape of its view (v_x).
func (g *generator) dataShape(r *core.RelationInfo) []keyShape {
	if r.Kind == "table" && strings.HasPrefix(r.Name, "tv_") {
		if v := g.rels["v_"+strings.TrimPrefix(r.Name, "tv_")]; v != nil && v.Schema == r.Schema {
			r = v
		}
	}
	def := r.Definition
	if def == "" {
		return nil
	}
	loc := reDataEnd.FindStringIndex(def)
	if loc == nil {
		return nil
	}
	end := loc[0]
	start := openingParen(def, end)
	if start < 0 {
		return nil
	}
	fn := strings.TrimSpace(def[:start])
	if !strings.HasSuffix(fn, "jsonb_build_object") && !strings.HasSuffix(fn, "json_build_object") {
		return nil
	}
	s := g.classify(def[start-len("jsonb_build_object"):end+1], aliases(def, nil))
	if s == nil {
		return nil
	}
	return s.inline
}

// openingParen returns the index of the ( matching the ) at end.
func openingParen(s string, end int) int {
	depth := 0
	for i := end; i >= 0; i-- {
		switch s[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// splitTop splits s at the commas outside parentheses and quotes.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// call splits "name(args) rest" when s is one call: its name and args.
func call(s string) (name, args string, ok bool) {
	i := strings.IndexByte(s, '(')
	if i <= 0 || !strings.HasSuffix(s, ")") || openingParen(s, len(s)-1) != i {
		return "", "", false
	}
	name = strings.TrimSpace(s[:i])
	for _, c := range name {
		if !(c == '_' || c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return "", "", false
		}
	}
	return strings.ToLower(name), s[i+1 : len(s)-1], true
}

// topIndex returns the index of word in s outside parentheses and quotes.
func topIndex(s, word string) int {
	depth := 0
	quote := byte(0)
	for i := 0; i+len(word) <= len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			continue
		case c == '\'' || c == '"':
			quote = c
			continue
		case c == '(':
			depth++
		case c == ')':
			depth--
		}
		if depth == 0 && strings.EqualFold(s[i:i+len(word)], word) {
			return i
		}
	}
	return -1
}

// classify says what a SQL expression of a view's data holds.
func (g *generator) classify(expr string, al map[string]string) *shape {
	e := strings.TrimSpace(expr)
	for strings.HasPrefix(e, "(") && openingParen(e, len(e)-1) == 0 {
		e = strings.TrimSpace(e[1 : len(e)-1])
	}
	if i := strings.LastIndex(e, "::"); i > 0 && topIndex(e, "::") >= 0 && !strings.ContainsAny(e[i+2:], "()'") {
		t := strings.TrimSpace(e[i+2:])
		inner := g.classify(e[:i], al)
		switch t {
		case "jsonb", "json":
			return inner
		}
		return &shape{scalar: g.scalarType(t), notNull: inner != nil && inner.notNull}
	}
	if strings.HasPrefix(strings.ToUpper(e), "SELECT ") {
		body := e[len("SELECT "):]
		from := topIndex(body, " FROM ")
		if from < 0 {
			return g.classify(body, al)
		}
		local := aliases(body[from:], al)
		item := strings.TrimSpace(body[:from])
		if as := topIndex(item, " AS "); as > 0 {
			item = item[:as]
		}
		return g.classify(item, local)
	}
	if strings.HasPrefix(strings.ToUpper(e), "CASE ") {
		if i := topIndex(e, " THEN "); i > 0 {
			rest := e[i+len(" THEN "):]
			for _, w := range []string{" WHEN ", " ELSE ", " END"} {
				if j := topIndex(rest, w); j >= 0 {
					rest = rest[:j]
				}
			}
			s := g.classify(rest, al)
			if s != nil {
				s.notNull = false
			}
			return s
		}
		return &shape{scalar: "JSON"}
	}
	if name, args, ok := call(e); ok {
		parts := splitTop(args)
		switch name {
		case "jsonb_build_object", "json_build_object":
			s := &shape{inline: []keyShape{}, notNull: true}
			for i := 0; i+1 < len(parts); i += 2 {
				k := strings.TrimSpace(parts[i])
				if ci := strings.Index(k, "::"); ci > 0 {
					k = k[:ci]
				}
				if len(k) < 2 || k[0] != '\'' || k[len(k)-1] != '\'' {
					continue
				}
				v := g.classify(parts[i+1], al)
				if v == nil {
					v = &shape{scalar: "JSON"}
				}
				s.inline = append(s.inline, keyShape{key: k[1 : len(k)-1], s: v})
			}
			return s
		case "coalesce":
			s := g.classify(parts[0], al)
			if s != nil && len(parts) > 1 {
				cp := *s
				cp.notNull = true
				if s.scalar == "JSON" && s.list == nil {
					if d := g.classify(parts[1], al); d != nil && d.scalar != "JSON" {
						cp.scalar = d.scalar
					}
				}
				return &cp
			}
			return s
		case "to_jsonb", "to_json":
			return g.classify(parts[0], al)
		case "jsonb_agg", "json_agg":
			arg := parts[0]
			if i := topIndex(arg, " ORDER BY "); i > 0 {
				arg = arg[:i]
			}
			el := g.classify(arg, al)
			if el == nil {
				el = &shape{scalar: "JSON"}
			}
			el.notNull = el.scalar == "" || el.notNull
			return &shape{list: el}
		case "count":
			return &shape{scalar: "Int", notNull: true}
		case "array_length", "cardinality", "char_length", "length":
			return &shape{scalar: "Int"}
		}
		return &shape{scalar: "JSON"}
	}
	if m := reColumn.FindStringSubmatch(e); m != nil {
		rel := g.rels[al[m[1]]]
		if rel == nil {
			return &shape{scalar: "JSON"}
		}
		if m[2] == "data" && g.entityOf(al[m[1]]) != nil {
			return &shape{entity: al[m[1]]}
		}
		for _, c := range rel.Columns {
			if c.Name == m[2] {
				if strings.HasSuffix(c.Type, "[]") {
					return &shape{list: &shape{scalar: g.scalarType(strings.TrimSuffix(c.Type, "[]")), notNull: true}, notNull: c.NotNull}
				}
				return &shape{scalar: g.scalarType(c.Type), notNull: c.NotNull}
			}
		}
		return &shape{scalar: "JSON"}
	}
	if reNumber.MatchString(e) {
		if strings.Contains(e, ".") {
			return &shape{scalar: "Float", notNull: true}
		}
		return &shape{scalar: "Int", notNull: true}
	}
	if strings.HasPrefix(e, "'") {
		return &shape{scalar: "String", notNull: true}
	}
	return &shape{scalar: "JSON"}
}

// scalarType is the GraphQL scalar of a PostgreSQL type.
func (g *generator) scalarType(t string) string {
	t = strings.TrimSpace(t)
	if i := strings.IndexByte(t, '('); i > 0 {
		t = strings.TrimSpace(t[:i]) + strings.TrimSpace(t[strings.IndexByte(t, ')')+1:])
	}
	switch t {
	case "uuid":
		return "ID"
	case "smallint", "integer", "bigint", "int", "int2", "int4", "int8":
		return "Int"
	case "numeric", "real", "double precision", "float4", "float8", "decimal":
		return "Float"
	case "boolean", "bool":
		return "Boolean"
	case "json", "jsonb":
		return g.useScalar("JSON")
	case "inet":
		return g.useScalar("IPAddress")
	case "cidr":
		return g.useScalar("CIDR")
	case "ltree":
		return g.useScalar("LTree")
	case "vector":
		return g.useScalar("Vector")
	}
	return "String"
}

// genMutation is one mutation field.
type genMutation struct {
	field, pascal, fn, desc string
	args                    []string // "name: Type"
	result                  string
}

var reInputKey = regexp.MustCompile(`(?:\(\s*)?\b([a-z_][a-z0-9_]*)\s*->>?\s*'([a-zA-Z0-9_]+)'(?:\s*\))?(?:\s*::\s*([a-z][a-z0-9_ ]*))?`)

func (g *generator) buildMutations() {
	for _, f := range g.db.Functions {
		if !strings.HasPrefix(f.Name, "fn_") || f.Schema == "public" && ownObjects[f.Name] {
			continue
		}
		tags, desc := smartComment(f.Comment)
		if tags.has("omit", "") {
			continue
		}
		cols := map[string]bool{}
		for _, c := range f.Result {
			cols[c.Name] = true
		}
		if !cols["succeeded"] && !cols["status"] {
			continue
		}
		action := strings.TrimPrefix(f.Name, "fn_")
		m := &genMutation{field: camel(action), pascal: pascal(action), desc: desc}
		if n := tags.first("name"); n != "" {
			m.field, m.pascal = n, strings.ToUpper(n[:1])+n[1:]
		}
		if f.Schema != g.o.DefaultSchema || m.field != camel(snake(m.field)) || "fn_"+snake(m.field) != f.Name {
			m.fn = f.Schema + "." + f.Name
			if f.Schema == g.o.DefaultSchema {
				m.fn = f.Name
			}
		}
		if len(f.Args) == 1 && f.Args[0] == "jsonb" {
			name := "input"
			if len(f.ArgNames) == 1 && f.ArgNames[0] != "" {
				name = f.ArgNames[0]
			}
			// Each key the body reads of the argument: a cast says its type,
			// -> (not ->>) that it is JSON; @input name: Type overrides.
			var fields []string
			types := map[string]string{}
			for _, mm := range reInputKey.FindAllStringSubmatch(f.Source, -1) {
				if mm[1] != name {
					continue
				}
				field := g.fieldName(mm[2])
				typ := "String"
				switch {
				case mm[3] != "":
					typ = g.scalarType(mm[3])
				case strings.Contains(mm[0], "->'"):
					typ = "JSON"
				}
				if old, ok := types[field]; ok {
					if old == "String" && typ != "String" {
						types[field] = typ
					}
					continue
				}
				types[field] = typ
				fields = append(fields, field)
			}
			for _, v := range tags["input"] {
				field, typ, _ := strings.Cut(v, ":")
				field = strings.TrimSpace(field)
				if _, ok := types[field]; !ok {
					fields = append(fields, field)
				}
				types[field] = strings.TrimSpace(typ)
			}
			for i, field := range fields {
				if types[field] == "JSON" {
					g.useScalar("JSON")
				}
				fields[i] = field + ": " + types[field]
			}
			if len(fields) == 0 {
				m.args = []string{"input: " + g.useScalar("JSON") + "!"}
			} else {
				m.args = []string{"input: " + m.pascal + "Input!"}
				g.extra = append(g.extra, fmt.Sprintf("input %sInput {\n  %s\n}", m.pascal, strings.Join(fields, "\n  ")))
			}
		} else {
			for i, a := range f.Args {
				name := ""
				if i < len(f.ArgNames) {
					name = f.ArgNames[i]
				}
				if name == "" {
					m.args = nil
					break
				}
				key := argKey(name)
				if key == "tenant_id" {
					continue
				}
				typ := g.scalarType(a)
				if strings.HasSuffix(a, "[]") {
					typ = "[" + g.scalarType(strings.TrimSuffix(a, "[]")) + "!]"
				}
				m.args = append(m.args, camel(key)+": "+typ)
			}
		}
		// The entity: the longest suffix of the action that names one.
		entity, entityField := g.useScalar("JSON"), "entity"
		parts := strings.Split(action, "_")
		for i := 1; i < len(parts); i++ {
			if e := g.entities[strings.Join(parts[i:], "_")]; e != nil {
				entity, entityField = e.typ, camel(strings.Join(parts[i:], "_"))
				break
			}
		}
		var succ, fail string
		switch {
		case cols["succeeded"] && cols["state_changed"]:
			succ = fmt.Sprintf("message: String\n  statusDetail: String\n  httpStatus: Int\n  stateChanged: Boolean\n  %s: %s\n  updatedFields: [String!]\n  cascade: %s", entityField, entity, g.useScalar("JSON"))
			fail = fmt.Sprintf("errorClass: String!\n  message: String\n  statusDetail: String\n  httpStatus: Int\n  errorDetail: %s", g.useScalar("JSON"))
		case cols["succeeded"]:
			// fraise.mutation_result: a success has a status and the entity.
			succ = fmt.Sprintf("status: String!\n  %s: %s!", entityField, entity)
			fail = "status: String!\n  errorClass: String!\n  message: String"
		default:
			succ = fmt.Sprintf("status: String!\n  message: String\n  %s: %s\n  updatedFields: [String!]\n  cascade: %s", entityField, entity, g.useScalar("JSON"))
			fail = fmt.Sprintf("status: String!\n  errorClass: String!\n  message: String\n  metadata: %s", g.useScalar("JSON"))
		}
		succDesc, failDesc := m.field+" succeeded.", m.field+" failed; errorClass says why."
		if d, _ := cutDescription(tags.first("success")); d != "" {
			succDesc = d
		}
		if d, _ := cutDescription(tags.first("error")); d != "" {
			failDesc = d
		}
		var sb, fb strings.Builder
		writeDesc(&sb, "", succDesc)
		writeDesc(&fb, "", failDesc)
		g.extra = append(g.extra,
			fmt.Sprintf("%stype %sSuccess {\n  %s\n}", sb.String(), m.pascal, succ),
			fmt.Sprintf("%stype %sError {\n  %s\n}", fb.String(), m.pascal, fail),
			fmt.Sprintf("union %[1]sResult = %[1]sSuccess | %[1]sError", m.pascal))
		m.result = m.pascal + "Result!"
		g.muts = append(g.muts, m)
	}
}

func (g *generator) write() string {
	var b strings.Builder
	b.WriteString("# Generated by fraise schema generate from the database's catalog.\n")
	if g.snake {
		b.WriteString("extend schema @keys(case: SNAKE)\n")
	}
	var scalars []string
	for s := range g.scalars {
		scalars = append(scalars, s)
	}
	sort.Strings(scalars)
	// A scalar a smart tag replaced everywhere is not declared.
	var refs strings.Builder
	for _, t := range g.types {
		for _, f := range t.fields {
			refs.WriteString(" " + f.typ)
		}
	}
	refs.WriteString(strings.Join(g.extra, " "))
	for _, m := range g.muts {
		refs.WriteString(" " + strings.Join(m.args, " "))
	}
	scalars = slices.DeleteFunc(scalars, func(s string) bool {
		return !regexp.MustCompile(`[:\[]\s*` + s + `\b`).MatchString(refs.String())
	})
	for _, s := range scalars {
		fmt.Fprintf(&b, "\nscalar %s\n", s)
	}
	for _, name := range g.typeList {
		t := g.types[name]
		b.WriteString("\n")
		writeDesc(&b, "", t.desc)
		b.WriteString("type " + t.name)
		if t.view != "" {
			fmt.Fprintf(&b, " @view(name: %q)", t.view)
		}
		b.WriteString(" {\n")
		for _, f := range t.fields {
			writeDesc(&b, "  ", f.desc)
			fmt.Fprintf(&b, "  %s: %s", f.name, f.typ)
			if f.path != "" {
				fmt.Fprintf(&b, " @field(path: %q)", f.path)
			}
			if f.dirs != "" {
				b.WriteString(" " + f.dirs)
			}
			b.WriteString("\n")
		}
		b.WriteString("}\n")
	}
	b.WriteString("\ntype Query {\n")
	for _, name := range g.order {
		e := g.entities[name]
		if e.omit {
			continue
		}
		list := lowerFirst(plural(e.typ))
		if !e.tags.has("omit", "list") {
			fmt.Fprintf(&b, "  %s: [%s!]!\n", list, e.typ)
		}
		if e.uuidID && !e.tags.has("omit", "one") {
			fmt.Fprintf(&b, "  %s(id: ID!): %s\n", lowerFirst(e.typ), e.typ)
		}
		if !e.tags.has("omit", "connection") {
			fmt.Fprintf(&b, "  %sConnection: %sConnection!\n", list, e.typ)
		}
	}
	b.WriteString("}\n")
	for _, x := range g.extra {
		b.WriteString("\n" + x + "\n")
	}
	if len(g.muts) > 0 {
		b.WriteString("\ntype Mutation {\n")
		for _, m := range g.muts {
			writeDesc(&b, "  ", m.desc)
			fmt.Fprintf(&b, "  %s", m.field)
			if len(m.args) > 0 {
				b.WriteString("(" + strings.Join(m.args, ", ") + ")")
			}
			b.WriteString(": " + m.result)
			if m.fn != "" {
				fmt.Fprintf(&b, " @function(name: %q)", m.fn)
			}
			b.WriteString("\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func writeDesc(b *strings.Builder, indent, d string) {
	if d == "" {
		return
	}
	if !strings.Contains(d, "\n") && !strings.Contains(d, `"`) && !strings.Contains(d, `\`) {
		fmt.Fprintf(b, "%s\"%s\"\n", indent, d)
		return
	}
	fmt.Fprintf(b, "%s\"\"\"\n%s%s\n%s\"\"\"\n", indent, indent, strings.ReplaceAll(strings.ReplaceAll(d, `"""`, `\"""`), "\n", "\n"+indent), indent)
}

// tagSet are the smart tags of a comment: @name value lines, by name, in
// order.
type tagSet map[string][]string

func (t tagSet) first(name string) string {
	if v := t[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (t tagSet) has(name, value string) bool {
	for _, v := range t[name] {
		if v == value {
			return true
		}
	}
	return false
}

// smartComment splits a COMMENT ON text into its tags (lines @tag value)
// and the description (the other lines).
func smartComment(c string) (tagSet, string) {
	tags := tagSet{}
	var desc []string
	for _, line := range strings.Split(c, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "@") {
			name, val, _ := strings.Cut(t[1:], " ")
			tags[name] = append(tags[name], strings.TrimSpace(val))
			continue
		}
		desc = append(desc, line)
	}
	return tags, strings.TrimSpace(strings.Join(desc, "\n"))
}

// fieldRefinement is what a smart tag says of a field: its description, a
// type replacing the generated one, directives to add.
type fieldRefinement struct {
	desc, typ, dirs string
}

// parseRefinement reads `"description" : Type @directives`, each part
// optional.
func parseRefinement(s string) fieldRefinement {
	var r fieldRefinement
	r.desc, s = cutDescription(s)
	if strings.HasPrefix(s, ":") {
		s = s[1:]
		if i := strings.Index(s, "@"); i >= 0 {
			r.typ, s = strings.TrimSpace(s[:i]), s[i:]
		} else {
			r.typ, s = strings.TrimSpace(s), ""
		}
	}
	r.dirs = strings.TrimSpace(s)
	return r
}

// cutDescription splits a leading "quoted description" off s.
func cutDescription(s string) (desc, rest string) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, `"`) {
		return "", s
	}
	end := 1
	for end < len(s) && (s[end] != '"' || s[end-1] == '\\') {
		end++
	}
	return strings.ReplaceAll(s[1:min(end, len(s))], `\"`, `"`), strings.TrimSpace(s[min(end+1, len(s)):])
}

// pathTag splits a tag's value into its key path and the rest.
func pathTag(v string) (path, rest string) {
	path, rest, _ = strings.Cut(strings.TrimSpace(v), " ")
	return path, strings.TrimSpace(rest)
}

func hasColumn(r *core.RelationInfo, name string) bool { return columnType(r, name) != "" }

func columnType(r *core.RelationInfo, name string) string {
	for _, c := range r.Columns {
		if c.Name == name {
			return c.Type
		}
	}
	return ""
}

// camel converts snake_case to camelCase: created_at -> createdAt.
func camel(s string) string {
	parts := strings.Split(s, "_")
	var b strings.Builder
	for i, p := range parts {
		if p == "" {
			continue
		}
		if i == 0 || b.Len() == 0 {
			b.WriteString(p)
			continue
		}
		b.WriteString(strings.ToUpper(p[:1]) + p[1:])
	}
	return b.String()
}

// pascal converts snake_case to PascalCase: order_item -> OrderItem.
func pascal(s string) string {
	c := camel(s)
	if c == "" {
		return c
	}
	return strings.ToUpper(c[:1]) + c[1:]
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// plural is English's regular plural, enough for type names.
func plural(s string) string {
	switch {
	case strings.HasSuffix(s, "y") && len(s) > 1 && !strings.ContainsAny(s[len(s)-2:len(s)-1], "aeiou"):
		return s[:len(s)-1] + "ies"
	case strings.HasSuffix(s, "s") || strings.HasSuffix(s, "x") || strings.HasSuffix(s, "ch") || strings.HasSuffix(s, "sh"):
		return s + "es"
	}
	return s + "s"
}

// singular undoes plural, for table names (users -> user).
func singular(s string) string {
	switch {
	case strings.HasSuffix(s, "ies") && len(s) > 3:
		return s[:len(s)-3] + "y"
	case strings.HasSuffix(s, "sses") || strings.HasSuffix(s, "xes") || strings.HasSuffix(s, "ches") || strings.HasSuffix(s, "shes"):
		return s[:len(s)-2]
	case strings.HasSuffix(s, "ss") || strings.HasSuffix(s, "us"):
		return s
	case strings.HasSuffix(s, "s") && len(s) > 1:
		return s[:len(s)-1]
	}
	return s
}
