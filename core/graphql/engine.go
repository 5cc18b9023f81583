package graphql

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sync"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/fraise-dev/fraise/core"
)

// Options are the execution limits.
type Options struct {
	// MaxDepth bounds selection nesting (0: 10).
	MaxDepth int
	// DefaultLimit is a list's size without a limit argument; MaxLimit caps
	// any limit (0: 100 and 1000).
	DefaultLimit, MaxLimit int
	// Introspection allows __schema and __type queries.
	Introspection bool
}

// Request is a GraphQL request as GraphQL over HTTP carries it.
type Request struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
}

// Location is a position in the request document.
type Location struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Error is a GraphQL error as the specification shapes it.
type Error struct {
	Message    string         `json:"message"`
	Locations  []Location     `json:"locations,omitempty"`
	Path       []any          `json:"path,omitempty"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

// Response is a GraphQL response. Data is nil for request errors (the
// request never executed: "data" is then absent) and JSON null when
// execution started and failed as a whole.
type Response struct {
	Data   json.RawMessage `json:"data,omitempty"`
	Errors []*Error        `json:"errors,omitempty"`
}

// Error codes of extensions.code that are GraphQL's own; execution errors
// carry core codes.
const (
	CodeParseFailed      = "GRAPHQL_PARSE_FAILED"
	CodeValidationFailed = "GRAPHQL_VALIDATION_FAILED"
	CodeDepthLimit       = "DEPTH_LIMIT_EXCEEDED"
	CodeIntrospection    = "INTROSPECTION_DISABLED"
	CodeBadRequest       = "BAD_REQUEST"
)

// Engine executes requests against a schema.
type Engine struct {
	schema *Schema
	db     core.TenantDB
	opts   Options

	mu   sync.Mutex
	docs map[[32]byte]*ast.QueryDocument // validated documents by hash
}

// maxCachedDocs bounds the document cache; past it, an arbitrary entry goes.
const maxCachedDocs = 1024

// NewEngine returns an Engine reading through db.
func NewEngine(s *Schema, db core.TenantDB, o Options) *Engine {
	if o.MaxDepth <= 0 {
		o.MaxDepth = 10
	}
	if o.DefaultLimit <= 0 {
		o.DefaultLimit = 100
	}
	if o.MaxLimit <= 0 {
		o.MaxLimit = 1000
	}
	return &Engine{schema: s, db: db, opts: o, docs: map[[32]byte]*ast.QueryDocument{}}
}

func requestError(code, msg string, locs ...Location) *Response {
	return &Response{Errors: []*Error{{Message: msg, Locations: locs, Extensions: map[string]any{"code": code}}}}
}

// Execute runs req as the principal in ctx. It never returns nil.
func (e *Engine) Execute(ctx context.Context, req Request) *Response {
	p, ok := core.PrincipalFrom(ctx)
	if !ok {
		return requestError(string(core.CodeUnauthenticated), "authentication required")
	}
	if req.Query == "" {
		return requestError(CodeBadRequest, "missing query")
	}
	doc, resp := e.document(req.Query)
	if resp != nil {
		return resp
	}
	op, resp := pickOperation(doc, req.OperationName)
	if resp != nil {
		return resp
	}
	if op.Operation != ast.Query {
		return requestError(CodeBadRequest, "only query operations are supported by this schema")
	}
	vars, err := validator.VariableValues(e.schema.ast, op, req.Variables)
	if err != nil {
		var ge *gqlerror.Error
		if errors.As(err, &ge) {
			return requestError(CodeValidationFailed, ge.Message)
		}
		return requestError(CodeValidationFailed, err.Error())
	}
	roots, err := collectFields(op.SelectionSet, vars)
	if err != nil {
		return requestError(CodeValidationFailed, err.Error())
	}
	for _, f := range roots {
		if depth(f.SelectionSet, vars, 1) > e.opts.MaxDepth {
			return requestError(CodeDepthLimit, "query is nested deeper than the limit", loc(f.Position))
		}
		if f.Name == "__schema" || f.Name == "__type" {
			if !e.opts.Introspection {
				return requestError(CodeIntrospection, "introspection is disabled", loc(f.Position))
			}
			return requestError(CodeBadRequest, "introspection queries are not executed by this server yet", loc(f.Position))
		}
	}
	return e.run(ctx, p.Tenant, roots, vars)
}

// run executes every root field in one tenant transaction, one statement
// each, and assembles the data object in request order.
func (e *Engine) run(ctx context.Context, tenant string, roots []*ast.Field, vars map[string]any) *Response {
	type result struct {
		key   string
		value json.RawMessage
	}
	results := make([]result, 0, len(roots))
	var fieldErrs []*Error
	err := e.db.InTenant(ctx, tenant, func(ctx context.Context, q core.Querier) error {
		for _, f := range roots {
			if f.Name == "__typename" {
				b, _ := json.Marshal(f.ObjectDefinition.Name)
				results = append(results, result{f.Alias, b})
				continue
			}
			sql, args, err := e.compileRoot(f, vars)
			if err != nil {
				fieldErrs = append(fieldErrs, &Error{Message: err.Error(), Path: []any{f.Alias}, Locations: []Location{loc(f.Position)},
					Extensions: map[string]any{"code": string(core.CodeInvalid)}})
				results = append(results, result{f.Alias, json.RawMessage("null")})
				continue
			}
			v, err := q.QueryJSON(ctx, sql, args...)
			if err != nil {
				return err
			}
			if v == nil {
				v = json.RawMessage("null")
			}
			results = append(results, result{f.Alias, v})
		}
		return nil
	})
	if err != nil {
		return &Response{Data: json.RawMessage("null"), Errors: []*Error{{
			Message: core.ErrorMessage(err), Extensions: map[string]any{"code": string(core.ErrorCode(err))},
		}}}
	}
	buf := make([]byte, 0, 256)
	buf = append(buf, '{')
	for i, r := range results {
		if i > 0 {
			buf = append(buf, ',')
		}
		k, _ := json.Marshal(r.key)
		buf = append(buf, k...)
		buf = append(buf, ':')
		buf = append(buf, r.value...)
	}
	buf = append(buf, '}')
	return &Response{Data: buf, Errors: fieldErrs}
}

// document parses and validates query, from the cache when seen before.
func (e *Engine) document(query string) (*ast.QueryDocument, *Response) {
	key := sha256.Sum256([]byte(query))
	e.mu.Lock()
	doc, ok := e.docs[key]
	e.mu.Unlock()
	if ok {
		return doc, nil
	}
	doc, err := parser.ParseQuery(&ast.Source{Name: "request", Input: query})
	if err != nil {
		var ge *gqlerror.Error
		if errors.As(err, &ge) {
			return nil, &Response{Errors: []*Error{convert(ge, CodeParseFailed)}}
		}
		return nil, requestError(CodeParseFailed, err.Error())
	}
	if errs := validator.ValidateWithRules(e.schema.ast, doc, nil); len(errs) > 0 {
		r := &Response{}
		for _, ge := range errs {
			r.Errors = append(r.Errors, convert(ge, CodeValidationFailed))
		}
		return nil, r
	}
	e.mu.Lock()
	if len(e.docs) >= maxCachedDocs {
		for k := range e.docs {
			delete(e.docs, k)
			break
		}
	}
	e.docs[key] = doc
	e.mu.Unlock()
	return doc, nil
}

func pickOperation(doc *ast.QueryDocument, name string) (*ast.OperationDefinition, *Response) {
	if name == "" {
		if len(doc.Operations) != 1 {
			return nil, requestError(CodeBadRequest, "operationName is required when the document has several operations")
		}
		return doc.Operations[0], nil
	}
	if op := doc.Operations.ForName(name); op != nil {
		return op, nil
	}
	return nil, requestError(CodeBadRequest, "no operation named "+name)
}

func depth(set ast.SelectionSet, vars map[string]any, d int) int {
	fields, _ := collectFields(set, vars)
	max := d
	for _, f := range fields {
		if len(f.SelectionSet) > 0 {
			if n := depth(f.SelectionSet, vars, d+1); n > max {
				max = n
			}
		}
	}
	return max
}

func convert(ge *gqlerror.Error, code string) *Error {
	out := &Error{Message: ge.Message, Extensions: map[string]any{"code": code}}
	for _, l := range ge.Locations {
		out.Locations = append(out.Locations, Location{Line: l.Line, Column: l.Column})
	}
	return out
}

func loc(p *ast.Position) Location {
	if p == nil {
		return Location{}
	}
	return Location{Line: p.Line, Column: p.Column}
}
