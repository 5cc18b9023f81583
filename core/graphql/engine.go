package graphql

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql/request"
)

// Options are the execution limits and modes. Zero values take the
// defaults NewEngine documents.
type Options struct {
	// MaxDepth bounds selection nesting (0: 10).
	MaxDepth int
	// MaxAliases bounds the aliased fields of an operation (0: 30).
	MaxAliases int
	// MaxRootFields bounds the root fields of an operation (0: 10).
	MaxRootFields int
	// MaxCost bounds the estimated cost: one per field, multiplied by the
	// size of every list it is in (0: 50000).
	MaxCost int
	// NestedListSize is the size assumed for lists inside a row's JSON in
	// the cost estimate (0: 10).
	NestedListSize int
	// MaxSelections bounds the work of checking a document, counted in
	// selections (fields, fragment spreads, inline fragments): those of
	// every operation and every fragment definition, each fragment expanded
	// where it is spread and repeated fields counted, plus the pairs that
	// validation compares when it merges fields of one response name (0:
	// 5000). It is checked before validation, whose cost grows with the
	// square of repeated fields.
	MaxSelections int
	// MaxResultBytes bounds the response data (0: 8 MiB).
	MaxResultBytes int
	// DefaultLimit is a list's size without a limit argument; MaxLimit caps
	// any limit (0: 100 and 1000).
	DefaultLimit, MaxLimit int
	// Introspection allows __schema and __type queries.
	Introspection bool
	// APQ accepts automatic persisted queries: a request may carry
	// extensions.persistedQuery.sha256Hash instead of the query, after
	// registering it once with both.
	APQ bool
	// APQCacheSize bounds the registered automatic persisted queries (0: 2000).
	APQCacheSize int
	// Trusted, when non-nil, is the trusted-documents mode: only the
	// documents it holds (by the hex SHA-256 of their text) run.
	Trusted map[string]string
	// Persisted, when non-nil, holds APQ registrations instead of this
	// engine's memory, shared with other replicas and extauthz (see
	// persistedDocument); APQCacheSize then does not apply.
	Persisted core.PersistedDocuments
	// Hooks run Go code for particular root fields (see Hook).
	Hooks Hooks
	// Session, when set, gives each mutation's transaction its caller's
	// subject, for the database's functions to read who calls them.
	Session core.Session
	// Audit, when set, records the mutations whose transaction failed
	// (those that ran wrote their own audit rows, rolled back with it).
	Audit core.AuditLog
	// Batcher, when set, runs a query's statements in one round trip
	// instead of one InTenant transaction that sends them one by one. It
	// must see the same database as the engine's TenantDB (usually it is
	// the same value); requests with hooks take InTenant regardless.
	Batcher core.TenantBatcher
	// Writer, when set, runs a mutation's transaction in one round trip,
	// as Batcher does a query's.
	Writer core.TenantWriter
}

// Request is a GraphQL request as GraphQL over HTTP carries it.
type Request struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
	// ReadOnly refuses mutations with MUTATION_NOT_ALLOWED: GraphQL over
	// HTTP sets it for GET, which must not change state.
	ReadOnly bool `json:"-"`
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
	// Err is the cause of an error the engine did not make itself (a
	// database failure, a hook's error), never shown to a client: the
	// transport's edge logs it when the error is internal (see Code).
	Err error `json:"-"`
}

// Response is a GraphQL response. Data is nil for request errors (the
// request never executed: "data" is then absent) and JSON null when
// execution started and failed as a whole.
type Response struct {
	Data   json.RawMessage `json:"data,omitempty"`
	Errors []*Error        `json:"errors,omitempty"`
	// body is the whole response, {"data":...}, when the engine built it
	// in one piece; Data is then a slice of it.
	body []byte
}

// Body returns the whole response as JSON, {"data":...}, when the engine
// built one with data and without errors, so that a transport can write it
// without copying the data again; ok is false otherwise. It reflects Data
// as the engine set it.
func (r *Response) Body() (body []byte, ok bool) {
	if r.body == nil || len(r.Errors) > 0 {
		return nil, false
	}
	return r.body, true
}

// The values of extensions.code for errors that are GraphQL's own;
// execution errors carry core codes (INVALID, FORBIDDEN, ...).
const (
	CodeParseFailed          = "GRAPHQL_PARSE_FAILED"
	CodeValidationFailed     = "GRAPHQL_VALIDATION_FAILED"
	CodeBadRequest           = "BAD_REQUEST"
	CodeIntrospection        = "INTROSPECTION_DISABLED"
	CodeDepthLimit           = "DEPTH_LIMIT_EXCEEDED"
	CodeAliasLimit           = "ALIAS_LIMIT_EXCEEDED"
	CodeRootFieldLimit       = "ROOT_FIELD_LIMIT_EXCEEDED"
	CodeCostLimit            = "COST_LIMIT_EXCEEDED"
	CodeSelectionLimit       = "SELECTION_LIMIT_EXCEEDED"
	CodeResultTooLarge       = "RESULT_TOO_LARGE"
	CodeStatementTimeout     = "STATEMENT_TIMEOUT"
	CodePersistedNotFound    = "PERSISTED_QUERY_NOT_FOUND"
	CodePersistedUnsupported = "PERSISTED_QUERY_NOT_SUPPORTED"
	CodePersistedHash        = "PERSISTED_QUERY_HASH_MISMATCH"
	CodeNotTrusted           = "OPERATION_NOT_TRUSTED"
	CodeMutationNotAllowed   = "MUTATION_NOT_ALLOWED"
)

// Engine executes requests against a schema.
type Engine struct {
	// schema is the schema requests run against: SetSchema replaces it
	// while requests run, each request keeping the one it started with.
	schema atomic.Pointer[Schema]
	db     core.TenantDB
	opts   Options

	mu    sync.Mutex
	plans map[planKey]*plan
	// valid holds the token hashes (see scan) of the documents validation
	// passed: a document that differs from one of them only in comments or
	// formatting is parsed again, for its positions, but not validated.
	valid map[[32]byte]bool
	apq   map[string]string // sha256 hex -> registered query
}

// planKey identifies a plan: the document's hash and the operation name.
type planKey struct {
	hash [32]byte
	op   string
}

// plan is the validated operation of a document, cached so a repeated
// request skips parsing, validation and operation lookup.
type plan struct {
	doc    *ast.QueryDocument
	op     *ast.OperationDefinition
	schema *Schema // what it was validated against
}

// maxPlans bounds the plan cache and the valid documents' hashes; past it,
// an arbitrary entry goes.
const maxPlans = 2048

// NewEngine returns an Engine reading through db.
func NewEngine(s *Schema, db core.TenantDB, o Options) *Engine {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxDepth, 10)
	def(&o.MaxAliases, 30)
	def(&o.MaxRootFields, 10)
	def(&o.MaxCost, 50000)
	def(&o.NestedListSize, 10)
	def(&o.MaxSelections, 5000)
	def(&o.MaxResultBytes, 8<<20)
	def(&o.DefaultLimit, 100)
	def(&o.MaxLimit, 1000)
	def(&o.APQCacheSize, 2000)
	e := &Engine{db: db, opts: o, plans: map[planKey]*plan{}, valid: map[[32]byte]bool{}, apq: map[string]string{}}
	e.schema.Store(s)
	return e
}

// SetSchema replaces the schema requests run against (a schema generated
// anew from the database, say): requests that started keep the schema they
// started with; plans validated against the previous one are forgotten.
// Check s first.
func (e *Engine) SetSchema(s *Schema) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.schema.Store(s)
	clear(e.plans)
	clear(e.valid)
}

// Schema returns the schema requests run against now.
func (e *Engine) Schema() *Schema { return e.schema.Load() }

func requestError(code, msg string, locs ...Location) *Response {
	return &Response{Errors: []*Error{{Message: msg, Locations: locs, Extensions: map[string]any{"code": code}}}}
}

// cancelled answers a request whose context ended while the engine worked
// on it: the client went away (UNAVAILABLE) or its deadline passed
// (TIMEOUT), and nothing more is done for it.
func cancelled(err error) *Response {
	if errors.Is(err, context.DeadlineExceeded) {
		return requestError(string(core.CodeTimeout), "the request's deadline passed")
	}
	return requestError(string(core.CodeUnavailable), "request cancelled")
}

// Execute runs req as the principal in ctx. It never returns nil.
func (e *Engine) Execute(ctx context.Context, req Request) *Response {
	p, ok := core.PrincipalFrom(ctx)
	if !ok {
		return requestError(string(core.CodeUnauthenticated), "authentication required")
	}
	if err := ctx.Err(); err != nil {
		return cancelled(err)
	}
	query, resp := e.resolveDocument(ctx, p.Tenant, req)
	if resp != nil {
		return resp
	}
	schema := e.schema.Load()
	pl, resp := e.plan(ctx, schema, query, req.OperationName, req.Variables)
	if resp != nil {
		return resp
	}
	if err := ctx.Err(); err != nil {
		return cancelled(err)
	}
	op := pl.op
	vars, err := validator.VariableValues(schema.ast, op, req.Variables)
	if err != nil {
		var ge *gqlerror.Error
		if errors.As(err, &ge) {
			return &Response{Errors: []*Error{convert(ge, CodeValidationFailed)}}
		}
		return requestError(CodeValidationFailed, err.Error())
	}
	var root *ast.Definition
	switch op.Operation {
	case ast.Query:
		root = schema.ast.Query
	case ast.Mutation:
		if req.ReadOnly {
			return requestError(CodeMutationNotAllowed, "mutations are not allowed in a read-only request (use POST)")
		}
		root = schema.ast.Mutation
	default:
		return requestError(CodeBadRequest, "subscriptions are not supported")
	}
	roots := collectFields(op.SelectionSet, vars, root.Name, schema)
	c := &compiler{s: schema, vars: vars, p: p, opts: &e.opts}
	stmts := make([]stmt, 0, len(roots))
	var fieldErrs []*Error
	for _, f := range roots {
		if d := rootAuth(f); d != "" && !p.HasScope(d) {
			return requestError(string(core.CodeForbidden), "not allowed to run "+root.Name+"."+f.Name, loc(f.Position))
		}
	}
	for _, f := range roots {
		st := stmt{field: f}
		switch {
		case f.Name == "__typename":
			st.constant, _ = json.Marshal(root.Name)
		case f.Name == "__schema" || f.Name == "__type":
			if !e.opts.Introspection {
				return requestError(CodeIntrospection, "introspection is disabled", loc(f.Position))
			}
			v, err := introspect(ctx, schema, f, vars)
			if cerr := ctx.Err(); cerr != nil {
				return cancelled(cerr)
			}
			if err != nil {
				return requestError(CodeBadRequest, err.Error(), loc(f.Position))
			}
			st.constant = v
		case schema.resolved[f.Name] && op.Operation == ast.Query:
			st.sql, st.hook, err = c.compileResolved(ctx, f, e.opts.Hooks)
		case op.Operation == ast.Mutation:
			if st.sql, err = c.compileMutation(ctx, f); err == nil {
				st.mutation = schema.functions[f.Name]
			}
		default:
			st.sql, st.constant, err = c.compileQuery(ctx, f)
		}
		if cerr := ctx.Err(); cerr != nil {
			// The client went away or ran out of time while this field
			// compiled: its error says nothing about the field.
			return cancelled(cerr)
		}
		if err == nil && st.hook == nil && st.sql != "" {
			st.hook = c.checkHook(f, e.opts.Hooks)
		}
		if err != nil {
			if core.ErrorCode(err) == core.CodeForbidden {
				// Refuse the whole operation: partial data would tell the
				// client what the hidden field held back.
				return requestError(string(core.CodeForbidden), core.ErrorMessage(err), loc(f.Position))
			}
			fieldErrs = append(fieldErrs, fieldError(f, err))
			st.constant = json.RawMessage("null")
		}
		st.args = c.args
		c.args = nil
		stmts = append(stmts, st)
	}
	return e.run(ctx, p, op.Operation, stmts, fieldErrs)
}

// rootAuth returns the scope an @auth directive on a root field, or else
// on its root type, requires.
func rootAuth(f *ast.Field) string {
	var ds []ast.DirectiveList
	if f.Definition != nil {
		ds = append(ds, f.Definition.Directives)
	}
	if f.ObjectDefinition != nil {
		ds = append(ds, f.ObjectDefinition.Directives)
	}
	for _, list := range ds {
		if d := list.ForName("auth"); d != nil {
			if a := d.Arguments.ForName("scope"); a != nil && a.Value != nil {
				return a.Value.Raw
			}
		}
	}
	return ""
}

// stmt is one compiled root field: SQL and its parameters, or a constant
// answered without the database.
type stmt struct {
	field    *ast.Field
	sql      string
	args     []any
	constant json.RawMessage
	mutation string // the function a mutation calls, for the audit row
	hook     *hookRun
}

// errResultTooLarge aborts a transaction whose result passed the limit.
var errResultTooLarge = core.Errorf(core.CodeTooLarge, "the result is larger than the limit")

// run executes the statements in one tenant transaction, one statement
// per root field, and assembles the data object in request order.
func (e *Engine) run(ctx context.Context, p core.Principal, kind ast.Operation, stmts []stmt, fieldErrs []*Error) *Response {
	results := make([]json.RawMessage, len(stmts))
	needDB := false
	for i, st := range stmts {
		if st.sql == "" {
			results[i] = st.constant
		} else {
			needDB = true
		}
	}
	if b := e.opts.Batcher; b != nil && needDB && kind == ast.Query && !hooked(stmts) {
		if err := e.runBatch(ctx, b, p, stmts, results); err != nil {
			return &Response{Data: json.RawMessage("null"), Errors: []*Error{{
				Message: core.ErrorMessage(err), Extensions: map[string]any{"code": extensionCode(err)}, Err: err,
			}}}
		}
		needDB = false
	}
	if w := e.opts.Writer; w != nil && needDB && kind == ast.Mutation && !hooked(stmts) {
		// The whole transaction in one round trip: a connection and the
		// rows a mutation locks are held for one exchange with the
		// database, not five.
		subject := ""
		if e.opts.Session != nil {
			subject = p.Subject
		}
		if err := e.runWrite(ctx, w, p, subject, stmts, results); err != nil {
			e.auditFailure(ctx, p, stmts, err)
			return &Response{Data: json.RawMessage("null"), Errors: []*Error{{
				Message: core.ErrorMessage(err), Extensions: map[string]any{"code": extensionCode(err)}, Err: err,
			}}}
		}
		needDB = false
	}
	if needDB {
		err := e.db.InTenant(ctx, p.Tenant, func(ctx context.Context, q core.Querier) error {
			if kind == ast.Mutation && e.opts.Session != nil {
				// Functions may read who calls them, as they read the tenant.
				if err := e.opts.Session.SetSubject(ctx, q, p.Subject); err != nil {
					return err
				}
			}
			size := 0
			for i, st := range stmts {
				if st.sql == "" {
					continue
				}
				if err := st.hook.before(ctx, q, p, st.args); err != nil {
					return err
				}
				v, err := q.QueryJSON(ctx, st.sql, st.args...)
				if err != nil {
					return err
				}
				if v == nil {
					v = json.RawMessage("null")
				}
				if size += len(v); size > e.opts.MaxResultBytes {
					return errResultTooLarge
				}
				results[i] = v
			}
			return nil
		})
		if err != nil {
			if kind == ast.Mutation {
				e.auditFailure(ctx, p, stmts, err)
			}
			return &Response{Data: json.RawMessage("null"), Errors: []*Error{{
				Message: core.ErrorMessage(err), Extensions: map[string]any{"code": extensionCode(err)}, Err: err,
			}}}
		}
	}
	for _, fe := range fieldErrs {
		// A non-null root field that failed nulls the whole data object,
		// as the specification propagates nulls.
		for _, st := range stmts {
			if len(fe.Path) == 1 && fe.Path[0] == st.field.Alias && st.field.Definition != nil && st.field.Definition.Type.NonNull {
				return &Response{Data: json.RawMessage("null"), Errors: fieldErrs}
			}
		}
	}
	// One allocation of the exact size holds the whole response, the data
	// inside it: the data is the bulk of a read's allocations, built by
	// PostgreSQL, and is copied here once.
	const open = `{"data":`
	keys := make([][]byte, len(stmts))
	n := len(open) + 3 // {, } and the closing }
	for i, st := range stmts {
		keys[i], _ = json.Marshal(st.field.Alias)
		n += len(keys[i]) + 2 + len(results[i]) // key, :, value and , (or })
	}
	buf := make([]byte, 0, n)
	buf = append(buf, open...)
	buf = append(buf, '{')
	for i := range stmts {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, keys[i]...)
		buf = append(buf, ':')
		buf = append(buf, results[i]...)
	}
	buf = append(buf, '}')
	data := buf[len(open):len(buf):len(buf)]
	buf = append(buf, '}')
	return &Response{Data: data, Errors: fieldErrs, body: buf}
}

// runBatch runs a query's statements in one round trip, filling results.
func (e *Engine) runBatch(ctx context.Context, b core.TenantBatcher, p core.Principal, stmts []stmt, results []json.RawMessage) error {
	batch, idx := batchOf(stmts)
	vals, err := b.QueryJSONBatch(ctx, p.Tenant, batch)
	if err != nil {
		return err
	}
	return e.fill(vals, idx, results)
}

// runWrite runs a mutation's statements in one round trip, filling
// results.
func (e *Engine) runWrite(ctx context.Context, w core.TenantWriter, p core.Principal, subject string, stmts []stmt, results []json.RawMessage) error {
	batch, idx := batchOf(stmts)
	// Checked before the commit: a result too large to answer must not
	// leave its writes behind.
	return w.ExecJSONBatch(ctx, p.Tenant, subject, batch, func(vals [][]byte) error { return e.fill(vals, idx, results) })
}

// batchOf returns the statements that run SQL, and the index of each in
// stmts.
func batchOf(stmts []stmt) ([]core.Statement, []int) {
	batch := make([]core.Statement, 0, len(stmts))
	idx := make([]int, 0, len(stmts))
	for i, st := range stmts {
		if st.sql != "" {
			batch = append(batch, core.Statement{SQL: st.sql, Args: st.args})
			idx = append(idx, i)
		}
	}
	return batch, idx
}

// fill puts a batch's values in results at idx, failing when they are
// larger together than MaxResultBytes.
func (e *Engine) fill(vals [][]byte, idx []int, results []json.RawMessage) error {
	size := 0
	for j, i := range idx {
		v := vals[j]
		if v == nil {
			v = json.RawMessage("null")
		}
		if size += len(v); size > e.opts.MaxResultBytes {
			return errResultTooLarge
		}
		results[i] = v
	}
	return nil
}

// auditFailure records mutations whose transaction failed: their own audit
// rows were rolled back with it, and a failed attempt is what an audit
// trail most needs.
// The record is written even when the client has gone.
func (e *Engine) auditFailure(ctx context.Context, p core.Principal, stmts []stmt, cause error) {
	if e.opts.Audit == nil {
		return
	}
	var names []string
	for _, st := range stmts {
		if st.mutation != "" {
			names = append(names, st.field.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	_ = e.opts.Audit.MutationsFailed(context.WithoutCancel(ctx), p.Tenant, p.Subject, names, "error:"+extensionCode(cause))
}

// extensionCode is the one table from core codes to extensions.code.
func extensionCode(err error) string {
	switch c := core.ErrorCode(err); c {
	case core.CodeTimeout:
		return CodeStatementTimeout
	case core.CodeTooLarge:
		return CodeResultTooLarge
	default:
		return string(c)
	}
}

func fieldError(f *ast.Field, err error) *Error {
	return &Error{Message: core.ErrorMessage(err), Path: []any{f.Alias}, Locations: []Location{loc(f.Position)},
		Extensions: map[string]any{"code": extensionCode(err)}, Err: err}
}

// ParseTrustedDocuments reads a trusted-documents manifest: a JSON object
// from the hex SHA-256 of each document to the document. Every hash is
// checked, so a wrong entry fails at start rather than refusing the
// operation it was meant to allow.
func ParseTrustedDocuments(manifest []byte) (map[string]string, error) {
	docs := map[string]string{}
	if err := json.Unmarshal(manifest, &docs); err != nil {
		return nil, fmt.Errorf("trusted documents: %w", err)
	}
	out := make(map[string]string, len(docs))
	for hash, doc := range docs {
		sum := sha256.Sum256([]byte(doc))
		if hex.EncodeToString(sum[:]) != strings.ToLower(hash) {
			return nil, fmt.Errorf("trusted documents: the document under %s has another hash", hash)
		}
		out[strings.ToLower(hash)] = doc
	}
	return out, nil
}

// resolveDocument returns the query text to run: the request's, or the one
// a persisted query hash names, as APQ and the trusted-documents mode say.
func (e *Engine) resolveDocument(ctx context.Context, tenant string, req Request) (string, *Response) {
	// The hash is read as extauthz read it when it decided on the request:
	// through the one decoder both use.
	hash, err := request.PersistedHash(req.Extensions)
	if err != nil {
		return "", requestError(CodeBadRequest, err.Error())
	}
	if e.opts.Trusted != nil {
		if hash == "" && req.Query != "" {
			sum := sha256.Sum256([]byte(req.Query))
			hash = hex.EncodeToString(sum[:])
		}
		doc, ok := e.opts.Trusted[hash]
		if !ok || req.Query != "" && req.Query != doc {
			return "", requestError(CodeNotTrusted, "only trusted documents run on this server")
		}
		return doc, nil
	}
	if hash == "" {
		if req.Query == "" {
			return "", requestError(CodeBadRequest, "missing query")
		}
		return req.Query, nil
	}
	if !e.opts.APQ {
		return "", requestError(CodePersistedUnsupported, "persisted queries are not supported")
	}
	if e.opts.Persisted != nil {
		return e.persistedDocument(ctx, tenant, hash, req.Query)
	}
	if req.Query == "" {
		e.mu.Lock()
		q, ok := e.apq[hash]
		e.mu.Unlock()
		if !ok {
			return "", requestError(CodePersistedNotFound, "PersistedQueryNotFound")
		}
		return q, nil
	}
	sum := sha256.Sum256([]byte(req.Query))
	if hex.EncodeToString(sum[:]) != hash {
		return "", requestError(CodePersistedHash, "persistedQuery.sha256Hash does not match the query")
	}
	// Registered before validation: an invalid document fails the same
	// way whether it comes by text or by hash.
	e.mu.Lock()
	if len(e.apq) >= e.opts.APQCacheSize {
		for k := range e.apq {
			delete(e.apq, k)
			break
		}
	}
	e.apq[hash] = req.Query
	e.mu.Unlock()
	return req.Query, nil
}

// plan returns the validated operation of query, from the cache when seen
// before, once the limits allow it for these variables (see checkLimits).
func (e *Engine) plan(ctx context.Context, s *Schema, query, opName string, vars map[string]any) (*plan, *Response) {
	key := planKey{sha256.Sum256([]byte(query)), opName}
	e.mu.Lock()
	pl, ok := e.plans[key]
	e.mu.Unlock()
	if ok && pl.schema == s {
		if r := e.checkLimits(ctx, s, pl.doc, pl.op, vars, false); r != nil {
			return nil, r
		}
		return pl, nil
	}
	tokens, resp := e.scan(ctx, query, opName)
	if resp != nil {
		return nil, resp
	}
	doc, err := parser.ParseQuery(&ast.Source{Name: "request", Input: query})
	if err != nil {
		var ge *gqlerror.Error
		if errors.As(err, &ge) {
			return nil, &Response{Errors: []*Error{convert(ge, CodeParseFailed)}}
		}
		return nil, requestError(CodeParseFailed, err.Error())
	}
	e.mu.Lock()
	valid := e.valid[tokens]
	e.mu.Unlock()
	// The operation is picked before validation, for the limits, and its
	// error reported after, as before: a document that is not valid says so
	// first.
	op, pickErr := pickOperation(doc, opName)
	if r := e.checkLimits(ctx, s, doc, op, vars, !valid); r != nil {
		return nil, r
	}
	if err := ctx.Err(); err != nil {
		return nil, cancelled(err)
	}
	if valid {
		// The same tokens passed validation before: only its walk, which
		// binds fields and values to the schema, is needed.
		validator.Walk(s.ast, doc, &validator.Events{})
	} else if errs := validator.ValidateWithRules(s.ast, doc, nil); len(errs) > 0 {
		// Validation takes no context, and costs up to the square of what
		// it is given; checkLimits has bounded that by MaxSelections, so it
		// ends soon whether or not the client is still there.
		r := &Response{}
		for _, ge := range errs {
			r.Errors = append(r.Errors, convert(ge, CodeValidationFailed))
		}
		return nil, r
	}
	if pickErr != nil {
		return nil, pickErr
	}
	pl = &plan{doc: doc, op: op, schema: s}
	e.mu.Lock()
	if len(e.plans) >= maxPlans {
		for k := range e.plans {
			delete(e.plans, k)
			break
		}
	}
	e.plans[key] = pl
	if !valid {
		if len(e.valid) >= maxPlans {
			for k := range e.valid {
				delete(e.valid, k)
				break
			}
		}
		e.valid[tokens] = true
	}
	e.mu.Unlock()
	return pl, nil
}

func satAdd(a, b int) int {
	if a > 1<<40 || b > 1<<40 {
		return 1 << 41
	}
	return a + b
}

func satMul(a, b int) int {
	if b != 0 && a > (1<<40)/b {
		return 1 << 41
	}
	return a * b
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
