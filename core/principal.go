package core

import (
	"context"
	"slices"
)

// PrincipalKind says how a principal proved who it is.
type PrincipalKind string

// The kinds of principal.
const (
	KindJWT    PrincipalKind = "jwt"
	KindAPIKey PrincipalKind = "apikey"
)

// Principal is who a request runs as: the subject, the tenant whose rows it
// may see, and the roles and scopes extauthz granted. The core takes it only
// from a verified identity assertion, never from plain headers.
type Principal struct {
	Subject string        `json:"sub"`
	Tenant  string        `json:"tenant"`
	Roles   []string      `json:"roles,omitempty"`
	Scopes  []string      `json:"scopes,omitempty"`
	Kind    PrincipalKind `json:"kind,omitempty"`
	Tier    string        `json:"tier,omitempty"`
}

// HasScope reports whether p was granted scope.
func (p Principal) HasScope(scope string) bool { return slices.Contains(p.Scopes, scope) }

// HasRole reports whether p holds role.
func (p Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

type ctxKey int

const (
	principalKey ctxKey = iota
	requestIDKey
)

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// PrincipalFrom returns the principal in ctx and whether there was one.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey).(Principal)
	return p, ok
}

// WithRequestID returns a context carrying the request id, the key that ties
// together the gateway's, extauthz's and the core's log lines.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFrom returns the request id in ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}
