// Package graphql is the core's GraphQL engine: a schema written in SDL
// whose types read from PostgreSQL views of (id, tenant_id, data jsonb) and
// whose mutations call PostgreSQL functions, and an executor that compiles
// each root field of a request to one parameterized SQL statement building
// its JSON inside PostgreSQL, all in one tenant-scoped transaction. It
// knows the database only through the core.TenantDB and core.Catalog ports.
package graphql

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/fraise-dev/fraise/core"
)

// fraiseDirectives declares Fraise's schema directives, so schemas need not.
const fraiseDirectives = `
"Binds an object type returned by a root query field to the view (or table) it reads from; default v_<snake_case of the type name>."
directive @view(name: String!) on OBJECT
"Reads a field from another key of its object's JSON, or a nested path (a.b); default the field's name."
directive @field(path: String!) on FIELD_DEFINITION
"Binds a mutation field to the PostgreSQL function it calls; default fn_<snake_case of the field name>."
directive @function(name: String!) on FIELD_DEFINITION
"Marks a root query field whose value Go code computes (graphql.Options.Hooks), bound to no view."
directive @resolver on FIELD_DEFINITION
"Only principals granted scope may read the field, or any field of the type."
directive @auth(scope: String!) on OBJECT | FIELD_DEFINITION
"Masks the field's value unless the principal holds scope (default unmask:<Type>.<field>)."
directive @mask(kind: MaskKind!, scope: String) on FIELD_DEFINITION
"The case of the JSON keys a type's fields read (on the schema: every type's default): CAMEL reads createdAt as createdAt, SNAKE as created_at."
directive @keys(case: KeyCase!) on SCHEMA | OBJECT
"How field names map to JSON keys."
enum KeyCase { CAMEL SNAKE }
"How @mask hides a value: EMAIL keeps the first letter and the domain, PII the first letter, SECRET nothing."
enum MaskKind { EMAIL PII SECRET }
"Sort direction of an orderBy key, with where SQL NULLs go."
enum OrderDirection { ASC DESC ASC_NULLS_FIRST ASC_NULLS_LAST DESC_NULLS_FIRST DESC_NULLS_LAST }
input IDFilter { eq: ID neq: ID in: [ID!] nin: [ID!] isNull: Boolean isnull: Boolean }
input StringFilter { eq: String neq: String gt: String gte: String lt: String lte: String in: [String!] nin: [String!] like: String ilike: String contains: String isNull: Boolean isnull: Boolean
  icontains: String startswith: String istartswith: String endswith: String iendswith: String nlike: String nilike: String
  regex: String iregex: String nregex: String niregex: String
  matches: String plain_query: String phrase_query: String websearch_query: String }
input IntFilter { eq: Int neq: Int gt: Int gte: Int lt: Int lte: Int in: [Int!] nin: [Int!] isNull: Boolean isnull: Boolean }
input FloatFilter { eq: Float neq: Float gt: Float gte: Float lt: Float lte: Float in: [Float!] nin: [Float!] isNull: Boolean isnull: Boolean }
input BooleanFilter { eq: Boolean neq: Boolean isNull: Boolean isnull: Boolean }
input StringListFilter { contains: String containsAll: [String!] isEmpty: Boolean isNull: Boolean isnull: Boolean array_contains: [String!] array_contained_by: [String!] array_overlaps: [String!] len_eq: Int len_neq: Int len_gt: Int len_gte: Int len_lt: Int len_lte: Int }
input IDListFilter { contains: ID containsAll: [ID!] isEmpty: Boolean isNull: Boolean isnull: Boolean array_contains: [ID!] array_contained_by: [ID!] array_overlaps: [ID!] len_eq: Int len_neq: Int len_gt: Int len_gte: Int len_lt: Int len_lte: Int }
input IntListFilter { contains: Int containsAll: [Int!] isEmpty: Boolean isNull: Boolean isnull: Boolean array_contains: [Int!] array_contained_by: [Int!] array_overlaps: [Int!] len_eq: Int len_neq: Int len_gt: Int len_gte: Int len_lt: Int len_lte: Int }
input FloatListFilter { contains: Float containsAll: [Float!] isEmpty: Boolean isNull: Boolean isnull: Boolean array_contains: [Float!] array_contained_by: [Float!] array_overlaps: [Float!] len_eq: Int len_neq: Int len_gt: Int len_gte: Int len_lt: Int len_lte: Int }
"Filter on an IP address or network (scalars IPAddress, Inet, CIDR): compared as inet."
input NetworkFilter { eq: String neq: String in: [String!] nin: [String!] isnull: Boolean isNull: Boolean
  in_subnet: String contains_subnet: String contains_ip: String overlaps: String
  is_ipv4: Boolean is_ipv6: Boolean is_private: Boolean is_loopback: Boolean is_multicast: Boolean is_link_local: Boolean is_documentation: Boolean is_carrier_grade: Boolean }
"Filter on a label path (scalar LTree): compared as ltree (the ltree extension)."
input LTreeFilter { eq: String neq: String in: [String!] nin: [String!] isnull: Boolean isNull: Boolean
  ancestor_of: String descendant_of: String matches_lquery: String matches_ltxtquery: String matches_any_lquery: [String!]
  depth_eq: Int depth_neq: Int depth_gt: Int depth_gte: Int depth_lt: Int depth_lte: Int }
"A query vector and the largest distance (for inner_product, the smallest inner product) a row may have."
input VectorDistance { vector: [Float!]! threshold: Float! }
"A query bit string (e.g. 1010) and the largest distance a row may have."
input BitDistance { bits: String! threshold: Float! }
"Filter on an embedding (scalar Vector): pgvector's distances."
input VectorFilter { isnull: Boolean isNull: Boolean cosine_distance: VectorDistance l2_distance: VectorDistance l1_distance: VectorDistance inner_product: VectorDistance
  hamming_distance: BitDistance jaccard_distance: BitDistance }
`

// pageInfoSDL is Relay's PageInfo, added when a schema uses connections and
// does not declare it.
const pageInfoSDL = `
"Relay pagination state of a connection."
type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }
`

// Schema is a parsed SDL schema that Fraise can execute.
type Schema struct {
	ast       *ast.Schema
	views     map[string]string // root-bound object type -> view
	functions map[string]string // mutation field -> function
	fields    map[string]map[string]*fieldInfo
	// connections maps a connection type (PostConnection) to its node type.
	connections map[string]string
	// results are the object types mutation fields return, read from the
	// function's mutation result rather than a view.
	results map[string]bool
	// resolved are the root query fields declared @resolver.
	resolved map[string]bool
	// snakeInput is true when the schema's keys are SNAKE: a mutation's
	// input reaches its function with snake_case keys, as the views' data.
	snakeInput bool
	// sources and calls are what Check learned from the catalog: the
	// columns of each view (native columns serve filters, and a relation
	// without a data column is read as its columns) and each mutation
	// function's signature. A schema never checked assumes (id, data)
	// views and fn(input jsonb) functions.
	sources map[string]*source
	calls   map[string]*core.FunctionInfo
}

// source is what the catalog says of the relation a root-bound type reads.
type source struct {
	columns map[string]string // column -> type, as format_type writes it
	data    bool              // has a data jsonb column
}

// resultColumns are the columns of the mutation results Fraise reads:
// its own fraise.mutation_result, FraiseQL's app.mutation_response (13
// columns) and the older 8-column mutation_response. A result type's
// field of one of these names (in snake_case) reads the column.
var resultColumns = map[string]bool{
	"succeeded": true, "state_changed": true, "error_class": true, "status_detail": true, "http_status": true,
	"message": true, "entity_id": true, "entity_type": true, "entity": true, "updated_fields": true,
	"cascade": true, "error_detail": true, "metadata": true, "status": true,
}

// fieldInfo is what the compiler needs of one field of an object type.
type fieldInfo struct {
	keys      []string   // JSON keys from the object's JSON to the value
	alt       [][]string // further paths tried in order when keys holds null
	auth      string     // scope required to read it, "" for none
	mask      string     // EMAIL, PII, SECRET or ""
	maskScope string     // scope that lifts the mask
}

// path returns the jsonb path expression from base.
func (f *fieldInfo) path(base string) string {
	if len(f.alt) > 0 {
		parts := []string{jsonPath(base, f.keys)}
		for _, a := range f.alt {
			parts = append(parts, jsonPath(base, a))
		}
		return "coalesce(" + strings.Join(parts, ", ") + ")"
	}
	return jsonPath(base, f.keys)
}

func jsonPath(base string, keys []string) string {
	var b strings.Builder
	b.WriteString(base)
	for _, k := range keys {
		b.WriteString("->'" + k + "'")
	}
	return b.String()
}

// textPath returns the text value at the path from base (->> on the last key).
func (f *fieldInfo) textPath(base string) string {
	if len(f.alt) > 0 {
		return "(" + f.path(base) + " #>> '{}')"
	}
	var b strings.Builder
	b.WriteString("(" + base)
	for i, k := range f.keys {
		if i == len(f.keys)-1 {
			b.WriteString("->>'" + k + "')")
		} else {
			b.WriteString("->'" + k + "'")
		}
	}
	return b.String()
}

// ParseSchema parses sdl and checks that Fraise can execute it. Root query
// fields return an object type bound to a view (one by id: ID!, a list, or
// a <Type>Connection); list and connection fields gain where, orderBy and
// pagination arguments with generated input types (<Type>Where,
// <Type>OrderBy). Mutation fields call a function and return an object
// type, or a union of a success and an <...>Error type, read from its
// result. Every problem is reported, each naming the type and field.
func ParseSchema(sdl string) (*Schema, error) {
	doc, err := parser.ParseSchema(&ast.Source{Name: "schema.graphql", Input: sdl})
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	extra := connectionSDL(doc)
	base := []*ast.Source{
		{Name: "fraise-directives.graphql", Input: fraiseDirectives, BuiltIn: true},
		{Name: "schema.graphql", Input: sdl},
	}
	if extra != "" {
		base = append(base, &ast.Source{Name: "fraise-connections.graphql", Input: extra, BuiltIn: true})
	}
	first, err := gqlparser.LoadSchema(base...)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	if first.Query == nil {
		return nil, errors.New("schema: no Query type")
	}
	gen := filterSDL(first)
	s, err := gqlparser.LoadSchema(append(base, &ast.Source{Name: "fraise-filters.graphql", Input: gen, BuiltIn: true})...)
	if err != nil {
		return nil, fmt.Errorf("schema: generated filters: %w", err)
	}
	out := &Schema{ast: s, views: map[string]string{}, functions: map[string]string{},
		fields: map[string]map[string]*fieldInfo{}, connections: map[string]string{}, results: map[string]bool{}, resolved: map[string]bool{},
		sources: map[string]*source{}, calls: map[string]*core.FunctionInfo{}}
	schemaSnake := keyCase(s.SchemaDirectives) == "SNAKE"
	out.snakeInput = schemaSnake
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf("schema: "+format, args...)) }
	if s.Subscription != nil {
		fail("type %s: subscriptions are not supported", s.Subscription.Name)
	}
	var returned []string // object types mutation fields return
	if s.Mutation != nil {
		for _, f := range s.Mutation.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			if f.Directives.ForName("resolver") != nil {
				fail("field %s.%s: @resolver applies to query fields; a mutation calls a function (check it in Go with a Hook)", s.Mutation.Name, f.Name)
			}
			fn := "fn_" + snake(f.Name)
			if d := f.Directives.ForName("function"); d != nil {
				fn = d.Arguments.ForName("name").Value.Raw
			}
			if !isRelation(fn) {
				fail("field %s.%s: function name %q is not a plain lower-case SQL name", s.Mutation.Name, f.Name, fn)
			}
			out.functions[f.Name] = fn
			t := s.Types[f.Type.Name()]
			switch {
			case f.Type.Elem != nil || t == nil:
				fail("field %s.%s: a mutation returns an object type or a union, not %s", s.Mutation.Name, f.Name, f.Type)
			case t.Kind == ast.Object:
				returned = append(returned, t.Name)
			case t.Kind == ast.Union:
				if _, _, err := unionBranches(s, t); err != nil {
					fail("field %s.%s: %v", s.Mutation.Name, f.Name, err)
				}
				returned = append(returned, t.Types...)
			default:
				fail("field %s.%s: a mutation returns an object type or a union, not %s", s.Mutation.Name, f.Name, f.Type)
			}
		}
	}
	for _, f := range s.Query.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		if f.Directives.ForName("resolver") != nil {
			out.resolved[f.Name] = true
			continue
		}
		if err := out.bindRoot(f); err != nil {
			fail("field %s.%s: %v", s.Query.Name, f.Name, err)
		}
	}
	// A type a mutation returns is read from the function's result row,
	// unless a view reads it too: then it is the entity, in its view's
	// shape (the row's entity column).
	for _, name := range returned {
		if _, ok := out.views[name]; !ok {
			out.results[name] = true
		}
	}
	for _, name := range sortedTypeNames(s) {
		def := s.Types[name]
		if def.Kind != ast.Object || def == s.Query || def == s.Mutation || def == s.Subscription || strings.HasPrefix(name, "__") {
			continue
		}
		if _, ok := out.connections[name]; ok {
			continue // compiled from its fixed shape, not read from JSON
		}
		fields := map[string]*fieldInfo{}
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			snakeKeys := schemaSnake
			if c := keyCase(def.Directives); c != "" {
				snakeKeys = c == "SNAKE"
			}
			fi, err := newFieldInfo(s, def, f, out.results[name], snakeKeys)
			if err != nil {
				fail("field %s.%s: %v", name, f.Name, err)
				continue
			}
			if err := sliceArguments(s, f); err != nil {
				fail("field %s.%s: %v", name, f.Name, err)
			}
			fields[f.Name] = fi
		}
		out.fields[name] = fields
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// bindRoot binds the object type a root query field returns to its view and
// adds the generated arguments.
func (s *Schema) bindRoot(f *ast.FieldDefinition) error {
	t := f.Type
	conn := false
	if t.Elem == nil {
		if node, ok := connectionNode(s.ast, t.Name()); ok {
			t = ast.NamedType(node, nil)
			s.connections[f.Type.Name()] = node
			conn = true
		}
	} else {
		if t.Elem.Elem != nil {
			return fmt.Errorf("returns %s; a root list must be a list of objects", f.Type)
		}
		t = t.Elem
	}
	def := s.ast.Types[t.Name()]
	if def == nil || def.Kind != ast.Object {
		return fmt.Errorf("returns %s, which is not an object type read from a view", f.Type)
	}
	view := "v_" + snake(def.Name)
	if d := def.Directives.ForName("view"); d != nil {
		view = d.Arguments.ForName("name").Value.Raw
	}
	if !isRelation(view) {
		return fmt.Errorf("type %s: @view(name: %q) is not a plain lower-case SQL name (view or schema.view)", def.Name, view)
	}
	s.views[def.Name] = view
	if f.Type.Elem == nil && !conn {
		a := f.Arguments.ForName("id")
		if a == nil || a.Type.Name() != "ID" || a.Type.Elem != nil {
			return fmt.Errorf("a root field returning one %s needs an argument id of type ID", def.Name)
		}
		if len(f.Arguments) != 1 {
			return fmt.Errorf("a root field returning one %s takes only id", def.Name)
		}
		return nil
	}
	add := func(name string, typ *ast.Type) {
		if f.Arguments.ForName(name) == nil {
			f.Arguments = append(f.Arguments, &ast.ArgumentDefinition{Name: name, Type: typ, Position: f.Position})
		}
	}
	add("where", ast.NamedType(def.Name+"Where", nil))
	add("orderBy", ast.ListType(ast.NonNullNamedType(def.Name+"OrderBy", nil), nil))
	if conn {
		add("first", ast.NamedType("Int", nil))
		add("after", ast.NamedType("String", nil))
		add("last", ast.NamedType("Int", nil))
		add("before", ast.NamedType("String", nil))
	} else {
		add("limit", ast.NamedType("Int", nil))
		add("offset", ast.NamedType("Int", nil))
	}
	known := map[string]string{"where": def.Name + "Where", "orderBy": def.Name + "OrderBy", "first": "Int", "after": "String", "last": "Int", "before": "String", "limit": "Int", "offset": "Int"}
	for _, a := range f.Arguments {
		if want, ok := known[a.Name]; !ok || a.Type.Name() != want {
			return fmt.Errorf("argument %s: %s is not one Fraise binds (where, orderBy, and limit/offset or first/after/last/before)", a.Name, a.Type)
		}
	}
	return nil
}

// sliceArguments gives a nested list of objects the arguments limit and
// offset, which slice the JSON array the view composed; other nested
// fields take no arguments.
func sliceArguments(s *ast.Schema, f *ast.FieldDefinition) error {
	t := s.Types[f.Type.Name()]
	if f.Type.Elem == nil || f.Type.Elem.Elem != nil || t == nil || t.Kind == ast.Scalar || t.Kind == ast.Enum {
		if len(f.Arguments) > 0 {
			return errors.New("only nested lists of objects take arguments (limit and offset)")
		}
		return nil
	}
	for _, name := range []string{"limit", "offset"} {
		if f.Arguments.ForName(name) == nil {
			f.Arguments = append(f.Arguments, &ast.ArgumentDefinition{Name: name, Type: ast.NamedType("Int", nil), Position: f.Position})
		}
	}
	for _, a := range f.Arguments {
		if a.Name != "limit" && a.Name != "offset" || a.Type.Name() != "Int" || a.Type.Elem != nil {
			return fmt.Errorf("argument %s: a nested list takes only limit: Int and offset: Int", a.Name)
		}
	}
	return nil
}

// newFieldInfo reads a field's directives. Fields of mutation result types
// read from the function's result: scalars from the snake_case column of
// the field's name, objects from entity.
func newFieldInfo(s *ast.Schema, def *ast.Definition, f *ast.FieldDefinition, result, snakeKeys bool) (*fieldInfo, error) {
	key := f.Name
	if snakeKeys {
		key = snake(f.Name)
	}
	fi := &fieldInfo{keys: []string{key}}
	if result {
		// A mutation result row: its columns by name, the entity for an
		// object that is no column, and for any other field the key of
		// the structured error (error_detail, or metadata in the older
		// shape), then of the entity.
		col := snake(f.Name)
		t := s.Types[f.Type.Name()]
		switch {
		case resultColumns[col]:
			fi.keys = []string{col}
		case t != nil && t.Kind == ast.Object:
			fi.keys = []string{"entity"}
		default:
			fi.keys = []string{"error_detail", key}
			fi.alt = [][]string{{"metadata", key}, {"entity", key}}
		}
	}
	if d := f.Directives.ForName("field"); d != nil {
		fi.keys = strings.Split(d.Arguments.ForName("path").Value.Raw, ".")
		fi.alt = nil
	}
	for _, k := range fi.keys {
		if !isJSONKey(k) {
			return nil, fmt.Errorf("@field path key %q must be letters, digits, _ or -", k)
		}
	}
	if d := f.Directives.ForName("auth"); d != nil {
		fi.auth = d.Arguments.ForName("scope").Value.Raw
	} else if d := def.Directives.ForName("auth"); d != nil {
		fi.auth = d.Arguments.ForName("scope").Value.Raw
	}
	if d := f.Directives.ForName("mask"); d != nil {
		if t := s.Types[f.Type.Name()]; t == nil || t.Kind != ast.Scalar && t.Kind != ast.Enum || f.Type.Elem != nil {
			return nil, errors.New("@mask applies to scalar fields only")
		}
		fi.mask = d.Arguments.ForName("kind").Value.Raw
		fi.maskScope = "unmask:" + def.Name + "." + f.Name
		if a := d.Arguments.ForName("scope"); a != nil && a.Value != nil && a.Value.Raw != "" {
			fi.maskScope = a.Value.Raw
		}
	}
	return fi, nil
}

// unionBranches returns a mutation result union's success member and its
// error members: one object type whose name does not end in Error, and
// one or more that do (errors as data: a failed function names the one it
// means in entity_type; the first is the default).
func unionBranches(s *ast.Schema, u *ast.Definition) (success string, failures []string, err error) {
	for _, m := range u.Types {
		switch {
		case strings.HasSuffix(m, "Error"):
			failures = append(failures, m)
		case success != "":
			return "", nil, fmt.Errorf("union %s must have one success member and an ...Error type or more, not two success members (%s, %s)", u.Name, success, m)
		default:
			success = m
		}
	}
	if success == "" || len(failures) == 0 {
		return "", nil, fmt.Errorf("union %s must have two members, a success type and an ...Error type", u.Name)
	}
	return success, failures, nil
}

// keyCase returns the case a @keys directive in ds names, or "".
func keyCase(ds ast.DirectiveList) string {
	if d := ds.ForName("keys"); d != nil {
		if a := d.Arguments.ForName("case"); a != nil && a.Value != nil {
			return a.Value.Raw
		}
	}
	return ""
}

// connectionNode returns the node type of a <Node>Connection type.
func connectionNode(s *ast.Schema, name string) (string, bool) {
	def := s.Types[name]
	if def == nil || def.Kind != ast.Object || !strings.HasSuffix(name, "Connection") {
		return "", false
	}
	edges := def.Fields.ForName("edges")
	if edges == nil || edges.Type.Elem == nil {
		return "", false
	}
	edge := s.Types[edges.Type.Name()]
	if edge == nil || edge.Fields.ForName("node") == nil {
		return "", false
	}
	return edge.Fields.ForName("node").Type.Name(), true
}

// connectionSDL generates <Node>Connection and <Node>Edge types (and
// PageInfo) for root fields that return a connection type the SDL does not
// declare.
func connectionSDL(doc *ast.SchemaDocument) string {
	declared := map[string]bool{}
	for _, d := range doc.Definitions {
		declared[d.Name] = true
	}
	queryName := "Query"
	for _, sd := range doc.Schema {
		for _, ot := range sd.OperationTypes {
			if ot.Operation == ast.Query {
				queryName = ot.Type
			}
		}
	}
	var b strings.Builder
	pageInfo := false
	for _, d := range append(append(ast.DefinitionList{}, doc.Definitions...), doc.Extensions...) {
		if d.Name != queryName {
			continue
		}
		for _, f := range d.Fields {
			n := f.Type.Name()
			if f.Type.Elem != nil || !strings.HasSuffix(n, "Connection") || declared[n] || len(n) == len("Connection") {
				continue
			}
			node := strings.TrimSuffix(n, "Connection")
			declared[n] = true
			fmt.Fprintf(&b, "\"A page of %[1]s.\"\ntype %[1]sConnection { edges: [%[1]sEdge!]! pageInfo: PageInfo! totalCount: Int! }\n", node)
			fmt.Fprintf(&b, "\"One %[1]s and its cursor.\"\ntype %[1]sEdge { cursor: String! node: %[1]s! }\n", node)
			pageInfo = true
		}
	}
	if pageInfo && !declared["PageInfo"] {
		b.WriteString(pageInfoSDL)
	}
	return b.String()
}

// filterSDL generates <Type>Where and <Type>OrderBy for every object type
// reachable from a root list or connection field.
func filterSDL(s *ast.Schema) string {
	var b strings.Builder
	done := map[string]bool{}
	var gen func(def *ast.Definition)
	gen = func(def *ast.Definition) {
		if done[def.Name] {
			return
		}
		done[def.Name] = true
		var where, order strings.Builder
		var nested []*ast.Definition
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") || len(f.Arguments) > 0 {
				continue
			}
			t := s.Types[f.Type.Name()]
			if t == nil {
				continue
			}
			if f.Type.Elem != nil {
				// Lists of scalars filter by containment; lists of objects
				// and of lists are not filterable.
				if f.Type.Elem.Elem == nil && (t.Kind == ast.Scalar || t.Kind == ast.Enum) && t.Name != "Boolean" {
					switch sf := scalarFilter(t); sf {
					case "IDFilter", "IntFilter", "FloatFilter", "StringFilter":
						fmt.Fprintf(&where, " %s: %s", f.Name, strings.TrimSuffix(sf, "Filter")+"ListFilter")
					default:
						fmt.Fprintf(&where, " %s: StringListFilter", f.Name)
					}
				}
				continue
			}
			switch t.Kind {
			case ast.Object:
				fmt.Fprintf(&where, " %s: %sWhere", f.Name, t.Name)
				fmt.Fprintf(&order, " %s: %sOrderBy", f.Name, t.Name)
				nested = append(nested, t)
			case ast.Scalar, ast.Enum:
				fmt.Fprintf(&where, " %s: %s", f.Name, scalarFilter(t))
				fmt.Fprintf(&order, " %s: OrderDirection", f.Name)
			}
		}
		fmt.Fprintf(&b, "\"Filter on %[1]s: every given condition must hold.\"\ninput %[1]sWhere { and: [%[1]sWhere!] or: [%[1]sWhere!] not: %[1]sWhere _and: [%[1]sWhere!] _or: [%[1]sWhere!] _not: %[1]sWhere%[2]s }\n", def.Name, where.String())
		if order.Len() == 0 {
			order.WriteString(" id: OrderDirection")
		}
		// FraiseQL's spelling of a sort key, {field: "createdAt", direction: DESC},
		// beside Fraise's {createdAt: DESC}, unless the type has such fields.
		if def.Fields.ForName("field") == nil && def.Fields.ForName("direction") == nil {
			order.WriteString(" field: String direction: OrderDirection")
		}
		fmt.Fprintf(&b, "\"One sort key of %[1]s: give exactly one field.\"\ninput %[1]sOrderBy {%[2]s }\n", def.Name, order.String())
		for _, n := range nested {
			gen(n)
		}
	}
	if t := s.Types["JSON"]; t != nil && t.Kind == ast.Scalar {
		b.WriteString(jsonFilterSDL)
	}
	for _, f := range s.Query.Fields {
		if strings.HasPrefix(f.Name, "__") {
			continue
		}
		name := f.Type.Name()
		if node, ok := connectionNode(s, name); ok && f.Type.Elem == nil {
			name = node
		} else if f.Type.Elem == nil {
			continue
		}
		if def := s.Types[name]; def != nil && def.Kind == ast.Object {
			gen(def)
		}
	}
	return b.String()
}

// jsonFilterSDL is the filter of a JSON scalar, generated when the schema
// declares one.
const jsonFilterSDL = `
"Filter on a JSON value: containment of JSON, and the operators of JSON arrays."
input JSONFilter { eq: JSON neq: JSON isnull: Boolean isNull: Boolean strictly_contains: JSON array_contains: JSON array_contained_by: JSON array_overlaps: [JSON!]
  len_eq: Int len_neq: Int len_gt: Int len_gte: Int len_lt: Int len_lte: Int }
`

// scalarFilter names the filter input for a scalar or enum type.
func scalarFilter(t *ast.Definition) string {
	switch t.Name {
	case "ID", "Int", "Float", "Boolean":
		return t.Name + "Filter"
	case "IPAddress", "IpAddress", "Inet", "CIDR":
		return "NetworkFilter"
	case "LTree", "Ltree":
		return "LTreeFilter"
	case "Vector":
		return "VectorFilter"
	case "JSON":
		return "JSONFilter"
	}
	return "StringFilter"
}

// Check compares the schema with the database catalog and binds it to
// what it finds. Every view must exist with a column id; a data column, if
// any, must be jsonb (without one the relation is read as its columns, by
// their names); tenant_id and other native columns are optional, and a
// filter or sort on a field that one of them holds compares the column.
// Every mutation function must exist once and return a composite with
// succeeded or status (fraise.mutation_result, FraiseQL's
// app.mutation_response or its older 8-column shape); one taking (jsonb)
// receives the input as one value, any other receives the input's keys as
// named arguments. Check reports every problem, each naming the view,
// column or function. Call it before the schema serves requests.
func (s *Schema) Check(ctx context.Context, cat core.Catalog) error {
	var errs []error
	for _, typ := range sortedKeys(s.views) {
		view := s.views[typ]
		cols, err := cat.RelationColumns(ctx, view)
		if err != nil {
			return fmt.Errorf("schema check: %w", err)
		}
		if cols == nil {
			errs = append(errs, fmt.Errorf("schema check: type %s: view %s does not exist", typ, view))
			continue
		}
		if _, ok := cols["id"]; !ok {
			errs = append(errs, fmt.Errorf("schema check: type %s: view %s has no column id", typ, view))
		}
		t, data := cols["data"]
		if data && t != "jsonb" {
			errs = append(errs, fmt.Errorf("schema check: type %s: column %s.data is %s, not jsonb", typ, view, t))
		}
		s.sources[typ] = &source{columns: cols, data: data}
	}
	if len(s.functions) > 0 {
		info, err := cat.Function(ctx, "fraise.audit")
		if err != nil {
			return fmt.Errorf("schema check: %w", err)
		}
		if info == nil {
			errs = append(errs, errors.New("schema check: mutations need function fraise.audit (run fraise migrate)"))
		}
	}
	for _, field := range sortedKeys(s.functions) {
		fn := s.functions[field]
		info, err := cat.Function(ctx, fn)
		if err != nil {
			return fmt.Errorf("schema check: %w", err)
		}
		if info == nil {
			errs = append(errs, fmt.Errorf("schema check: mutation %s: function %s does not exist (or is overloaded)", field, fn))
			continue
		}
		_, succeeded := info.Result["succeeded"]
		_, status := info.Result["status"]
		if !succeeded && !status {
			errs = append(errs, fmt.Errorf("schema check: mutation %s: function %s returns no column succeeded or status (return fraise.mutation_result or app.mutation_response)", field, fn))
		}
		if !(len(info.Args) == 1 && info.Args[0] == "jsonb") {
			for i, a := range info.Args {
				if i >= len(info.ArgNames) || info.ArgNames[i] == "" {
					errs = append(errs, fmt.Errorf("schema check: mutation %s: function %s takes (%s): arguments other than one jsonb need names", field, fn, strings.Join(info.Args, ", ")))
					break
				}
				if !isSQLType(a) {
					errs = append(errs, fmt.Errorf("schema check: mutation %s: function %s: argument %s has type %q, which Fraise cannot cast to", field, fn, info.ArgNames[i], a))
				}
			}
		}
		s.calls[field] = info
	}
	return errors.Join(errs...)
}

// isSQLType reports whether t, a type as format_type writes it, may be
// written into SQL as a cast: it comes from the catalog, but is checked
// all the same.
func isSQLType(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c == '_' || c == ' ' || c == '.' || c == ',' || c == '(' || c == ')' || c == '[' || c == ']' || c == '"' ||
			'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return strings.Count(t, `"`)%2 == 0
}

// Views returns the view each root-bound object type reads from.
func (s *Schema) Views() map[string]string {
	out := make(map[string]string, len(s.views))
	for k, v := range s.views {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedTypeNames(s *ast.Schema) []string {
	names := make([]string, 0, len(s.Types))
	for n := range s.Types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// snake converts a name to snake_case as database-first projects name their
// views and functions: BlogPost -> blog_post, createPost -> create_post,
// HTTPServer -> http_server.
func snake(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			if i > 0 {
				prev := s[i-1]
				nextLower := i+1 < len(s) && 'a' <= s[i+1] && s[i+1] <= 'z'
				if 'a' <= prev && prev <= 'z' || '0' <= prev && prev <= '9' || ('A' <= prev && prev <= 'Z' && nextLower) {
					b.WriteByte('_')
				}
			}
			b.WriteByte(c + 'a' - 'A')
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// isRelation reports whether s is safe to write unquoted into SQL as a
// relation or function name: schema names come from the operator's SDL,
// never from requests, but a typo in a schema must not become an injection
// either. Upper case is refused because PostgreSQL would fold it silently.
func isRelation(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			switch {
			case c == '_' || 'a' <= c && c <= 'z':
			case i > 0 && '0' <= c && c <= '9':
			default:
				return false
			}
		}
	}
	return true
}

// isJSONKey reports whether k may be written between single quotes in SQL
// as it is: nothing in it needs escaping.
func isJSONKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
