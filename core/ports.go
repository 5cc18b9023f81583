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
