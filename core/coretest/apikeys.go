package coretest

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// APIKeys keeps API keys in memory (core.APIKeyStore), refusing what the
// database's table refuses: an id that is not 16 lower-case hex digits, a
// hash that is not 32 bytes, a tenant that is not a UUID. It is safe for
// concurrent use.
type APIKeys struct {
	mu   sync.Mutex
	keys map[string]core.APIKey
}

var _ core.APIKeyStore = (*APIKeys)(nil)

var (
	keyIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)
	uuidPattern  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Create implements core.APIKeyStore.
func (s *APIKeys) Create(_ context.Context, k core.APIKey) error {
	const op = "coretest.APIKeys.Create"
	if !keyIDPattern.MatchString(k.ID) || len(k.Hash) != 32 || !uuidPattern.MatchString(k.Tenant) {
		return &core.Error{Op: op, Code: core.CodeInvalid, Message: "malformed API key"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]core.APIKey{}
	}
	if _, ok := s.keys[k.ID]; ok {
		return &core.Error{Op: op, Code: core.CodeConflict, Message: "already exists"}
	}
	k.Tenant = strings.ToLower(k.Tenant)
	k.CreatedAt, k.ExpiresAt = stored(k.CreatedAt), stored(k.ExpiresAt)
	k.RevokedAt, k.LastUsedAt = time.Time{}, time.Time{}
	s.keys[k.ID] = cloneKey(k)
	return nil
}

// Get implements core.APIKeyStore.
func (s *APIKeys) Get(_ context.Context, id string) (core.APIKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return core.APIKey{}, &core.Error{Op: "coretest.APIKeys.Get", Code: core.CodeNotFound, Message: "no such API key"}
	}
	return cloneKey(k), nil
}

// List implements core.APIKeyStore: newest first, then by id.
func (s *APIKeys) List(_ context.Context, tenant string) ([]core.APIKey, error) {
	if tenant != "" && !uuidPattern.MatchString(tenant) {
		return nil, &core.Error{Op: "coretest.APIKeys.List", Code: core.CodeInvalid, Message: "tenant must be a UUID"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []core.APIKey{}
	for _, k := range s.keys {
		if tenant == "" || strings.EqualFold(k.Tenant, tenant) {
			out = append(out, cloneKey(k))
		}
	}
	slices.SortFunc(out, func(a, b core.APIKey) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Revoke implements core.APIKeyStore.
func (s *APIKeys) Revoke(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok || !k.RevokedAt.IsZero() {
		return &core.Error{Op: "coretest.APIKeys.Revoke", Code: core.CodeNotFound, Message: "no such unrevoked API key"}
	}
	k.RevokedAt = stored(at)
	s.keys[id] = k
	return nil
}

// TouchLastUsed implements core.APIKeyStore.
func (s *APIKeys) TouchLastUsed(_ context.Context, used map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, at := range used {
		if k, ok := s.keys[id]; ok && stored(at).After(k.LastUsedAt) {
			k.LastUsedAt = stored(at)
			s.keys[id] = k
		}
	}
	return nil
}

// stored is t as the database keeps a timestamptz: to the microsecond,
// the nanoseconds dropped as pgx drops them when it sends a time.
func stored(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

func cloneKey(k core.APIKey) core.APIKey {
	k.Roles, k.Scopes, k.Hash = slices.Clone(k.Roles), slices.Clone(k.Scopes), slices.Clone(k.Hash)
	return k
}

// DecisionLog keeps authorization decisions in memory (core.DecisionLog).
// It is safe for concurrent use.
type DecisionLog struct {
	mu        sync.Mutex
	decisions []core.Decision
}

var _ core.DecisionLog = (*DecisionLog)(nil)

// RecordDecisions implements core.DecisionLog. A decision recorded again
// (same id) is kept once, as it first came; a tenant that is not a UUID is
// kept as "", as the database keeps it as null.
func (l *DecisionLog) RecordDecisions(_ context.Context, ds []core.Decision) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range ds {
		if slices.ContainsFunc(l.decisions, func(x core.Decision) bool { return x.ID == d.ID }) {
			continue
		}
		if !uuidPattern.MatchString(d.Tenant) {
			d.Tenant = ""
		}
		d.Tenant = strings.ToLower(d.Tenant)
		d.At, d.Latency = stored(d.At), d.Latency.Truncate(time.Microsecond)
		l.decisions = append(l.decisions, d)
	}
	return nil
}

// Decisions returns the decisions recorded, in the order they came.
func (l *DecisionLog) Decisions() []core.Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.decisions)
}
