package core

import "context"

// Session gives the database, inside a tenant transaction, what its
// statements may read of who runs them besides the tenant TenantDB sets.
// How the database reads it (which settings, set how) is the adapter's.
type Session interface {
	// SetSubject makes subject, whom a mutation runs as, readable by the
	// database's functions for the rest of q's transaction (q being a
	// Querier TenantDB.InTenant gave). Failures are *Error as
	// Querier.QueryJSON's are.
	SetSubject(ctx context.Context, q Querier, subject string) error
}

// AuditLog records in the audit trail what cannot be written in the
// transaction it describes.
type AuditLog interface {
	// MutationsFailed records, in a transaction of its own in tenant, that
	// subject's calls of mutations failed with outcome ("error:INVALID",
	// say): the failed transaction rolled their own audit rows back, and a
	// failed attempt is what an audit trail most needs. Failures are
	// *Error with CodeInvalid (a tenant that is not a UUID),
	// CodeUnavailable or CodeInternal.
	MutationsFailed(ctx context.Context, tenant, subject string, mutations []string, outcome string) error
}
