package graphql

import (
	"context"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
)

// Estimate is what running an operation would cost, measured as Execute
// measures it before it runs: the console's explorer shows it before a
// query is sent.
type Estimate struct {
	// Cost is the operation's estimated cost; Limit is Options.MaxCost.
	Cost, Limit int
	// Depth is how deep its included fields nest; MaxDepth the limit.
	Depth, MaxDepth int
	// Errors are what Execute would refuse it for: parse and validation
	// errors and every limit it passes; empty when it would run.
	Errors []*Error
}

// Estimate measures the operation opName of query with vars against the
// schema being served, without running it. It reads no tenant's data.
func (e *Engine) Estimate(ctx context.Context, query, opName string, vars map[string]any) Estimate {
	s := e.Schema()
	est := Estimate{Limit: e.opts.MaxCost, MaxDepth: e.opts.MaxDepth}
	if _, r := e.scan(ctx, query, opName); r != nil {
		est.Errors = r.Errors
		return est
	}
	doc, err := parser.ParseQuery(&ast.Source{Name: "request", Input: query})
	if err != nil {
		est.Errors = requestError(CodeParseFailed, err.Error()).Errors
		return est
	}
	op, pickErr := pickOperation(doc, opName)
	if op != nil {
		m := newMeasure(ctx, s, &e.opts, doc, op, vars)
		st := m.set(op.SelectionSet, m.rootType(op), true)
		est.Cost, est.Depth = st.cost, st.depth
	}
	if r := e.checkLimits(ctx, s, doc, op, vars, true); r != nil {
		est.Errors = append(est.Errors, r.Errors...)
		return est
	}
	for _, ge := range validator.ValidateWithRules(s.ast, doc, nil) {
		est.Errors = append(est.Errors, convert(ge, CodeValidationFailed))
	}
	if pickErr != nil {
		est.Errors = append(est.Errors, pickErr.Errors...)
	}
	return est
}
