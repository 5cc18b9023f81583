// Package authztest holds in-memory implementations of extauthz's ports
// (the API key store and the decision log) and the contract suites that run
// the same cases against them and against the postgres adapter.
package authztest

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
)

// APIKeys keeps API keys in memory (apikey.Store), refusing what the
// database's table refuses: an id that is not 16 lower-case hex digits, a
// hash that is not 32 bytes, a tenant that is not a UUID. It is safe for
// concurrent use.
type APIKeys struct {
	mu   sync.Mutex
	keys map[string]apikey.Key
}

var _ apikey.Store = (*APIKeys)(nil)

var (
	keyIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)
	uuidPattern  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Create implements apikey.Store.
func (s *APIKeys) Create(_ context.Context, k apikey.Key) error {
	const op = "authztest.APIKeys.Create"
	if !keyIDPattern.MatchString(k.ID) || len(k.Hash) != 32 || !uuidPattern.MatchString(k.Tenant) {
		return core.Errorf(core.CodeInvalid, "malformed API key").WithOp(op)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]apikey.Key{}
	}
	if _, ok := s.keys[k.ID]; ok {
		return core.Errorf(core.CodeConflict, "already exists").WithOp(op)
	}
	k.Tenant = strings.ToLower(k.Tenant)
	k.CreatedAt, k.ExpiresAt = stored(k.CreatedAt), stored(k.ExpiresAt)
	k.RevokedAt, k.LastUsedAt = time.Time{}, time.Time{}
	s.keys[k.ID] = cloneKey(k)
	return nil
}

// Get implements apikey.Store.
func (s *APIKeys) Get(_ context.Context, id string) (apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return apikey.Key{}, core.Errorf(core.CodeNotFound, "no such API key").WithOp("authztest.APIKeys.Get")
	}
	return cloneKey(k), nil
}

// List implements apikey.Store: newest first, then by id.
func (s *APIKeys) List(_ context.Context, tenant string) ([]apikey.Key, error) {
	if tenant != "" && !uuidPattern.MatchString(tenant) {
		return nil, core.Errorf(core.CodeInvalid, "tenant must be a UUID").WithOp("authztest.APIKeys.List")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []apikey.Key{}
	for _, k := range s.keys {
		if tenant == "" || strings.EqualFold(k.Tenant, tenant) {
			out = append(out, cloneKey(k))
		}
	}
	slices.SortFunc(out, func(a, b apikey.Key) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Revoke implements apikey.Store.
func (s *APIKeys) Revoke(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok || !k.RevokedAt.IsZero() {
		return core.Errorf(core.CodeNotFound, "no such unrevoked API key").WithOp("authztest.APIKeys.Revoke")
	}
	k.RevokedAt = stored(at)
	s.keys[id] = k
	return nil
}

// TouchLastUsed implements apikey.Store.
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

func cloneKey(k apikey.Key) apikey.Key {
	k.Roles, k.Scopes, k.Hash = slices.Clone(k.Roles), slices.Clone(k.Scopes), slices.Clone(k.Hash)
	return k
}

// DecisionLog keeps authorization decisions in memory (decisionlog.Store).
// It is safe for concurrent use.
type DecisionLog struct {
	mu        sync.Mutex
	decisions []decisionlog.Decision
}

var _ decisionlog.Store = (*DecisionLog)(nil)

// RecordDecisions implements decisionlog.Store. A decision recorded again
// (same id) is kept once, as it first came; a tenant that is not a UUID is
// kept as "", as the database keeps it as null.
func (l *DecisionLog) RecordDecisions(_ context.Context, ds []decisionlog.Decision) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range ds {
		if slices.ContainsFunc(l.decisions, func(x decisionlog.Decision) bool { return x.ID == d.ID }) {
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
func (l *DecisionLog) Decisions() []decisionlog.Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.decisions)
}
