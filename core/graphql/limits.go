package graphql

import (
	"context"
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"
)

// The limits are measured on the parsed document, before validation, in
// time linear in the document's length.
//
// Validation is where a small document can cost the most, and it cannot be
// interrupted: gqlparser's validator takes no context, its
// OverlappingFieldsCanBeMerged rule compares every pair of fields that share
// a response name in a selection set (and every pair of fragments spread
// into one, and each field with each fragment), and it walks every fragment
// definition on its own together with every fragment that one reaches. Ten
// thousand copies of one field cost it seconds. So a document reaches
// validation only once this walk has shown that what validation will visit,
// counted in selections, is within Options.MaxSelections.
//
// The walk expands fragments the way the limits must see them, every spread
// counted (a fragment spread twice costs twice), and duplicate fields are
// counted rather than merged away: the depth, alias, cost and selection
// limits see the work an operation asks for, not its merged shape. It still
// visits each fragment once per request and position (at the root or not),
// and reuses the result at every spread, so a fragment bomb costs its length
// to measure, and is refused for what it would expand to.

// measure is one request's walk of a parsed, not yet validated, document.
// Nothing in the document is trusted: fields, types and fragments may be
// unknown, fragments may spread themselves, and values may be of any kind.
type measure struct {
	ctx  context.Context
	s    *Schema
	opts *Options
	// vars are the request's variables, with the defaults of the
	// operation's variable definitions for those it does not give.
	vars  map[string]any
	frags map[string]*ast.FragmentDefinition // the first of each name, as validation takes it
	memo  map[fragmentKey]stats
	// active are the fragments being measured: spreading one again is a
	// cycle, which validation refuses and the walk must not follow.
	active map[*ast.FragmentDefinition]bool
	depth  int // nesting of the walk itself, bounded by MaxSelections
	visits int
	loops  int       // the work of the selection sets merged (see checked)
	err    *Response // the walk's refusal; it stops at the first
}

// fragmentKey is a fragment measured at the root of an operation or below
// it: the cost of a list field depends on which.
type fragmentKey struct {
	def  *ast.FragmentDefinition
	root bool
}

// stats are what the limits need of a selection set, fragments expanded.
type stats struct {
	// selections counts fields, inline fragments and fragment spreads,
	// skipped ones too: validation visits them all.
	selections int
	// aliases counts fields whose response key is not their name, skipped
	// ones too (as before the walk).
	aliases int
	// depth is the deepest nesting of included fields: a leaf is 1.
	depth int
	// cost is the estimated cost of the included fields at multiplier 1:
	// it is linear in the multiplier, so a fragment's is computed once.
	cost int
	// variables counts the variables used in arguments, skipped ones too.
	variables int
}

func (a stats) add(b stats, included bool) stats {
	a.selections = satAdd(a.selections, b.selections)
	a.aliases = satAdd(a.aliases, b.aliases)
	a.variables = satAdd(a.variables, b.variables)
	if included {
		a.depth = max(a.depth, b.depth)
		a.cost = satAdd(a.cost, b.cost)
	}
	return a
}

// checkEvery is how many selections the walk visits between two looks at
// the request's context.
const checkEvery = 1024

func newMeasure(ctx context.Context, s *Schema, opts *Options, doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any) *measure {
	m := &measure{ctx: ctx, s: s, opts: opts, vars: vars,
		frags: make(map[string]*ast.FragmentDefinition, len(doc.Fragments)),
		memo:  map[fragmentKey]stats{}, active: map[*ast.FragmentDefinition]bool{}}
	for _, f := range doc.Fragments {
		if _, ok := m.frags[f.Name]; !ok {
			m.frags[f.Name] = f
		}
	}
	if op != nil {
		copied := false
		for _, v := range op.VariableDefinitions {
			if _, ok := vars[v.Variable]; ok || v.DefaultValue == nil {
				continue
			}
			x, err := v.DefaultValue.Value(nil)
			if err != nil {
				continue // validation reports it
			}
			if !copied {
				// The request's map is the caller's: defaults go in a copy.
				m.vars = make(map[string]any, len(vars)+len(op.VariableDefinitions))
				for k, x := range vars {
					m.vars[k] = x
				}
				copied = true
			}
			m.vars[v.Variable] = x
		}
	}
	return m
}

// visit counts one selection and looks at the context now and then.
func (m *measure) visit() {
	m.visits++
	if m.visits%checkEvery == 0 {
		if err := m.ctx.Err(); err != nil && m.err == nil {
			m.err = cancelled(err)
		}
	}
}

// enter bounds the walk's own nesting: every level is a selection on one
// path of the expansion, so a walk deeper than MaxSelections measures a
// document that is refused anyway, and the bound keeps the stack small.
func (m *measure) enter() bool {
	m.depth++
	if m.depth > m.opts.MaxSelections && m.err == nil {
		m.err = m.selectionError(m.depth)
	}
	return m.err == nil
}

func (m *measure) leave() { m.depth-- }

// selectionError refuses a document that would have validation visit at
// least n selections.
func (m *measure) selectionError(n int) *Response {
	return requestError(CodeSelectionLimit, "checking the document visits at least "+strconv.Itoa(n)+
		" selections (fragments expanded where they are spread, repeated fields and their pairs counted), more than the limit of "+
		strconv.Itoa(m.opts.MaxSelections))
}

// rootType is the type an operation selects from, nil when the schema has
// none (validation reports it).
func (m *measure) rootType(op *ast.OperationDefinition) *ast.Definition {
	switch op.Operation {
	case ast.Mutation:
		return m.s.ast.Mutation
	case ast.Subscription:
		return m.s.ast.Subscription
	}
	return m.s.ast.Query
}

// set measures a selection set whose fields belong to parent (nil when the
// type is unknown); root is true at the operation's root.
func (m *measure) set(set ast.SelectionSet, parent *ast.Definition, root bool) stats {
	var st stats
	if !m.enter() {
		return st
	}
	defer m.leave()
	for _, sel := range set {
		m.visit()
		if m.err != nil {
			return st
		}
		switch x := sel.(type) {
		case *ast.Field:
			st = st.add(m.field(x, parent, root), m.included(x.Directives))
		case *ast.InlineFragment:
			t := parent
			if x.TypeCondition != "" {
				t = m.s.ast.Types[x.TypeCondition]
			}
			in := m.set(x.SelectionSet, t, root)
			in.selections = satAdd(in.selections, 1)
			in.variables = satAdd(in.variables, variables(nil, x.Directives))
			st = st.add(in, m.included(x.Directives))
		case *ast.FragmentSpread:
			in := m.spread(x, root)
			in.selections = satAdd(in.selections, 1)
			in.variables = satAdd(in.variables, variables(nil, x.Directives))
			st = st.add(in, m.included(x.Directives))
		}
	}
	return st
}

// field measures a field and what it selects.
func (m *measure) field(f *ast.Field, parent *ast.Definition, root bool) stats {
	var def *ast.FieldDefinition
	if parent != nil {
		def = parent.Fields.ForName(f.Name)
	}
	var child *ast.Definition
	if def != nil {
		child = m.s.ast.Types[def.Type.Name()]
	}
	in := m.set(f.SelectionSet, child, false)
	st := stats{selections: satAdd(in.selections, 1), aliases: in.aliases,
		variables: satAdd(in.variables, variables(f.Arguments, f.Directives))}
	if f.Alias != "" && f.Alias != f.Name {
		st.aliases = satAdd(st.aliases, 1)
	}
	if root && (f.Name == "__schema" || f.Name == "__type") {
		// Introspection is bounded by the schema, and its standard query
		// nests deeper than any data query should: no depth, no cost.
		return st
	}
	st.depth = in.depth + 1
	st.cost = 1
	if len(f.SelectionSet) > 0 {
		st.cost = satAdd(1, satMul(in.cost, m.listSize(f, def, root)))
	}
	return st
}

// deepField returns the first root field that runs and nests deeper than
// MaxDepth, for the refusal's location.
func (m *measure) deepField(set ast.SelectionSet, parent *ast.Definition, seen map[*ast.FragmentDefinition]bool) *ast.Field {
	for _, sel := range set {
		switch x := sel.(type) {
		case *ast.Field:
			if m.included(x.Directives) && m.field(x, parent, true).depth > m.opts.MaxDepth {
				return x
			}
		case *ast.InlineFragment:
			t := parent
			if x.TypeCondition != "" {
				t = m.s.ast.Types[x.TypeCondition]
			}
			if m.included(x.Directives) {
				if f := m.deepField(x.SelectionSet, t, seen); f != nil {
					return f
				}
			}
		case *ast.FragmentSpread:
			if def := m.frags[x.Name]; def != nil && !seen[def] && m.included(x.Directives) {
				seen[def] = true
				if f := m.deepField(def.SelectionSet, m.s.ast.Types[def.TypeCondition], seen); f != nil {
					return f
				}
			}
		}
	}
	return nil
}

// variables counts the variables that arguments and directives use,
// inside lists and input objects too.
func variables(args ast.ArgumentList, ds ast.DirectiveList) int {
	n := 0
	var value func(*ast.Value)
	value = func(v *ast.Value) {
		if v == nil {
			return
		}
		if v.Kind == ast.Variable {
			n++
		}
		for _, c := range v.Children {
			value(c.Value)
		}
	}
	for _, a := range args {
		value(a.Value)
	}
	for _, d := range ds {
		for _, a := range d.Arguments {
			value(a.Value)
		}
	}
	return n
}

// spread measures a fragment spread: its fragment, measured once per
// request and position.
func (m *measure) spread(s *ast.FragmentSpread, root bool) stats {
	def := m.frags[s.Name]
	if def == nil {
		return stats{} // validation reports it
	}
	if m.active[def] {
		if m.err == nil {
			m.err = requestError(CodeValidationFailed, `Cannot spread fragment "`+s.Name+`" within itself.`, loc(s.Position))
		}
		return stats{}
	}
	key := fragmentKey{def, root}
	if st, ok := m.memo[key]; ok {
		return st
	}
	m.active[def] = true
	st := m.set(def.SelectionSet, m.s.ast.Types[def.TypeCondition], root)
	delete(m.active, def)
	m.memo[key] = st
	return st
}

// listSize is how many times a field's selection is paid for, per value
// of the field (see Options.MaxCost): a root list's limit, first or last,
// else the default, capped; a list inside a row NestedListSize or its
// smaller limit; anything else once.
func (m *measure) listSize(f *ast.Field, def *ast.FieldDefinition, root bool) int {
	if def == nil {
		return 1
	}
	t := def.Type
	_, isConn := m.s.connections[t.Name()]
	switch {
	case root && (t.Elem != nil || isConn):
		n := int64(m.opts.DefaultLimit)
		for _, a := range []string{"limit", "first", "last"} {
			if x, ok := m.intArg(f, def, a); ok && x >= 0 {
				n = min(x, int64(m.opts.MaxLimit))
			}
		}
		return int(n)
	case t.Elem != nil && f.Name != "edges":
		n := m.opts.NestedListSize
		if x, ok := m.intArg(f, def, "limit"); ok && x >= 0 && x < int64(n) {
			n = int(x)
		}
		return n
	}
	return 1
}

// intArg returns an integer argument of f as the request gives it: a
// literal, a variable's value or default, or the argument's default in
// the schema. Anything else (absent, null, not an integer) is not one.
// The field is not validated yet, so nothing here may trust it.
func (m *measure) intArg(f *ast.Field, def *ast.FieldDefinition, name string) (int64, bool) {
	var v *ast.Value
	if a := f.Arguments.ForName(name); a != nil {
		v = a.Value
	} else if d := def.Arguments.ForName(name); d != nil {
		v = d.DefaultValue
	}
	if v == nil {
		return 0, false
	}
	var x any
	switch v.Kind {
	case ast.Variable:
		x = m.vars[v.Raw]
	case ast.IntValue:
		x = v.Raw
	default:
		return 0, false
	}
	n, err := toInt(x)
	return n, err == nil
}

// included applies @skip and @include as the request's variables say, read
// as execution reads them: only a true (false) Boolean skips (includes).
func (m *measure) included(ds ast.DirectiveList) bool {
	for _, d := range ds {
		if d.Name != "skip" && d.Name != "include" {
			continue
		}
		a := d.Arguments.ForName("if")
		var on bool
		if a != nil && a.Value != nil {
			switch a.Value.Kind {
			case ast.Variable:
				on, _ = m.vars[a.Value.Raw].(bool)
			case ast.BooleanValue:
				on = a.Value.Raw == "true"
			}
		}
		if on == (d.Name == "skip") {
			return false
		}
	}
	return true
}

// rootKeys adds the response keys of the included fields at an operation's
// root to keys, each fragment once: root fields are counted merged, as
// they run.
func (m *measure) rootKeys(set ast.SelectionSet, keys map[string]bool, seen map[*ast.FragmentDefinition]bool) {
	for _, sel := range set {
		switch x := sel.(type) {
		case *ast.Field:
			if m.included(x.Directives) {
				keys[x.Alias] = true
			}
		case *ast.InlineFragment:
			if m.included(x.Directives) {
				m.rootKeys(x.SelectionSet, keys, seen)
			}
		case *ast.FragmentSpread:
			if def := m.frags[x.Name]; def != nil && !seen[def] && m.included(x.Directives) {
				seen[def] = true
				m.rootKeys(def.SelectionSet, keys, seen)
			}
		}
	}
}

// mergedSet is a selection set as validation's field merging sees it: the
// fields of one response key from everywhere they merge, and the deepest
// nesting of inline fragments in it (validation compares the fields of
// each inline fragment again on its own).
type mergedSet struct {
	fields map[string]*mergedField
	inline int
}

type mergedField struct {
	n   int
	sub *mergedSet
}

func newMergedSet() *mergedSet {
	return &mergedSet{fields: map[string]*mergedField{}}
}

// pairs is n choose 2, saturating.
func pairs(n int) int {
	if n < 2 {
		return 0
	}
	return satMul(n, n-1) / 2
}

// checked is what validation's field merging sees of one selection set
// that it checks on its own (an operation's, a field's, an inline
// fragment's, a fragment definition's): the fragment spreads in it and the
// fields, its inline fragments flattened, and the fragments those spreads
// reach.
type checked struct {
	spreads, fields, reached int
}

// work is what checking the selection set costs beyond its fields' pairs
// (mergeWork): each pair of its spreads, even of one fragment, and each of
// its fields with each fragment reached.
func (c checked) work() int {
	return satAdd(pairs(c.spreads), satMul(c.fields, c.reached))
}

// merge adds a selection set, fragments expanded, to into, and returns what
// validation's field merging sees of it; it adds the work of the selection
// sets checked on their own below it to m.loops. It visits the expanded
// document, so it runs only once that is known to be within the limit.
func (m *measure) merge(set ast.SelectionSet, into *mergedSet, inline int) checked {
	var c checked
	if !m.enter() {
		return c
	}
	defer m.leave()
	into.inline = max(into.inline, inline)
	for _, sel := range set {
		m.visit()
		if m.err != nil {
			return c
		}
		switch x := sel.(type) {
		case *ast.Field:
			c.fields++
			f := into.fields[x.Alias]
			if f == nil {
				f = &mergedField{}
				into.fields[x.Alias] = f
			}
			f.n++
			if len(x.SelectionSet) > 0 {
				if f.sub == nil {
					f.sub = newMergedSet()
				}
				m.loops = satAdd(m.loops, m.merge(x.SelectionSet, f.sub, 0).work())
			}
		case *ast.InlineFragment:
			in := m.merge(x.SelectionSet, into, inline+1)
			m.loops = satAdd(m.loops, in.work())
			c.spreads = satAdd(c.spreads, in.spreads)
			c.fields = satAdd(c.fields, in.fields)
			c.reached = satAdd(c.reached, in.reached)
		case *ast.FragmentSpread:
			c.spreads++
			if def := m.frags[x.Name]; def != nil && !m.active[def] {
				m.active[def] = true
				// The fragment's own selection set is checked where
				// validation checks the fragment on its own (document);
				// here its fields merge, and what it spreads is reached.
				in := m.merge(def.SelectionSet, into, inline)
				delete(m.active, def)
				c.reached = satAdd(c.reached, satAdd(1, in.reached))
			}
		}
	}
	return c
}

// mergeWork bounds what validation's field merging compares in s and
// below: each pair of fields of one response key, again for every level of
// inline fragments.
func mergeWork(s *mergedSet) int {
	own := 0
	below := 0
	for _, f := range s.fields {
		own = satAdd(own, pairs(f.n))
		if f.sub != nil {
			below = satAdd(below, mergeWork(f.sub))
		}
	}
	return satAdd(satMul(own, 1+s.inline), below)
}

// mergeAll is the field-merging work of one operation's or fragment's
// selection set.
func (m *measure) mergeAll(set ast.SelectionSet) int {
	s := newMergedSet()
	m.loops = 0
	c := m.merge(set, s, 0)
	return satAdd(satAdd(m.loops, c.work()), mergeWork(s))
}

// checkLimits enforces the limits on a parsed document before it is
// validated, or before a validated one runs again: root fields, depth,
// aliases and cost of op (nil when the document names no operation to run,
// which validation then reports), and, when document is true, what the
// whole document asks of validation (Options.MaxSelections), which does not
// depend on the variables and so is checked once per document.
func (e *Engine) checkLimits(ctx context.Context, s *Schema, doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any, document bool) *Response {
	m := newMeasure(ctx, s, &e.opts, doc, op, vars)
	var st stats
	if op != nil {
		st = m.set(op.SelectionSet, m.rootType(op), true)
		if m.err != nil {
			return m.err
		}
		keys := map[string]bool{}
		m.rootKeys(op.SelectionSet, keys, map[*ast.FragmentDefinition]bool{})
		if len(keys) > e.opts.MaxRootFields {
			return requestError(CodeRootFieldLimit, "the operation has "+strconv.Itoa(len(keys))+" root fields, more than the limit of "+strconv.Itoa(e.opts.MaxRootFields))
		}
		if st.depth > e.opts.MaxDepth {
			var at []Location
			if f := m.deepField(op.SelectionSet, m.rootType(op), map[*ast.FragmentDefinition]bool{}); f != nil {
				at = append(at, loc(f.Position))
			}
			return requestError(CodeDepthLimit, "the query is nested deeper than the limit of "+strconv.Itoa(e.opts.MaxDepth), at...)
		}
		if st.aliases > e.opts.MaxAliases {
			return requestError(CodeAliasLimit, "the operation has "+strconv.Itoa(st.aliases)+" aliases, more than the limit of "+strconv.Itoa(e.opts.MaxAliases))
		}
	}
	if document {
		if r := m.document(doc); r != nil {
			return r
		}
	}
	if op != nil && st.cost > e.opts.MaxCost {
		return requestError(CodeCostLimit, "the operation's estimated cost "+strconv.Itoa(st.cost)+" is above the limit of "+strconv.Itoa(e.opts.MaxCost))
	}
	return nil
}

// lookupsPerSelection is how many variable lookups cost validation about
// what one selection does: it finds each variable a value uses among the
// operation's definitions one by one.
const lookupsPerSelection = 32

// document refuses a document whose validation would visit more than
// MaxSelections selections: every operation and every fragment definition
// (validation walks each on its own), fragments expanded where they are
// spread; the pairs that field merging compares, including a pair of
// fragments for each two fragment definitions (it compares each pair
// once); and the lookups of variables among many definitions.
func (m *measure) document(doc *ast.QueryDocument) *Response {
	n := pairs(len(doc.Fragments))
	for _, op := range doc.Operations {
		st := m.set(op.SelectionSet, m.rootType(op), true)
		n = satAdd(n, st.selections)
		n = satAdd(n, satMul(len(op.VariableDefinitions), st.variables)/lookupsPerSelection)
	}
	for _, f := range doc.Fragments {
		st, ok := m.memo[fragmentKey{f, false}]
		if !ok {
			st, ok = m.memo[fragmentKey{f, true}]
		}
		if !ok || m.frags[f.Name] != f {
			// A fragment no operation spreads, or a second of one name.
			m.active[f] = true
			st = m.set(f.SelectionSet, m.s.ast.Types[f.TypeCondition], false)
			delete(m.active, f)
		}
		n = satAdd(n, st.selections)
	}
	if m.err != nil {
		return m.err
	}
	if n > m.opts.MaxSelections {
		return m.selectionError(n)
	}
	// Every expansion is now known to be within the limit, so merging them
	// all costs at most that much.
	for _, op := range doc.Operations {
		n = satAdd(n, m.mergeAll(op.SelectionSet))
	}
	for _, f := range doc.Fragments {
		m.active[f] = true
		n = satAdd(n, m.mergeAll(f.SelectionSet))
		delete(m.active, f)
	}
	if m.err != nil {
		return m.err
	}
	if n > m.opts.MaxSelections {
		return m.selectionError(n)
	}
	return nil
}
