package apikey

import (
	"context"
	"time"
)

// Key is a stored API key: everything but its secret, of which only a
// hash is kept. The key a client sends is "frs_<ID>_<secret>".
type Key struct {
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

// Store keeps API keys: the port the Authenticator reads keys through
// and `fraise apikey` manages them through (adapters/postgres.APIKeys). Keys are looked up by id before the tenant
// is known, so implementations read across tenants for Get and TouchLastUsed.
type Store interface {
	// Create stores k. It returns an *core.Error with CodeConflict when the id
	// exists, CodeInvalid for a malformed key, CodeUnavailable when the
	// store cannot be reached.
	Create(ctx context.Context, k Key) error
	// Get returns the key with id, or an *core.Error with CodeNotFound.
	Get(ctx context.Context, id string) (Key, error)
	// List returns tenant's keys ("" for every tenant), newest first.
	List(ctx context.Context, tenant string) ([]Key, error)
	// Revoke marks the key revoked at at. It returns an *core.Error with
	// CodeNotFound when no unrevoked key id exists.
	Revoke(ctx context.Context, id string, at time.Time) error
	// TouchLastUsed records when each key was last used, never moving a
	// time backwards. Unknown ids are ignored.
	TouchLastUsed(ctx context.Context, used map[string]time.Time) error
}
