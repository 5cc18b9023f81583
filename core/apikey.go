package core

import (
	"context"
	"time"
)

// APIKey is a stored API key: everything but its secret, of which only a
// hash is kept. The key a client sends is "frs_<ID>_<secret>".
type APIKey struct {
	// ID is the public part of the key, unique across tenants.
	ID     string
	Tenant string
	// Name is a label for people ("ci deploy key").
	Name   string
	Roles  []string
	Scopes []string
	// Hash is SHA-256 of the secret; never the secret itself.
	Hash      []byte
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	// RevokedAt is zero while the key is valid.
	RevokedAt time.Time
	// LastUsedAt is when the key last authenticated a request, written in
	// batches, so it lags by up to the batch interval; zero when never.
	LastUsedAt time.Time
}

// APIKeyStore keeps API keys. Keys are looked up by id before the tenant
// is known, so implementations read across tenants for Get and TouchLastUsed.
type APIKeyStore interface {
	// Create stores k. It returns an *Error with CodeConflict when the id
	// exists, CodeInvalid for a malformed key, CodeUnavailable when the
	// store cannot be reached.
	Create(ctx context.Context, k APIKey) error
	// Get returns the key with id, or an *Error with CodeNotFound.
	Get(ctx context.Context, id string) (APIKey, error)
	// List returns tenant's keys ("" for every tenant), newest first.
	List(ctx context.Context, tenant string) ([]APIKey, error)
	// Revoke marks the key revoked at at. It returns an *Error with
	// CodeNotFound when no unrevoked key id exists.
	Revoke(ctx context.Context, id string, at time.Time) error
	// TouchLastUsed records when each key was last used, never moving a
	// time backwards. Unknown ids are ignored.
	TouchLastUsed(ctx context.Context, used map[string]time.Time) error
}

// Decision is one authorization decision, as the audit log keeps it.
type Decision struct {
	ID             string
	RequestID      string
	At             time.Time
	Subject        string
	Tenant         string
	Kind           PrincipalKind
	Operation      string
	OperationName  string
	Allow          bool
	Status         int
	Reason         string
	PolicyRevision string
	Latency        time.Duration
	// Method and Path are the request's (the path without its query).
	Method, Path string
	// TraceID is the W3C trace id of the request (32 hex digits), "" when
	// it was not traced.
	TraceID string
	// Input is the policy's input document for the request, credentials
	// removed, as JSON; nil when the request was refused before the policy
	// was asked. The console's playground replays it against a draft.
	Input []byte
}

// DecisionLog keeps authorization decisions for audit.
type DecisionLog interface {
	// RecordDecisions stores ds in one batch. It returns an *Error with
	// CodeUnavailable when the store cannot be reached; nothing of the
	// batch is stored then.
	RecordDecisions(ctx context.Context, ds []Decision) error
}
