package core

import "context"

// Querier runs statements inside one tenant-scoped transaction.
type Querier interface {
	// QueryJSON runs sql with args and returns the single JSON value of its
	// single row and column; a statement that yields SQL NULL returns nil.
	// Failures are *Error: CodeInvalid for bad input the database rejected,
	// CodeTimeout for a statement timeout, CodeUnavailable when the database
	// cannot be reached, CodeInternal otherwise.
	QueryJSON(ctx context.Context, sql string, args ...any) ([]byte, error)
}

// TenantDB opens the tenant-scoped transactions a request runs in.
type TenantDB interface {
	// InTenant runs fn in one transaction in which only tenant's rows are
	// visible (row-level security keyed on the tenant), committing when fn
	// returns nil and rolling back otherwise. It returns fn's error, or an
	// *Error with CodeUnavailable when no transaction could be opened.
	InTenant(ctx context.Context, tenant string, fn func(ctx context.Context, q Querier) error) error
}

// Catalog describes the database objects a GraphQL schema binds to, so a
// schema is checked against the database at start rather than failing on
// the first request.
type Catalog interface {
	// RelationColumns returns the columns (name to type, as format_type
	// writes it) of the view or table name resolves to on the search path,
	// or nil when there is no such relation. Failures are *Error with
	// CodeUnavailable or CodeInternal.
	RelationColumns(ctx context.Context, name string) (map[string]string, error)
	// Function describes the function name resolves to, or returns nil
	// when there is none (or several overloads). Failures are as above.
	Function(ctx context.Context, name string) (*FunctionInfo, error)
}

// FunctionInfo describes a database function: its argument types and the
// columns of the composite type it returns (empty for other return types).
type FunctionInfo struct {
	Args []string
	// ArgNames are the arguments' names, "" for an unnamed one.
	ArgNames []string
	Result   map[string]string
}

// Statement is one SQL statement and its parameters.
type Statement struct {
	SQL  string
	Args []any
}

// TenantBatcher runs a request's read statements in one round trip to the
// database. It is an optional port of the GraphQL engine
// (graphql.Options.Batcher), given explicitly by the wiring: without one,
// the engine runs the statements one by one through TenantDB.InTenant.
type TenantBatcher interface {
	// QueryJSONBatch runs stmts in order in one read-only transaction in
	// which only tenant's rows are visible, as InTenant does, and returns
	// the single JSON value of each (nil for SQL NULL or no row). Failures
	// are *Error as QueryJSON's are; nothing is returned on failure.
	QueryJSONBatch(ctx context.Context, tenant string, stmts []Statement) ([][]byte, error)
}

// TenantWriter runs a mutation's statements in one round trip to the
// database: the transaction, its settings and every statement sent at once
// instead of one after the other while a connection and the transaction's
// locks are held. It is an optional port of the GraphQL engine
// (graphql.Options.Writer), as TenantBatcher is for reads.
type TenantWriter interface {
	// ExecJSONBatch runs stmts in order in one transaction in which only
	// tenant's rows are visible, as InTenant does, with subject set as
	// Session.SetSubject sets it ("": not set), and passes the single JSON
	// value of each (nil for SQL NULL or no row) to accept before it
	// commits: the transaction commits only if every statement succeeded
	// and accept returned nil. Failures are *Error as QueryJSON's are, or
	// accept's error; nothing is written on failure.
	ExecJSONBatch(ctx context.Context, tenant, subject string, stmts []Statement, accept func(vals [][]byte) error) error
}

// Admitter bounds the work a process runs at once, in all and per tenant,
// so that one tenant or a burst cannot take every connection, slot or byte
// of heap: GraphQL requests, Flight exports and observer deliveries each go
// through one. Admit returns when the work may start, with the release to
// call when it ends, or refuses: an *Error of CodeRateLimited (the tenant
// has its share) or CodeUnavailable (the process is overloaded) whose
// chain holds a RetryAfter hint the edges turn into Retry-After.
type Admitter interface {
	Admit(ctx context.Context, tenant string) (release func(), err error)
}
