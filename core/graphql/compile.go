package graphql

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/fraise-dev/fraise/core"
)

// compiler compiles the root fields of one request. Every value from a
// request (arguments, variables, aliases, type names) becomes a $n
// parameter; only names from the schema (views, functions, JSON keys that
// ParseSchema checked), generated aliases and fixed SQL are written into
// the text.
type compiler struct {
	s    *Schema
	vars map[string]any
	p    core.Principal
	opts *Options
	args []any
	n    int // generated alias counter
}

func (c *compiler) param(v any) string {
	c.args = append(c.args, v)
	return "$" + strconv.Itoa(len(c.args))
}

func (c *compiler) alias() string {
	c.n++
	return "e" + strconv.Itoa(c.n)
}

// errForbidden marks a selection the principal may not read: the whole
// operation is refused, so no partial data reveals what was hidden.
var errForbidden = errors.New("forbidden")

func forbidden(typ, field string) error {
	return core.Errorf(core.CodeForbidden, "not allowed to read %s.%s", typ, field).Wrap(errForbidden)
}

func invalid(format string, args ...any) error {
	return core.Errorf(core.CodeInvalid, format, args...)
}

// compileQuery builds the statement of one root query field; a nil SQL
// with a non-nil constant answers the field without the database.
func (c *compiler) compileQuery(ctx context.Context, f *ast.Field) (sql string, constant json.RawMessage, err error) {
	t := f.Definition.Type
	if node, ok := c.s.connections[t.Name()]; ok && t.Elem == nil {
		sql, err := c.connection(ctx, f, node)
		return sql, nil, err
	}
	if t.Elem != nil {
		sql, err := c.list(ctx, f, t.Elem.Name())
		return sql, nil, err
	}
	typ := t.Name()
	id, _ := f.ArgumentMap(c.vars)["id"].(string)
	obj, err := c.object(ctx, f.SelectionSet, typ, "t.data")
	if err != nil {
		return "", nil, err
	}
	if !isUUIDText(id) {
		// No row has a malformed id; asking PostgreSQL would only turn it
		// into a cast error. Compiled anyway, so @auth still applies.
		return "", json.RawMessage("null"), nil
	}
	return fmt.Sprintf("select %s from %s t where t.id = %s::uuid", obj, c.from(typ), c.param(id)), nil, nil
}

// from returns the relation typ reads: its view, or for a relation
// without a data column, its rows with their columns as data.
func (c *compiler) from(typ string) string {
	if src := c.s.sources[typ]; src != nil && !src.data {
		return "(select r.*, to_jsonb(r) as data from " + c.s.views[typ] + " r)"
	}
	return c.s.views[typ]
}

// idCast is the cast of typ's id column: ::uuid, unless the catalog says
// otherwise (a plain table's integer key, say).
func (c *compiler) idCast(typ string) string {
	if src := c.s.sources[typ]; src != nil {
		if t := src.columns["id"]; t != "" && t != "uuid" && isSQLType(t) {
			return "::" + t
		}
	}
	return "::uuid"
}

// native returns the column of typ's relation that holds a root row's
// field fi, when there is one: filters and sorts compare it, which its
// indexes serve, rather than the JSON path.
func (c *compiler) native(typ string, fi *fieldInfo, base string) (col, coltype string, ok bool) {
	if base != "t.data" || len(fi.keys) != 1 || len(fi.alt) > 0 {
		return "", "", false
	}
	src := c.s.sources[typ]
	if src == nil {
		return "", "", false
	}
	for _, name := range []string{fi.keys[0], snake(fi.keys[0])} {
		if t, ok := src.columns[name]; ok && name != "data" && isSQLType(t) {
			return "t." + quoteIdent(name), t, true
		}
	}
	return "", "", false
}

// list compiles a root list field: filter, order and page in a subquery,
// the JSON array built by the aggregate in the same order.
func (c *compiler) list(ctx context.Context, f *ast.Field, typ string) (string, error) {
	args := f.ArgumentMap(c.vars)
	where, order, keys, err := c.filterAndOrder(typ, args)
	if err != nil {
		return "", err
	}
	// The aggregate outside sees only what the subquery selects: a sort
	// key on a native column is selected, and the aggregate orders by it.
	outer, cols := order, ""
	if native := slices.ContainsFunc(keys, func(k sortKey) bool { return k.column }); native {
		parts := make([]string, len(keys))
		for i, k := range keys {
			if k.column && k.expr != "t.id" {
				a := "o" + strconv.Itoa(i)
				cols += ", " + k.expr + " as " + a
				k.expr = "t." + a
			}
			parts[i] = k.String()
		}
		outer = strings.Join(parts, ", ")
	}
	limit, err := c.size(args["limit"], "limit")
	if err != nil {
		return "", err
	}
	offset, err := nonNegative(args["offset"], "offset")
	if err != nil {
		return "", err
	}
	obj, err := c.object(ctx, f.SelectionSet, typ, "t.data")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("select coalesce(json_agg(%s order by %s), '[]'::json) from (select t.id, t.data%s from %s t where %s order by %s limit %s::bigint offset %s::bigint) t",
		obj, outer, cols, c.from(typ), where, order, c.param(limit), c.param(offset)), nil
}

// connection compiles a Relay connection with keyset cursors: a cursor
// holds the sort key values of its row (and a fingerprint of the order),
// and after selects the rows that sort after it, so pages stay exact when
// rows are inserted or deleted between requests.
func (c *compiler) connection(ctx context.Context, f *ast.Field, typ string) (string, error) {
	args := f.ArgumentMap(c.vars)
	where, order, keys, err := c.filterAndOrder(typ, args)
	if err != nil {
		return "", err
	}
	// Backward pages scan in the reversed order from before, then list
	// their edges in the forward order.
	backward := args["last"] != nil || args["before"] != nil
	if backward && (args["first"] != nil || args["after"] != nil) {
		return "", invalid("give first and after, or last and before, not both")
	}
	sizeArg, cursorArg, scan := "first", "after", keys
	if backward {
		sizeArg, cursorArg = "last", "before"
		scan = make([]sortKey, len(keys))
		for i, k := range keys {
			k.desc, k.nullsFirst = !k.desc, !k.nullsFirst
			scan[i] = k
		}
	}
	first, err := c.size(args[sizeArg], sizeArg)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(order))
	fp := hex.EncodeToString(sum[:6])
	after := "true"
	hasAfter := false
	if a, ok := args[cursorArg].(string); ok {
		if after, err = c.after(a, fp, scan); err != nil {
			return "", err
		}
		hasAfter = true
	}
	scanParts := make([]string, len(scan))
	for i, k := range scan {
		scanParts[i] = k.String()
	}
	scanOrder := strings.Join(scanParts, ", ")
	edgeOrder, revOrder := "r.n", "r.n desc"
	if backward {
		edgeOrder, revOrder = revOrder, edgeOrder
	}
	fst := c.param(first) + "::bigint"
	// The cursor: base64 of a JSON array [fingerprint, key values as text..., id].
	vals := []string{c.param(fp) + "::text"}
	for _, k := range keys {
		vals = append(vals, "("+k.expr+")::text")
	}
	cursorExpr := "translate(encode(convert_to(json_build_array(" + strings.Join(vals, ", ") + ")::text, 'UTF8'), 'base64'), E'\\n', '')"
	view := c.from(typ)
	var parts []string
	for _, sel := range collectFields(f.SelectionSet, c.vars, f.Definition.Type.Name(), c.s) {
		key := c.param(sel.Alias) + "::text"
		switch sel.Name {
		case "__typename":
			parts = append(parts, key, "to_json("+c.param(f.Definition.Type.Name())+"::text)")
		case "totalCount":
			parts = append(parts, key, fmt.Sprintf("(select count(*) from %s t where %s)", view, where))
		case "pageInfo":
			var pi []string
			for _, p := range collectFields(sel.SelectionSet, c.vars, sel.Definition.Type.Name(), c.s) {
				k := c.param(p.Alias) + "::text"
				switch p.Name {
				case "__typename":
					pi = append(pi, k, "to_json("+c.param(sel.Definition.Type.Name())+"::text)")
				case "hasNextPage", "hasPreviousPage":
					// More rows in the scan's direction is known; the other
					// direction answers whether a cursor was given, as Relay
					// allows.
					if (p.Name == "hasNextPage") != backward {
						pi = append(pi, k, "to_json(count(*) > "+fst+")")
					} else {
						pi = append(pi, k, "to_json("+c.param(hasAfter)+"::boolean)")
					}
				case "startCursor":
					pi = append(pi, k, "to_json((array_agg(r.c order by "+edgeOrder+") filter (where r.n <= "+fst+"))[1])")
				case "endCursor":
					pi = append(pi, k, "to_json((array_agg(r.c order by "+revOrder+") filter (where r.n <= "+fst+"))[1])")
				default:
					return "", invalid("PageInfo.%s is not supported", p.Name)
				}
			}
			parts = append(parts, key, buildObject(pi))
		case "edges":
			var ed []string
			edgeType := sel.Definition.Type.Name()
			for _, e := range collectFields(sel.SelectionSet, c.vars, edgeType, c.s) {
				k := c.param(e.Alias) + "::text"
				switch e.Name {
				case "__typename":
					ed = append(ed, k, "to_json("+c.param(edgeType)+"::text)")
				case "cursor":
					ed = append(ed, k, "to_json(r.c)")
				case "node":
					obj, err := c.object(ctx, e.SelectionSet, typ, "r.data")
					if err != nil {
						return "", err
					}
					ed = append(ed, k, obj)
				default:
					return "", invalid("%s.%s is not supported", edgeType, e.Name)
				}
			}
			parts = append(parts, key, fmt.Sprintf("coalesce(json_agg(%s order by %s) filter (where r.n <= %s), '[]'::json)", buildObject(ed), edgeOrder, fst))
		default:
			return "", invalid("%s.%s is not supported", f.Definition.Type.Name(), sel.Name)
		}
	}
	return fmt.Sprintf("select %s from (select t.id, t.data, %s as c, row_number() over (order by %s) as n from %s t where %s and %s order by %s limit %s + 1) r",
		buildObject(parts), cursorExpr, scanOrder, view, where, after, scanOrder, fst), nil
}

// after compiles the condition "sorts after the cursor's row": for each
// key, the earlier keys equal and this one after, NULLs placed as the key
// says. Whether a cursor value is NULL decides the SQL's shape; the values
// themselves are parameters.
func (c *compiler) after(cursor, fp string, keys []sortKey) (string, error) {
	bad := invalid("after is not a cursor of this connection and order")
	b, err := base64.StdEncoding.DecodeString(cursor)
	if err != nil {
		return "", bad
	}
	var vals []*string
	if err := json.Unmarshal(b, &vals); err != nil || len(vals) != len(keys)+1 || vals[0] == nil || *vals[0] != fp {
		return "", bad
	}
	vals = vals[1:]
	if id := vals[len(vals)-1]; id == nil || keys[len(keys)-1].cast == "::uuid" && !isUUIDText(*id) {
		return "", bad
	}
	var ors []string
	var eqs []string
	for i, k := range keys {
		var v, gt string
		if vals[i] != nil {
			v = c.param(*vals[i]) + "::text" + k.cast
			gt = ">"
			if k.desc {
				gt = "<"
			}
		}
		var cond string
		switch {
		case vals[i] == nil && k.nullsFirst:
			cond = k.expr + " is not null"
		case vals[i] == nil:
			cond = "false"
		case k.nullsFirst:
			cond = k.expr + " " + gt + " " + v
		default:
			cond = "(" + k.expr + " " + gt + " " + v + " or " + k.expr + " is null)"
		}
		ors = append(ors, "("+strings.Join(append(append([]string{}, eqs...), cond), " and ")+")")
		if vals[i] == nil {
			eqs = append(eqs, k.expr+" is null")
		} else {
			eqs = append(eqs, k.expr+" = "+v)
		}
	}
	return "(" + strings.Join(ors, " or ") + ")", nil
}

// compileMutation builds the statement calling a mutation's function: its
// arguments as one jsonb value (the value of a single input argument, or
// the object of all arguments), its result row projected through the
// selection, and its audit row.
func (c *compiler) compileMutation(ctx context.Context, f *ast.Field) (string, error) {
	fn := c.s.functions[f.Name]
	args := f.ArgumentMap(c.vars)
	var input any = args
	if len(f.Definition.Arguments) == 1 && f.Definition.Arguments[0].Name == "input" {
		input = args["input"]
	}
	if c.s.snakeInput {
		input = snakeKeys(input)
	}
	in, err := json.Marshal(input)
	if err != nil {
		return "", invalid("arguments: %v", err)
	}
	call := c.call(f.Name, fn, input, c.param(string(in)))
	rt := c.s.ast.Types[f.Definition.Type.Name()]
	var proj string
	if rt.Kind == ast.Union {
		succ, fails, err := unionBranches(c.s.ast, rt)
		if err != nil {
			return "", err
		}
		ps, err := c.resultObject(ctx, f.SelectionSet, succ)
		if err != nil {
			return "", err
		}
		// Errors as data: the function names the error type it means in
		// entity_type; a name the union lacks gets its first error type.
		var whens []string
		def := ""
		for i, name := range fails {
			pe, err := c.resultObject(ctx, f.SelectionSet, name)
			if err != nil {
				return "", err
			}
			if i == 0 {
				def = pe
			}
			if len(fails) > 1 {
				whens = append(whens, "when r.j->>'entity_type' = "+c.param(name)+"::text then "+pe)
			}
		}
		proj = fmt.Sprintf("case when (r.j->>'succeeded')::boolean then %s %s else %s end", ps, strings.Join(whens, " "), def)
	} else {
		if proj, err = c.resultObject(ctx, f.SelectionSet, rt.Name); err != nil {
			return "", err
		}
		if _, ok := c.s.views[rt.Name]; ok {
			proj = "case when (r.j->>'succeeded')::boolean then " + proj + " end"
		}
	}
	// The audit row is written by the same statement, from the same result
	// row: a mutation that ran cannot skip it. Both CTEs are materialized,
	// so the function runs once and the audit insert exactly once per call.
	// r normalizes the three result shapes: succeeded and error_class are
	// read from the older shape's status ("failed:...", "not_found:...",
	// or a success such as "created" or "noop:unchanged") when it has no
	// such columns.
	return fmt.Sprintf(`with r0 as materialized (select to_jsonb(f) as j from %s f),`+
		` r as materialized (select r0.j || jsonb_build_object('succeeded', n.ok, 'error_class', case when n.ok then nullif(r0.j->'error_class', 'null'::jsonb)`+
		` else coalesce(nullif(r0.j->'error_class', 'null'::jsonb), to_jsonb(case split_part(r0.j->>'status', ':', 1) when 'failed' then 'internal' when 'error' then 'internal' when '' then 'internal' else split_part(r0.j->>'status', ':', 1) end)) end) as j`+
		` from r0, lateral (select coalesce((r0.j->>'succeeded')::boolean, not coalesce(r0.j->>'status' ~ '%s', false)) as ok) n),`+
		` a as materialized (select fraise.audit(%s::text, %s::text, coalesce(r.j->>'entity_id', r.j->'entity'->>'id'),`+
		` case when (r.j->>'succeeded')::boolean then coalesce(r.j->>'status', r.j->>'status_detail', 'ok') else coalesce(r.j->>'error_class', r.j->>'status', 'error') end) from r)`+
		` select %s from r, a`,
		call, legacyFailure, c.param(c.p.Subject), c.param(f.Name), proj), nil
}

// legacyFailure matches the statuses of the older mutation_response shape
// that report a failure: failed:..., or an error class as prefix.
const legacyFailure = `^(failed|error|validation|conflict|not_found|unauthorized|forbidden|internal|transaction_failed|timeout|rate_limited|service_unavailable)(:|$)`

// resultObject projects a mutation result member: a type a view reads is
// the entity (the row's entity column, in the view's shape); any other is
// read from the row's columns.
func (c *compiler) resultObject(ctx context.Context, set ast.SelectionSet, typ string) (string, error) {
	if _, ok := c.s.views[typ]; ok {
		obj, err := c.object(ctx, set, typ, "(r.j->'entity')")
		if err != nil {
			return "", err
		}
		return "case when jsonb_typeof(r.j->'entity') = 'object' then " + obj + " end", nil
	}
	return c.object(ctx, set, typ, "r.j")
}

// call returns the function call of a mutation: fn(input jsonb) gets the
// input whole, as a parameter; a function of other arguments gets each by
// name (named notation) from the input's key of that name, less a p_,
// in_ or input_ prefix, cast to the argument's type (NULL when the input
// lacks it). An argument named tenant_id gets the request's tenant,
// whatever the input says, and a jsonb argument named input, payload or
// data that the input has no key for gets the input whole.
func (c *compiler) call(field, fn string, input any, param string) string {
	info := c.s.calls[field]
	if info == nil || len(info.Args) == 1 && info.Args[0] == "jsonb" {
		return fn + "(" + param + "::jsonb)"
	}
	m, _ := input.(map[string]any)
	in := param + "::jsonb"
	args := make([]string, 0, len(info.Args))
	for i, name := range info.ArgNames {
		typ := info.Args[i]
		key := argKey(name)
		k := "'" + key + "'"
		if !isJSONKey(key) {
			k = c.param(key) + "::text"
		}
		var v string
		_, has := m[key]
		if c := camel(key); !has && c != key {
			// A schema of camelCase keys names the argument as GraphQL does.
			if _, has = m[c]; has && isJSONKey(c) {
				k = "'" + c + "'"
			}
		}
		switch {
		case key == "tenant_id":
			v = c.param(c.p.Tenant) + "::text::" + typ
		case (typ == "jsonb" || typ == "json") && !has && (key == "input" || key == "payload" || key == "data"):
			v = in + "::" + typ
		case typ == "jsonb":
			v = "(" + in + "->" + k + ")"
		case strings.HasSuffix(typ, "[]"):
			v = "(select array_agg(e) from jsonb_array_elements_text(case when jsonb_typeof(" + in + "->" + k + ") = 'array' then " + in + "->" + k + " end) e)::" + typ
		default:
			v = "(" + in + "->>" + k + ")::" + typ
		}
		args = append(args, quoteIdent(name)+" => "+v)
	}
	return fn + "(" + strings.Join(args, ", ") + ")"
}

// argKey is the input key an argument reads: its name less a p_, in_ or
// input_ prefix (the common ways of telling arguments from columns).
func argKey(name string) string {
	for _, p := range []string{"input_", "in_", "p_"} {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return name[len(p):]
		}
	}
	return name
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// snakeKeys returns v with every object key in snake_case, as a schema
// whose keys are SNAKE hands its functions their input.
func snakeKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[snake(k)] = snakeKeys(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = snakeKeys(e)
		}
		return out
	}
	return v
}

// object returns a json_build_object expression projecting only the
// selected JSON paths of base, an expression of type jsonb holding an
// object of type typ.
func (c *compiler) object(ctx context.Context, set ast.SelectionSet, typ, base string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var parts []string
	for _, f := range collectFields(set, c.vars, typ, c.s) {
		key := c.param(f.Alias) + "::text"
		if f.Name == "__typename" {
			parts = append(parts, key, "to_json("+c.param(typ)+"::text)")
			continue
		}
		fi := c.s.fields[typ][f.Name]
		if fi == nil {
			return "", invalid("field %s.%s cannot be selected here", typ, f.Name)
		}
		if fi.auth != "" && !c.p.HasScope(fi.auth) {
			return "", forbidden(typ, f.Name)
		}
		path := fi.path(base)
		ft := f.Definition.Type
		named := c.s.ast.Types[ft.Name()]
		var expr string
		switch {
		case named != nil && named.Kind != ast.Scalar && named.Kind != ast.Enum && ft.Elem == nil:
			inner, err := c.composite(ctx, f.SelectionSet, named, path)
			if err != nil {
				return "", err
			}
			expr = fmt.Sprintf("case when jsonb_typeof(%s) = 'object' then %s end", path, inner)
		case named != nil && named.Kind != ast.Scalar && named.Kind != ast.Enum:
			if ft.Elem.Elem != nil {
				return "", invalid("field %s.%s: lists of lists of objects are not supported", typ, f.Name)
			}
			e := c.alias()
			inner, err := c.composite(ctx, f.SelectionSet, named, e+".value")
			if err != nil {
				return "", err
			}
			slice, err := c.slice(f, e)
			if err != nil {
				return "", err
			}
			expr = fmt.Sprintf("case when jsonb_typeof(%[1]s) = 'array' then (select coalesce(json_agg(%[2]s order by %[3]s.ord), '[]'::json) from jsonb_array_elements(%[1]s) with ordinality %[3]s(value, ord)%[4]s) end",
				path, inner, e, slice)
		case fi.mask != "" && !c.p.HasScope(fi.maskScope):
			expr = maskExpr(fi.mask, path)
		case ft.Elem == nil && (ft.Name() == "String" || ft.Name() == "ID"):
			// A String or ID is text: ->> hands json_build_object the text
			// to quote, where -> would have it re-serialize a jsonb value
			// (a tenth of the backend's CPU on the benchmark's read). A
			// number stored under such a field comes out as its text, as
			// GraphQL's result coercion of String and ID says it should.
			expr = fi.textPath(base)
		default:
			expr = path
		}
		parts = append(parts, key, expr)
	}
	return buildObject(parts), nil
}

// slice compiles a nested list's limit and offset into a condition on the
// element's position (1-based ordinality) in the JSON array.
func (c *compiler) slice(f *ast.Field, e string) (string, error) {
	args := f.ArgumentMap(c.vars)
	if args["limit"] == nil && args["offset"] == nil {
		return "", nil
	}
	offset, err := nonNegative(args["offset"], "offset")
	if err != nil {
		return "", err
	}
	off := c.param(offset) + "::bigint"
	cond := " where " + e + ".ord > " + off
	if args["limit"] != nil {
		limit, err := nonNegative(args["limit"], "limit")
		if err != nil {
			return "", err
		}
		cond += " and " + e + ".ord <= " + off + " + " + c.param(limit) + "::bigint"
	}
	return cond, nil
}

// composite projects an object, or a union or interface value: the view
// names each element's concrete type in its JSON as "__typename", and the
// selection is compiled once per possible type. An unknown __typename
// yields null.
func (c *compiler) composite(ctx context.Context, set ast.SelectionSet, def *ast.Definition, path string) (string, error) {
	if def.Kind == ast.Object {
		return c.object(ctx, set, def.Name, path)
	}
	var whens []string
	for _, pt := range c.s.ast.GetPossibleTypes(def) {
		inner, err := c.object(ctx, set, pt.Name, path)
		if err != nil {
			return "", err
		}
		whens = append(whens, "when "+path+"->>'__typename' = "+c.param(pt.Name)+"::text then "+inner)
	}
	if len(whens) == 0 {
		return "null::json", nil
	}
	return "case " + strings.Join(whens, " ") + " end", nil
}

// buildObject builds a JSON object from key, value pairs, keeping their
// order (json, not jsonb, so the response follows the selection order).
// A function takes at most 100 arguments: wider objects are merged as
// jsonb, which orders keys its own way.
func buildObject(parts []string) string {
	const maxArgs = 100
	if len(parts) <= maxArgs {
		return "json_build_object(" + strings.Join(parts, ", ") + ")"
	}
	var chunks []string
	for len(parts) > 0 {
		n := min(len(parts), maxArgs)
		chunks = append(chunks, "jsonb_build_object("+strings.Join(parts[:n], ", ")+")")
		parts = parts[n:]
	}
	return "(" + strings.Join(chunks, " || ") + ")::json"
}

// maskExpr hides a value in SQL, so the clear value never leaves the
// database for a principal without the unmasking scope.
func maskExpr(kind, p string) string {
	switch kind {
	case "EMAIL":
		return fmt.Sprintf(`case when jsonb_typeof(%[1]s) = 'string' then to_jsonb(regexp_replace(%[1]s #>> '{}', '^(.)[^@]*', '\1***')) else %[1]s end`, p)
	case "PII":
		return fmt.Sprintf(`case when jsonb_typeof(%[1]s) = 'string' then to_jsonb(left(%[1]s #>> '{}', 1) || '***') when jsonb_typeof(%[1]s) in ('number', 'boolean') then to_jsonb('***'::text) else %[1]s end`, p)
	default: // SECRET
		return fmt.Sprintf(`case when coalesce(jsonb_typeof(%[1]s), 'null') = 'null' then %[1]s else to_jsonb('***'::text) end`, p)
	}
}

// sortKey is one ORDER BY key: a typed SQL expression, its direction and
// where NULLs go (always explicit, so cursors know the order exactly).
type sortKey struct {
	expr       string
	cast       string // the cast that types a cursor's text value like expr
	desc       bool
	nullsFirst bool
	column     bool // a native column, not a path in data
}

func (k sortKey) String() string {
	s := k.expr
	if k.desc {
		s += " desc"
	} else {
		s += " asc"
	}
	if k.nullsFirst {
		return s + " nulls first"
	}
	return s + " nulls last"
}

// filterAndOrder compiles where and orderBy; the order always ends with
// t.id, so pages are stable.
func (c *compiler) filterAndOrder(typ string, args map[string]any) (where, order string, keys []sortKey, err error) {
	if where, err = c.where(typ, args["where"], "t.data"); err != nil {
		return "", "", nil, err
	}
	for _, item := range asList(args["orderBy"]) {
		if err := c.orderKey(typ, item, "t.data", &keys); err != nil {
			return "", "", nil, err
		}
	}
	keys = append(keys, sortKey{expr: "t.id", cast: c.idCast(typ)})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k.String()
	}
	return where, strings.Join(parts, ", "), keys, nil
}

// where compiles a <Type>Where input into a boolean SQL expression.
func (c *compiler) where(typ string, v any, base string) (string, error) {
	if v == nil {
		return "true", nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", invalid("where on %s must be an object", typ)
	}
	var conds []string
	for _, k := range sortedAny(m) {
		val := m[k]
		if val == nil {
			continue
		}
		switch k {
		case "and", "or", "_and", "_or":
			k = strings.TrimPrefix(k, "_")
			var sub []string
			for _, item := range asList(val) {
				s, err := c.where(typ, item, base)
				if err != nil {
					return "", err
				}
				sub = append(sub, s)
			}
			switch {
			case len(sub) > 0:
				conds = append(conds, "("+strings.Join(sub, map[string]string{"and": " and ", "or": " or "}[k])+")")
			case k == "or":
				conds = append(conds, "false")
			}
		case "not", "_not":
			s, err := c.where(typ, val, base)
			if err != nil {
				return "", err
			}
			conds = append(conds, "not "+s)
		default:
			fi, named, err := c.filterField(typ, k)
			if err != nil {
				return "", err
			}
			if named.Kind == ast.Object {
				s, err := c.where(named.Name, val, fi.path(base))
				if err != nil {
					return "", err
				}
				conds = append(conds, s)
				continue
			}
			ops, ok := val.(map[string]any)
			if !ok {
				return "", invalid("filter on %s.%s must be an object of operators", typ, k)
			}
			if base == "t.data" && named.Name == "ID" && len(fi.keys) == 1 && fi.keys[0] == "id" && c.idCast(typ) == "::uuid" {
				// The row's id column, which the view's table indexes.
				s, err := c.idOps(ops)
				if err != nil {
					return "", err
				}
				conds = append(conds, s...)
				continue
			}
			if c.s.ast.Types[typ].Fields.ForName(k).Type.Elem != nil {
				s, err := c.listOps(c.operand(typ, fi, base), named.Name, ops)
				if err != nil {
					return "", err
				}
				conds = append(conds, s...)
				continue
			}
			s, err := c.scalarOps(c.operand(typ, fi, base), named.Name, ops)
			if err != nil {
				return "", err
			}
			conds = append(conds, s...)
		}
	}
	if len(conds) == 0 {
		return "true", nil
	}
	return "(" + strings.Join(conds, " and ") + ")", nil
}

// filterField returns a field a where or orderBy may use: reading a hidden
// or masked value through a filter would reveal it, so both need the scope.
func (c *compiler) filterField(typ, field string) (*fieldInfo, *ast.Definition, error) {
	fi := c.s.fields[typ][field]
	def := c.s.ast.Types[typ]
	if fi == nil || def == nil || def.Fields.ForName(field) == nil {
		return nil, nil, invalid("%s has no field %s", typ, field)
	}
	if fi.auth != "" && !c.p.HasScope(fi.auth) {
		return nil, nil, forbidden(typ, field)
	}
	if fi.mask != "" && !c.p.HasScope(fi.maskScope) {
		return nil, nil, forbidden(typ, field)
	}
	named := c.s.ast.Types[def.Fields.ForName(field).Type.Name()]
	if named == nil {
		return nil, nil, invalid("%s has no field %s", typ, field)
	}
	return fi, named, nil
}

// cast returns the SQL cast that compares a GraphQL scalar's text as the
// type it holds.
func cast(scalar string) string {
	switch scalar {
	case "Int", "Float":
		return "::numeric"
	case "Boolean":
		return "::boolean"
	}
	return ""
}

// arrayCast casts a text[] parameter to the array of what cast casts to.
func arrayCast(cast string) string {
	return "::text[]" + arrayOf(cast)
}

// arrayOf returns the cast to the array of what cast casts to ("" stays "").
func arrayOf(cast string) string {
	if cast == "" {
		return ""
	}
	return cast + "[]"
}

var comparisons = map[string]string{"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}

// operand is what a filter compares: a JSON path, or a native column.
type operand struct {
	text    string // the value as text
	json    string // the value as jsonb; "" for a column
	column  string // the column, "" for a JSON path
	coltype string // the column's type
}

func (c *compiler) operand(typ string, fi *fieldInfo, base string) operand {
	if col, t, ok := c.native(typ, fi, base); ok {
		o := operand{text: col + "::text", column: col, coltype: t}
		if t == "jsonb" {
			o.json = col
		}
		return o
	}
	return operand{text: fi.textPath(base), json: fi.path(base)}
}

// typed returns the left side of a comparison and the cast that types its
// right side's text alike: a column as it is, compared with the
// parameter cast to the column's type (so its indexes serve), or a JSON
// value's text cast as its GraphQL scalar says.
func (o operand) typed(scalar string) (lhs, cs string) {
	if o.column != "" {
		return o.column, "::" + o.coltype
	}
	cs = cast(scalar)
	return o.text + cs, cs
}

// isNull is the condition "the value is null", a missing key included.
func (o operand) isNull() string {
	if o.column != "" {
		return o.column + " is null"
	}
	return "coalesce(jsonb_typeof(" + o.json + "), 'null') = 'null'"
}

func (c *compiler) scalarOps(o operand, scalar string, ops map[string]any) ([]string, error) {
	text := o.text
	lhs, cs := o.typed(scalar)
	var out []string
	for _, op := range sortedAny(ops) {
		v := ops[op]
		if v == nil {
			continue
		}
		switch op {
		case "isNull", "isnull":
			b, ok := v.(bool)
			if !ok {
				return nil, invalid("%s takes a Boolean", op)
			}
			if b {
				out = append(out, o.isNull())
			} else {
				out = append(out, "not "+o.isNull())
			}
		case "eq", "neq", "gt", "gte", "lt", "lte":
			if scalar == "JSON" && o.json != "" && (op == "eq" || op == "neq") {
				b, err := json.Marshal(v)
				if err != nil {
					return nil, invalid("%s: %v", op, err)
				}
				out = append(out, "coalesce("+o.json+" "+comparisons[op]+" "+c.param(string(b))+"::jsonb, false)")
				continue
			}
			s, err := toText(v)
			if err != nil {
				return nil, err
			}
			out = append(out, lhs+" "+comparisons[op]+" "+c.param(s)+"::text"+cs)
		case "in", "nin":
			var list []string
			for _, e := range asList(v) {
				s, err := toText(e)
				if err != nil {
					return nil, err
				}
				list = append(list, s)
			}
			if list == nil {
				list = []string{}
			}
			cond := lhs + " = any(" + c.param(list) + "::text[]" + arrayOf(cs) + ")"
			if op == "nin" {
				cond = "not coalesce(" + cond + ", false)"
			}
			out = append(out, cond)
		case "like", "ilike":
			s, err := toText(v)
			if err != nil {
				return nil, err
			}
			out = append(out, text+" "+op+" "+c.param(s)+"::text")
		case "contains":
			s, err := toText(v)
			if err != nil {
				return nil, err
			}
			out = append(out, "strpos("+text+", "+c.param(s)+"::text) > 0")
		default:
			cond, err := c.moreOps(o, scalar, op, v)
			if err != nil {
				return nil, err
			}
			out = append(out, cond)
		}
	}
	return out, nil
}

// idOps compiles an IDFilter on a root row's id as comparisons of the uuid
// column; a value that is not a UUID matches no row.
func (c *compiler) idOps(ops map[string]any) ([]string, error) {
	var out []string
	uuids := func(v any) ([]string, error) {
		list := []string{}
		for _, e := range asList(v) {
			s, err := toText(e)
			if err != nil {
				return nil, err
			}
			if isUUIDText(s) {
				list = append(list, s)
			}
		}
		return list, nil
	}
	for _, op := range sortedAny(ops) {
		v := ops[op]
		if v == nil {
			continue
		}
		switch op {
		case "isNull", "isnull":
			if b, _ := v.(bool); b {
				out = append(out, "t.id is null")
			} else {
				out = append(out, "t.id is not null")
			}
		case "eq", "neq":
			s, err := toText(v)
			if err != nil {
				return nil, err
			}
			switch {
			case isUUIDText(s) && op == "eq":
				out = append(out, "t.id = "+c.param(s)+"::text::uuid")
			case isUUIDText(s):
				out = append(out, "t.id <> "+c.param(s)+"::text::uuid")
			case op == "eq":
				out = append(out, "false")
			}
		case "in", "nin":
			list, err := uuids(v)
			if err != nil {
				return nil, err
			}
			cond := "t.id = any(" + c.param(list) + "::text[]::uuid[])"
			if op == "nin" {
				cond = "not " + cond
			}
			out = append(out, cond)
		default:
			return nil, invalid("unknown filter operator %s", op)
		}
	}
	return out, nil
}

// listOps compiles a <Scalar>ListFilter on a JSON array of scalars, by
// jsonb containment (which a GIN index on the view's table can serve), or
// on a native array column.
func (c *compiler) listOps(o operand, scalar string, ops map[string]any) ([]string, error) {
	if o.column != "" && o.json == "" {
		return c.nativeListOps(o, ops)
	}
	p := o.json
	cs := cast(scalar)
	var out []string
	for _, op := range sortedAny(ops) {
		v := ops[op]
		if v == nil {
			continue
		}
		switch op {
		case "isNull", "isnull", "isEmpty":
			b, ok := v.(bool)
			if !ok {
				return nil, invalid("%s takes a Boolean", op)
			}
			cond := "coalesce(jsonb_typeof(" + p + "), 'null') = 'null'"
			if op == "isEmpty" {
				cond = "coalesce(jsonb_array_length(case when jsonb_typeof(" + p + ") = 'array' then " + p + " end) = 0, false)"
			}
			if !b {
				cond = "not " + cond
			}
			out = append(out, cond)
		case "contains":
			s, err := toText(v)
			if err != nil {
				return nil, err
			}
			out = append(out, "coalesce("+p+" @> jsonb_build_array("+c.param(s)+"::text"+cs+"), false)")
		case "containsAll", "array_contains", "array_contained_by", "array_overlaps":
			list, err := textList(v)
			if err != nil {
				return nil, err
			}
			arr := "to_jsonb(" + c.param(list) + arrayCast(cs) + ")"
			switch op {
			case "containsAll", "array_contains":
				out = append(out, "coalesce("+p+" @> "+arr+", false)")
			case "array_contained_by":
				out = append(out, "coalesce("+p+" <@ "+arr+", false)")
			default:
				out = append(out, "exists (select 1 from jsonb_array_elements(case when jsonb_typeof("+p+") = 'array' then "+p+" end) e(v) where "+arr+" @> jsonb_build_array(e.v))")
			}
		case "len_eq", "len_neq", "len_gt", "len_gte", "len_lt", "len_lte":
			n, err := toInt(v)
			if err != nil {
				return nil, invalid("%s takes an Int", op)
			}
			out = append(out, "jsonb_array_length(case when jsonb_typeof("+p+") = 'array' then "+p+" end) "+comparisons[strings.TrimPrefix(op, "len_")]+" "+c.param(n)+"::int")
		default:
			return nil, invalid("unknown list filter operator %s", op)
		}
	}
	return out, nil
}

// nativeListOps compiles a list filter on a native array column, with
// the array operators (which a GIN index on the column serves).
func (c *compiler) nativeListOps(o operand, ops map[string]any) ([]string, error) {
	col, arr := o.column, "::text[]::"+o.coltype
	var out []string
	for _, op := range sortedAny(ops) {
		v := ops[op]
		if v == nil {
			continue
		}
		switch op {
		case "isNull", "isnull", "isEmpty":
			b, ok := v.(bool)
			if !ok {
				return nil, invalid("%s takes a Boolean", op)
			}
			cond := col + " is null"
			if op == "isEmpty" {
				cond = "coalesce(cardinality(" + col + ") = 0, false)"
			}
			if !b {
				cond = "not " + cond
			}
			out = append(out, cond)
		case "contains", "containsAll", "array_contains", "array_contained_by", "array_overlaps":
			list, err := textList(v)
			if err != nil {
				return nil, err
			}
			sym := map[string]string{"contains": "@>", "containsAll": "@>", "array_contains": "@>", "array_contained_by": "<@", "array_overlaps": "&&"}[op]
			out = append(out, "coalesce("+col+" "+sym+" "+c.param(list)+arr+", false)")
		case "len_eq", "len_neq", "len_gt", "len_gte", "len_lt", "len_lte":
			n, err := toInt(v)
			if err != nil {
				return nil, invalid("%s takes an Int", op)
			}
			out = append(out, "cardinality("+col+") "+comparisons[strings.TrimPrefix(op, "len_")]+" "+c.param(n)+"::int")
		default:
			return nil, invalid("unknown list filter operator %s", op)
		}
	}
	return out, nil
}

// textList returns a list operand (or one scalar) as text values.
func textList(v any) ([]string, error) {
	list := []string{}
	for _, e := range asList(v) {
		s, err := toText(e)
		if err != nil {
			return nil, err
		}
		list = append(list, s)
	}
	return list, nil
}

// as returns the operand as a value of the PostgreSQL type t: a column of
// that type as it is (its indexes serve), anything else its text cast.
func (o operand) as(t string) string {
	if o.column != "" && o.coltype == t {
		return o.column
	}
	return "(" + o.text + ")::" + t
}

// networks are the ranges of the INET predicates (RFC 1918 and 4193,
// loopback, multicast, link-local, documentation, carrier-grade NAT).
var networks = map[string]string{
	"is_private":       `{10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7}`,
	"is_loopback":      `{127.0.0.0/8,::1/128}`,
	"is_multicast":     `{224.0.0.0/4,ff00::/8}`,
	"is_link_local":    `{169.254.0.0/16,fe80::/10}`,
	"is_documentation": `{192.0.2.0/24,198.51.100.0/24,203.0.113.0/24,2001:db8::/32}`,
	"is_carrier_grade": `{100.64.0.0/10}`,
}

// vectorOps are pgvector's distance operators.
var vectorOps = map[string]string{
	"cosine_distance": "<=>", "l2_distance": "<->", "l1_distance": "<+>", "inner_product": "<#>",
	"hamming_distance": "<~>", "jaccard_distance": "<%>",
}

// moreOps compiles the operators beyond comparisons: FraiseQL's string,
// full-text, JSON, network, ltree and pgvector operators. Every value is a
// parameter; a pattern's LIKE wildcards in contains-like operators are
// literal.
func (c *compiler) moreOps(o operand, scalar, op string, v any) (string, error) {
	text := o.text
	str := func() (string, error) {
		s, err := toText(v)
		return c.param(s) + "::text", err
	}
	boolean := func() (bool, error) {
		b, ok := v.(bool)
		if !ok {
			return false, invalid("%s takes a Boolean", op)
		}
		return b, nil
	}
	switch op {
	case "icontains", "startswith", "istartswith", "endswith", "iendswith":
		p, err := str()
		if err != nil {
			return "", err
		}
		t := text
		if op[0] == 'i' {
			t, p = "lower("+text+")", "lower("+p+")"
		}
		switch strings.TrimPrefix(op, "i") {
		case "contains":
			return "strpos(" + t + ", " + p + ") > 0", nil
		case "startswith":
			return "starts_with(" + t + ", " + p + ")", nil
		default:
			return "right(" + t + ", char_length(" + p + ")) = " + p, nil
		}
	case "nlike", "nilike":
		p, err := str()
		if err != nil {
			return "", err
		}
		return "not (" + text + " " + op[1:] + " " + p + ")", nil
	case "regex", "iregex", "nregex", "niregex":
		p, err := str()
		if err != nil {
			return "", err
		}
		sym := map[string]string{"regex": "~", "iregex": "~*", "nregex": "!~", "niregex": "!~*"}[op]
		return text + " " + sym + " " + p, nil
	case "matches", "plain_query", "phrase_query", "websearch_query":
		p, err := str()
		if err != nil {
			return "", err
		}
		doc := "to_tsvector(" + text + ")"
		if o.column != "" && o.coltype == "tsvector" {
			doc = o.column
		}
		fn := map[string]string{"matches": "to_tsquery", "plain_query": "plainto_tsquery", "phrase_query": "phraseto_tsquery", "websearch_query": "websearch_to_tsquery"}[op]
		return "coalesce(" + doc + " @@ " + fn + "(" + p + "), false)", nil
	case "strictly_contains", "array_contains", "array_contained_by", "array_overlaps":
		if o.json == "" {
			return "", invalid("%s applies to JSON values", op)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return "", invalid("%s: %v", op, err)
		}
		p := c.param(string(b)) + "::jsonb"
		switch op {
		case "array_contained_by":
			return "coalesce(" + o.json + " <@ " + p + ", false)", nil
		case "array_overlaps":
			return "exists (select 1 from jsonb_array_elements(case when jsonb_typeof(" + o.json + ") = 'array' then " + o.json + " end) e(v) where " + p + " @> jsonb_build_array(e.v))", nil
		}
		return "coalesce(" + o.json + " @> " + p + ", false)", nil
	case "len_eq", "len_neq", "len_gt", "len_gte", "len_lt", "len_lte":
		if o.json == "" {
			return "", invalid("%s applies to JSON arrays", op)
		}
		n, err := toInt(v)
		if err != nil {
			return "", invalid("%s takes an Int", op)
		}
		return "jsonb_array_length(case when jsonb_typeof(" + o.json + ") = 'array' then " + o.json + " end) " + comparisons[strings.TrimPrefix(op, "len_")] + " " + c.param(n) + "::int", nil
	case "in_subnet", "contains_subnet", "contains_ip", "overlaps":
		p, err := str()
		if err != nil {
			return "", err
		}
		sym := map[string]string{"in_subnet": "<<", "contains_subnet": ">>", "contains_ip": ">>", "overlaps": "&&"}[op]
		return o.as("inet") + " " + sym + " " + p + "::inet", nil
	case "is_ipv4", "is_ipv6":
		b, err := boolean()
		if err != nil {
			return "", err
		}
		fam := map[string]string{"is_ipv4": "4", "is_ipv6": "6"}[op]
		cond := "family(" + o.as("inet") + ") = " + fam
		if !b {
			cond = "not " + cond
		}
		return cond, nil
	case "is_private", "is_loopback", "is_multicast", "is_link_local", "is_documentation", "is_carrier_grade":
		b, err := boolean()
		if err != nil {
			return "", err
		}
		cond := o.as("inet") + " <<= any('" + networks[op] + "'::inet[])"
		if !b {
			cond = "not " + cond
		}
		return cond, nil
	case "ancestor_of", "descendant_of", "matches_lquery", "matches_ltxtquery":
		p, err := str()
		if err != nil {
			return "", err
		}
		sym := map[string]string{"ancestor_of": "@> " + p + "::ltree", "descendant_of": "<@ " + p + "::ltree", "matches_lquery": "~ " + p + "::lquery", "matches_ltxtquery": "@ " + p + "::ltxtquery"}[op]
		return o.as("ltree") + " " + sym, nil
	case "matches_any_lquery":
		list, err := textList(v)
		if err != nil {
			return "", err
		}
		return o.as("ltree") + " ? " + c.param(list) + "::text[]::lquery[]", nil
	case "depth_eq", "depth_neq", "depth_gt", "depth_gte", "depth_lt", "depth_lte":
		n, err := toInt(v)
		if err != nil {
			return "", invalid("%s takes an Int", op)
		}
		return "nlevel(" + o.as("ltree") + ") " + comparisons[strings.TrimPrefix(op, "depth_")] + " " + c.param(n) + "::int", nil
	case "cosine_distance", "l2_distance", "l1_distance", "inner_product", "hamming_distance", "jaccard_distance":
		m, ok := v.(map[string]any)
		if !ok {
			return "", invalid("%s takes {vector, threshold}", op)
		}
		th, err := toText(m["threshold"])
		if err != nil {
			return "", invalid("%s: threshold must be a number", op)
		}
		thresh := c.param(th) + "::text::float8"
		if op == "hamming_distance" || op == "jaccard_distance" {
			bits, _ := m["bits"].(string)
			return "(" + o.as("varbit") + "::bit varying " + vectorOps[op] + " " + c.param(bits) + "::text::varbit) <= " + thresh, nil
		}
		var parts []string
		for _, e := range asList(m["vector"]) {
			s, err := toText(e)
			if err != nil {
				return "", invalid("%s: vector must be a list of numbers", op)
			}
			parts = append(parts, s)
		}
		vec := c.param("["+strings.Join(parts, ",")+"]") + "::text::vector"
		if op == "inner_product" {
			// pgvector's <#> is the negated inner product: at least t is
			// at most -t.
			return "(" + o.as("vector") + " <#> " + vec + ") <= -" + thresh, nil
		}
		return "(" + o.as("vector") + " " + vectorOps[op] + " " + vec + ") <= " + thresh, nil
	}
	return "", invalid("unknown filter operator %s", op)
}

// directions maps OrderDirection values to (descending, nulls first);
// PostgreSQL's defaults put NULLs last ascending and first descending.
var directions = map[string][2]bool{
	"ASC": {false, false}, "DESC": {true, true},
	"ASC_NULLS_FIRST": {false, true}, "ASC_NULLS_LAST": {false, false},
	"DESC_NULLS_FIRST": {true, true}, "DESC_NULLS_LAST": {true, false},
}

// orderKey compiles one <Type>OrderBy item, which names exactly one field
// (input object fields from variables have no order, so one key per item
// keeps the sort order the client wrote).
func (c *compiler) orderKey(typ string, v any, base string, out *[]sortKey) error {
	m, ok := v.(map[string]any)
	if !ok {
		return invalid("orderBy items must be objects")
	}
	if f, ok := m["field"].(string); ok && c.s.ast.Types[typ].Fields.ForName("field") == nil {
		// FraiseQL's spelling: {field: "author.name", direction: DESC}, the
		// field named as in the schema or in snake_case.
		dir, _ := m["direction"].(string)
		if dir == "" {
			dir = "ASC"
		}
		parts := strings.Split(f, ".")
		var item any = dir
		for i := len(parts) - 1; i >= 0; i-- {
			item = map[string]any{parts[i]: item}
		}
		return c.orderKey(typ, c.fieldNames(typ, item), base, out)
	}
	var keys []string
	for k, val := range m {
		if val != nil {
			keys = append(keys, k)
		}
	}
	if len(keys) != 1 {
		return invalid("each orderBy item on %s must name exactly one field", typ)
	}
	k := keys[0]
	fi, named, err := c.filterField(typ, k)
	if err != nil {
		return err
	}
	if named.Kind == ast.Object {
		return c.orderKey(named.Name, m[k], fi.path(base), out)
	}
	s, _ := m[k].(string)
	dir, ok := directions[s]
	if !ok {
		return invalid("unknown order direction %q", s)
	}
	o := c.operand(typ, fi, base)
	expr, cs := o.typed(named.Name)
	*out = append(*out, sortKey{expr: expr, cast: cs, desc: dir[0], nullsFirst: dir[1], column: o.column != ""})
	return nil
}

// fieldNames renames the keys of a nested orderBy item written in
// snake_case (created_at) to the schema's field names (createdAt).
func (c *compiler) fieldNames(typ string, item any) any {
	m, ok := item.(map[string]any)
	def := c.s.ast.Types[typ]
	if !ok || def == nil {
		return item
	}
	out := map[string]any{}
	for k, v := range m {
		name := k
		if def.Fields.ForName(k) == nil {
			for _, f := range def.Fields {
				if snake(f.Name) == k {
					name = f.Name
				}
			}
		}
		next := typ
		if f := def.Fields.ForName(name); f != nil {
			next = f.Type.Name()
		}
		out[name] = c.fieldNames(next, v)
	}
	return out
}

// size returns a list size argument, defaulted and capped by the options.
func (c *compiler) size(v any, name string) (int64, error) {
	if v == nil {
		return int64(c.opts.DefaultLimit), nil
	}
	n, err := nonNegative(v, name)
	if err != nil {
		return 0, err
	}
	return min(n, int64(c.opts.MaxLimit)), nil
}

func nonNegative(v any, name string) (int64, error) {
	if v == nil {
		return 0, nil
	}
	n, err := toInt(v)
	if err != nil || n < 0 {
		return 0, invalid("%s must be a non-negative integer", name)
	}
	return n, nil
}

func asList(v any) []any {
	switch l := v.(type) {
	case nil:
		return nil
	case []any:
		return l
	}
	return []any{v}
}

func sortedAny(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func toText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case json.Number:
		return x.String(), nil
	}
	return "", invalid("a filter value must be a scalar")
}

// collectFields flattens a selection set for an object of type typ:
// fragments whose type condition applies expanded, @skip and @include
// applied, fields of one response key merged in order. typ "" takes every
// fragment (for limits, which count the worst case).
//
// As the specification's CollectFields does, each fragment is expanded at
// most once per call, however often it is spread: expanding it again could
// only yield fields already collected, and a document of fragments that
// each spread the previous one twice would otherwise cost 2^n. Merging
// appends to a copy the call owns, so many fields of one response key cost
// their total size, not its square.
func collectFields(set ast.SelectionSet, vars map[string]any, typ string, s *Schema) []*ast.Field {
	var out []*ast.Field
	index := map[string]int{}
	owned := map[int]bool{}      // fields of out that are this call's merged copies
	visited := map[string]bool{} // fragments expanded (or skipped by type) already
	var walk func(ast.SelectionSet)
	walk = func(set ast.SelectionSet) {
		for _, sel := range set {
			switch x := sel.(type) {
			case *ast.Field:
				if !included(x.Directives, vars) {
					continue
				}
				if i, ok := index[x.Alias]; ok {
					if !owned[i] {
						merged := *out[i]
						merged.SelectionSet = append(ast.SelectionSet(nil), merged.SelectionSet...)
						out[i] = &merged
						owned[i] = true
					}
					out[i].SelectionSet = append(out[i].SelectionSet, x.SelectionSet...)
					continue
				}
				index[x.Alias] = len(out)
				out = append(out, x)
			case *ast.InlineFragment:
				if included(x.Directives, vars) && applies(s, x.TypeCondition, typ) {
					walk(x.SelectionSet)
				}
			case *ast.FragmentSpread:
				if visited[x.Name] || !included(x.Directives, vars) {
					continue
				}
				visited[x.Name] = true
				if x.Definition != nil && applies(s, x.Definition.TypeCondition, typ) {
					walk(x.Definition.SelectionSet)
				}
			}
		}
	}
	walk(set)
	return out
}

// applies reports whether a fragment on cond applies to an object of typ.
func applies(s *Schema, cond, typ string) bool {
	if cond == "" || typ == "" || cond == typ {
		return true
	}
	def := s.ast.Types[cond]
	if def == nil {
		return false
	}
	switch def.Kind {
	case ast.Union:
		for _, m := range def.Types {
			if m == typ {
				return true
			}
		}
	case ast.Interface:
		if t := s.ast.Types[typ]; t != nil {
			for _, i := range t.Interfaces {
				if i == cond {
					return true
				}
			}
		}
	}
	return false
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

func toInt(v any) (int64, error) {
	switch n := v.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case float64:
		if n != float64(int64(n)) {
			return 0, errors.New("not an integer")
		}
		return int64(n), nil
	case json.Number:
		return n.Int64()
	case string:
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, errors.New("not an integer")
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
