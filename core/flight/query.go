package flight

import (
	"bytes"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fraise-dev/fraise/core"
)

// Query is what a client asks of a dataset: which columns, which rows
// (Where), in which order and how many. It is the payload of a ticket, so
// DoGet runs exactly what GetFlightInfo answered for.
type Query struct {
	Dataset string   `json:"dataset"`
	Columns []string `json:"columns,omitempty"`
	Where   *Expr    `json:"where,omitempty"`
	Order   []Order  `json:"order,omitempty"`
	// Limit is the most rows returned; nil means all.
	Limit *int64 `json:"limit,omitempty"`
	// Params counts the parameters (a Flight SQL statement's ?) that wait
	// for values: Bind gives them, and Compile refuses a query with any
	// left. A JSON command has none.
	Params int `json:"params,omitempty"`
	// Bound counts the parameters Bind gave values: they may be bound
	// again (a client executes a prepared statement once per set of
	// values, each time with the handle of the last binding).
	Bound int `json:"bound,omitempty"`
	// Part, set by Split in an endpoint's ticket, restricts the query to
	// one range of an export read in parallel. A JSON command has none.
	Part *Part `json:"part,omitempty"`
}

// Order is one ORDER BY term.
type Order struct {
	Column string `json:"column"`
	Desc   bool   `json:"desc,omitempty"`
}

// Op is a filter operator; the same set as GraphQL's where.
type Op string

// The filter operators.
const (
	OpEq     Op = "eq"
	OpNeq    Op = "neq"
	OpGt     Op = "gt"
	OpGte    Op = "gte"
	OpLt     Op = "lt"
	OpLte    Op = "lte"
	OpIn     Op = "in"
	OpNin    Op = "nin"
	OpLike   Op = "like"
	OpIlike  Op = "ilike"
	OpIsNull Op = "isNull"
)

// Expr is a filter: either a boolean combination (And, Or, Not) or one
// comparison of Column with Values, kept as text and cast to the column's
// type by PostgreSQL, never written into the SQL text.
type Expr struct {
	And    []*Expr  `json:"and,omitempty"`
	Or     []*Expr  `json:"or,omitempty"`
	Not    *Expr    `json:"not,omitempty"`
	Column string   `json:"column,omitempty"`
	Op     Op       `json:"op,omitempty"`
	Values []string `json:"values,omitempty"`
	// IsNull is the operand of OpIsNull.
	IsNull bool `json:"isNull,omitempty"`
	// Slots, when set, has one entry per value: 0 for a literal, n for the
	// query's parameter n, whose value Bind writes into Values.
	Slots []int `json:"slots,omitempty"`
}

// Limits on a filter, so a hostile command cannot make compiling costly.
const (
	maxDepth   = 16
	maxNodes   = 512
	maxInList  = 10000
	maxCommand = 1 << 20
)

// ParseCommand reads the JSON command of a Flight descriptor:
//
//	{"dataset": "sales.orders", "columns": ["id", "amount"],
//	 "where": {"amount": {"gte": 100}, "or": [{"region": {"in": ["EU", "US"]}}, {"note": {"isNull": true}}]},
//	 "order": [{"column": "amount", "desc": true}], "limit": 1000}
//
// where has the shape of GraphQL's where input: an object whose keys are
// columns (mapping operators to values) or and/or (lists of such objects)
// or not (one object), all keys of one object combined with AND. Empty
// objects and lists, and objects with a key twice, are refused. Errors
// are *core.Error with CodeInvalid (CodeTooLarge for an oversized command).
func ParseCommand(b []byte) (Query, error) {
	var raw struct {
		Dataset string          `json:"dataset"`
		Columns []string        `json:"columns"`
		Where   json.RawMessage `json:"where"`
		Order   []Order         `json:"order"`
		Limit   *int64          `json:"limit"`
	}
	if len(b) > maxCommand {
		return Query{}, core.Errorf(core.CodeTooLarge, "command larger than %d bytes", maxCommand)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Query{}, core.Errorf(core.CodeInvalid, "command is not a dataset query in JSON: %v", err)
	}
	if dec.More() {
		return Query{}, core.Errorf(core.CodeInvalid, "command has trailing data")
	}
	if err := duplicateKeys(json.NewDecoder(bytes.NewReader(b)), nil, true); err != nil {
		return Query{}, err
	}
	q := Query{Dataset: raw.Dataset, Columns: raw.Columns, Order: raw.Order, Limit: raw.Limit}
	if q.Dataset == "" {
		return Query{}, core.Errorf(core.CodeInvalid, "command names no dataset")
	}
	if len(raw.Where) > 0 && !bytes.Equal(bytes.TrimSpace(raw.Where), []byte("null")) {
		var v any
		d := json.NewDecoder(bytes.NewReader(raw.Where))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return Query{}, core.Errorf(core.CodeInvalid, "where: %v", err)
		}
		n := 0
		e, err := parseWhere(v, 0, &n)
		if err != nil {
			return Query{}, err
		}
		q.Where = e
	}
	return q, nil
}

func parseWhere(v any, depth int, nodes *int) (*Expr, error) {
	if depth > maxDepth {
		return nil, core.Errorf(core.CodeInvalid, "where: nested deeper than %d", maxDepth)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, core.Errorf(core.CodeInvalid, "where: want an object, got %s", jsonKind(v))
	}
	// Empty and/or lists do not survive a ticket (Expr's fields are
	// omitempty), so they would pass GetFlightInfo and fail DoGet; an empty
	// object filters on nothing either. Both are refused here, saying where.
	if len(obj) == 0 {
		return nil, core.Errorf(core.CodeInvalid, "where: empty object (want a column, \"and\", \"or\" or \"not\"; leave where out to read every row)")
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a deterministic tree, so equal commands compile equally
	var terms []*Expr
	for _, k := range keys {
		*nodes++
		if *nodes > maxNodes {
			return nil, core.Errorf(core.CodeInvalid, "where: more than %d terms", maxNodes)
		}
		val := obj[k]
		switch k {
		case "and", "or":
			list, ok := val.([]any)
			if !ok {
				return nil, core.Errorf(core.CodeInvalid, "where.%s: want a list of objects", k)
			}
			if len(list) == 0 {
				return nil, core.Errorf(core.CodeInvalid, "where.%s: empty list (want at least one object)", k)
			}
			sub := make([]*Expr, 0, len(list))
			for _, item := range list {
				e, err := parseWhere(item, depth+1, nodes)
				if err != nil {
					return nil, err
				}
				sub = append(sub, e)
			}
			if k == "and" {
				terms = append(terms, &Expr{And: sub})
			} else {
				terms = append(terms, &Expr{Or: sub})
			}
		case "not":
			e, err := parseWhere(val, depth+1, nodes)
			if err != nil {
				return nil, err
			}
			terms = append(terms, &Expr{Not: e})
		default:
			ops, ok := val.(map[string]any)
			if !ok || len(ops) == 0 {
				return nil, core.Errorf(core.CodeInvalid, "where.%s: want an object of operators, e.g. {\"eq\": 1}", k)
			}
			names := make([]string, 0, len(ops))
			for op := range ops {
				names = append(names, op)
			}
			sort.Strings(names)
			for _, op := range names {
				e, err := comparison(k, Op(op), ops[op])
				if err != nil {
					return nil, err
				}
				terms = append(terms, e)
			}
		}
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return &Expr{And: terms}, nil
}

// keyPath is where a value sits in a command, rendered only for an error.
type keyPath struct {
	up  *keyPath
	key string
	idx int // the index in a list; -1 for an object's key
}

func (p *keyPath) String() string {
	if p == nil {
		return "command"
	}
	var segs []string
	for ; p != nil; p = p.up {
		if p.idx < 0 {
			segs = append(segs, "."+p.key)
		} else {
			segs = append(segs, "["+strconv.Itoa(p.idx)+"]")
		}
	}
	slices.Reverse(segs)
	return strings.TrimPrefix(strings.Join(segs, ""), ".")
}

// duplicateKeys reads one JSON value from dec and refuses an object that
// has a key twice: decoding keeps only the last, which would drop a filter
// without a word. Objects decoded into structs (the command, its order
// terms) are compared as encoding/json matches their fields, ignoring
// case (fold); from where down, keys are columns and operators, compared
// exactly. The value has been decoded already, so it is valid JSON nested
// no deeper than encoding/json allows.
func duplicateKeys(dec *json.Decoder, at *keyPath, fold bool) error {
	tok, err := dec.Token()
	if err != nil {
		return core.Errorf(core.CodeInvalid, "command is not JSON: %v", err)
	}
	switch tok {
	case json.Delim('{'):
		seen := make(map[string]bool)
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return core.Errorf(core.CodeInvalid, "command is not JSON: %v", err)
			}
			k, _ := tok.(string)
			norm := k
			if fold { // upper then lower, so "ſ" and "K" (Kelvin) match "s" and "k" as in encoding/json
				norm = strings.ToLower(strings.ToUpper(k))
			}
			if seen[norm] {
				return core.Errorf(core.CodeInvalid, "%s: key %q appears twice", at, k)
			}
			seen[norm] = true
			if err := duplicateKeys(dec, &keyPath{up: at, key: k, idx: -1}, fold && !strings.EqualFold(k, "where")); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := duplicateKeys(dec, &keyPath{up: at, idx: i}, fold); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return core.Errorf(core.CodeInvalid, "command is not JSON: %v", err)
	}
	return nil
}

func comparison(col string, op Op, v any) (*Expr, error) {
	e := &Expr{Column: col, Op: op}
	switch op {
	case OpIsNull:
		b, ok := v.(bool)
		if !ok {
			return nil, core.Errorf(core.CodeInvalid, "where.%s.isNull: want true or false", col)
		}
		e.IsNull = b
	case OpIn, OpNin:
		list, ok := v.([]any)
		if !ok {
			return nil, core.Errorf(core.CodeInvalid, "where.%s.%s: want a list", col, op)
		}
		if len(list) > maxInList {
			return nil, core.Errorf(core.CodeInvalid, "where.%s.%s: more than %d values", col, op, maxInList)
		}
		for _, item := range list {
			s, err := scalarText(col, op, item)
			if err != nil {
				return nil, err
			}
			e.Values = append(e.Values, s)
		}
	case OpEq, OpNeq, OpGt, OpGte, OpLt, OpLte, OpLike, OpIlike:
		s, err := scalarText(col, op, v)
		if err != nil {
			return nil, err
		}
		e.Values = []string{s}
	default:
		return nil, core.Errorf(core.CodeInvalid, "where.%s: unknown operator %q (want eq, neq, gt, gte, lt, lte, in, nin, like, ilike, isNull)", col, op)
	}
	return e, nil
}

// scalarText returns a JSON scalar as the text PostgreSQL reads it from.
func scalarText(col string, op Op, v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", core.Errorf(core.CodeInvalid, "where.%s.%s: want a string, number or boolean, got %s (use isNull for nulls)", col, op, jsonKind(v))
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	}
	return "a number"
}

// Statement is a compiled query: SQL text whose every value is a $n
// parameter in Args (strings, []string or int64), and the columns it returns.
type Statement struct {
	SQL     string
	Args    []any
	Columns []Column
	// Snapshot, for a part of an export read in parallel, is the snapshot
	// its transaction imports (Part.Snapshot); Part its number, Parts
	// how many there are.
	Snapshot    string
	Part, Parts int
}

// Compile checks q against d and builds its statement for p. Names come
// from the catalog only (quoted), values only as parameters: a request can
// change neither the statement's shape nor the view it reads.
//
// Field protection is applied in the statement, so that what p may not see
// never leaves PostgreSQL: a column p may not read (an @auth scope it does
// not hold) is NULL, one masked for p is masked; both keep their place and
// type, so the schema of an export is the same for every caller. Filtering
// or ordering by either is refused with CodeForbidden: a filter reveals a
// value one guess at a time.
func Compile(d *Dataset, q Query, p core.Principal) (Statement, error) {
	if q.Params > 0 {
		return Statement{}, core.Errorf(core.CodeInvalid, "the statement has %d parameters with no values: bind them before executing it", q.Params)
	}
	cols, err := d.columns(q.Columns)
	if err != nil {
		return Statement{}, err
	}
	c := &compiler{d: d, p: p}
	var sb strings.Builder
	sb.WriteString("select ")
	for i, col := range cols {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(col.selected(p))
	}
	sb.WriteString(" from ")
	sb.WriteString(quoteView(d.View))
	var conds []string
	if q.Where != nil {
		w, err := c.expr(q.Where, 0)
		if err != nil {
			return Statement{}, err
		}
		conds = append(conds, w)
	}
	var snapshot string
	if pt := q.Part; pt != nil {
		r, err := c.part(pt)
		if err != nil {
			return Statement{}, err
		}
		conds = append(conds, r)
		snapshot = pt.Snapshot
	}
	if len(conds) > 0 {
		sb.WriteString(" where ")
		sb.WriteString(strings.Join(conds, " and "))
	}
	for i, o := range q.Order {
		col, ok := d.Column(o.Column)
		if !ok {
			return Statement{}, core.Errorf(core.CodeInvalid, "order: dataset %s has no column %q", d.Name, o.Column)
		}
		if err := c.filterable(col); err != nil {
			return Statement{}, err
		}
		if !col.Type.comparable() {
			return Statement{}, core.Errorf(core.CodeInvalid, "order: column %q of type %s cannot be ordered", col.Name, col.Type)
		}
		if i == 0 {
			sb.WriteString(" order by ")
		} else {
			sb.WriteString(", ")
		}
		sb.WriteString(col.source())
		if o.Desc {
			sb.WriteString(" desc")
		}
	}
	if q.Limit != nil {
		if *q.Limit < 0 {
			return Statement{}, core.Errorf(core.CodeInvalid, "limit must not be negative")
		}
		sb.WriteString(" limit ")
		sb.WriteString(c.param(*q.Limit))
	}
	st := Statement{SQL: sb.String(), Args: c.args, Columns: cols, Snapshot: snapshot}
	if q.Part != nil {
		st.Part, st.Parts = q.Part.Index, q.Part.Count
	}
	return st, nil
}

// part is the condition of one range of a split export: the key at least
// Lo and below Hi, NULL keys in the first range, so that the ranges
// together hold every row once.
func (c *compiler) part(pt *Part) (string, error) {
	col, ok := c.d.Column(pt.Key)
	if !ok || !partitionable(col.Type) || !ValidSnapshot(pt.Snapshot) || pt.Count < 2 || pt.Index < 0 || pt.Index >= pt.Count {
		return "", core.Errorf(core.CodeInvalid, "malformed export part")
	}
	id, typ := col.source(), col.Type.String()
	var conds []string
	if pt.Lo != nil {
		conds = append(conds, id+" >= "+c.param(*pt.Lo)+"::text::"+typ)
	}
	if pt.Hi != nil {
		below := id + " < " + c.param(*pt.Hi) + "::text::" + typ
		if pt.Lo == nil {
			below = "(" + below + " or " + id + " is null)"
		}
		conds = append(conds, below)
	}
	if len(conds) == 0 {
		return "", core.Errorf(core.CodeInvalid, "malformed export part")
	}
	return strings.Join(conds, " and "), nil
}

// source is the SQL expression of the column's value as stored: the view's
// column, or its field in the view's data column cast to the declared type
// (numeric without its typmod, so that the decoder refuses a value the
// declared scale would round, as for a view's column).
func (col Column) source() string {
	if col.path == nil {
		return quoteIdent(col.Name)
	}
	j := jsonPath(col.path, false)
	switch {
	case col.Type.Kind == KindJSONB:
		return j
	case col.Type.Array:
		return "(case when jsonb_typeof(" + j + ") = 'array' then array(select e.v::" + castType(col.Type.Scalar()) +
			" from jsonb_array_elements_text(" + j + ") with ordinality e(v, i) order by e.i) end)"
	}
	return "(" + jsonPath(col.path, true) + ")::" + castType(col.Type)
}

// selected is the column in the select list as p may see it.
func (col Column) selected(p core.Principal) string {
	var e string
	switch pr := col.Protection; {
	case !pr.Readable(p):
		e = "null::" + col.Type.String()
	case !pr.Clear(p):
		e = col.masked()
	case col.path == nil:
		return quoteIdent(col.Name)
	default:
		e = col.source()
	}
	return e + " as " + quoteIdent(col.Name)
}

// masked hides the column's text value as GraphQL's @mask does: EMAIL keeps
// the first character and the domain (a***@acme.test), PII the first
// character (A***), SECRET nothing (***). A field's value that is not a
// JSON string (a number, a boolean) is *** whatever the kind.
func (col Column) masked() string {
	x := col.source()
	var m string
	switch col.Protection.Mask {
	case core.MaskEmail:
		m = "regexp_replace(" + x + `, '^(.)[^@]*', '\1***')`
	case core.MaskPII:
		m = "(left(" + x + ", 1) || '***')"
	default:
		m = "'***'"
	}
	if col.path == nil {
		return "(case when " + x + " is not null then " + m + " end)"
	}
	return "(case when jsonb_typeof(" + jsonPath(col.path, false) + ") = 'string' then " + m +
		" when " + x + " is not null then '***' end)"
}

// jsonPath is the value at keys in the data column: jsonb, or text when
// text is set (->> for the last key). Keys are checked by NewCatalog.
func jsonPath(keys []string, text bool) string {
	var b strings.Builder
	b.WriteString(`"data"`)
	for i, k := range keys {
		if text && i == len(keys)-1 {
			b.WriteString("->>'" + k + "'")
		} else {
			b.WriteString("->'" + k + "'")
		}
	}
	return b.String()
}

// castType is the type a field's text is cast to.
func castType(t Type) string {
	if t.Kind == KindNumeric {
		return "numeric"
	}
	return t.String()
}

type compiler struct {
	d    *Dataset
	p    core.Principal
	args []any
}

// filterable refuses a filter or an order on a column p does not read in
// the clear, as GraphQL refuses one on a field p may not read or sees
// masked.
func (c *compiler) filterable(col Column) error {
	if col.Protection.Clear(c.p) {
		return nil
	}
	return core.Errorf(core.CodeForbidden, "not allowed to filter or order by column %s of dataset %s", col.Name, c.d.Name).WithOp("flight.Compile")
}

func (c *compiler) param(v any) string {
	c.args = append(c.args, v)
	return "$" + strconv.Itoa(len(c.args))
}

func (c *compiler) expr(e *Expr, depth int) (string, error) {
	if depth > maxDepth {
		return "", core.Errorf(core.CodeInvalid, "where: nested deeper than %d", maxDepth)
	}
	join := func(list []*Expr, sep, empty string) (string, error) {
		if len(list) == 0 {
			return empty, nil
		}
		parts := make([]string, len(list))
		for i, s := range list {
			p, err := c.expr(s, depth+1)
			if err != nil {
				return "", err
			}
			parts[i] = p
		}
		return "(" + strings.Join(parts, sep) + ")", nil
	}
	switch {
	case e.And != nil:
		return join(e.And, " and ", "true")
	case e.Or != nil:
		return join(e.Or, " or ", "false")
	case e.Not != nil:
		s, err := c.expr(e.Not, depth+1)
		if err != nil {
			return "", err
		}
		return "(not " + s + ")", nil
	}
	col, ok := c.d.Column(e.Column)
	if !ok {
		return "", core.Errorf(core.CodeInvalid, "where: dataset %s has no column %q", c.d.Name, e.Column)
	}
	if err := c.filterable(col); err != nil {
		return "", err
	}
	id := col.source()
	typ := col.Type.String()
	if col.Type.Kind == KindNumeric {
		typ = "numeric" // the column's typmod would round a filter value, not compare it
	}
	if e.Op == OpIsNull {
		if e.IsNull {
			return id + " is null", nil
		}
		return id + " is not null", nil
	}
	if !col.Type.comparable() {
		return "", core.Errorf(core.CodeInvalid, "where: column %q of type %s supports only isNull", col.Name, col.Type)
	}
	one := func(sqlOp string) (string, error) {
		if len(e.Values) != 1 {
			return "", core.Errorf(core.CodeInvalid, "where.%s.%s: want one value", col.Name, e.Op)
		}
		return id + " " + sqlOp + " " + c.param(e.Values[0]) + "::text::" + typ, nil
	}
	switch e.Op {
	case OpEq:
		return one("=")
	case OpNeq:
		return one("<>")
	case OpGt:
		return one(">")
	case OpGte:
		return one(">=")
	case OpLt:
		return one("<")
	case OpLte:
		return one("<=")
	case OpLike, OpIlike:
		if col.Type.Kind != KindText {
			return "", core.Errorf(core.CodeInvalid, "where.%s.%s: only text columns support %s", col.Name, e.Op, e.Op)
		}
		if len(e.Values) != 1 {
			return "", core.Errorf(core.CodeInvalid, "where.%s.%s: want one value", col.Name, e.Op)
		}
		return id + " " + string(e.Op) + " " + c.param(e.Values[0]) + "::text", nil
	case OpIn:
		return id + " = any(" + c.param(nonNil(e.Values)) + "::text[]::" + typ + "[])", nil
	case OpNin:
		return id + " <> all(" + c.param(nonNil(e.Values)) + "::text[]::" + typ + "[])", nil
	}
	return "", core.Errorf(core.CodeInvalid, "where.%s: unknown operator %q", col.Name, e.Op)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteView(v string) string {
	parts := strings.Split(v, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}
