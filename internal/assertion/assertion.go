// Package assertion signs and verifies the identity assertion: the short-lived
// compact JWS (EdDSA) that extauthz adds to every request it allows and from
// which alone the core derives who a request runs as. Keeping both halves in
// one package keeps the claim set one definition.
//
// An assertion names what extauthz decided, not only who asked (security
// #13, defect 4): the core listener it is for (its audience: AudienceGraphQL
// or AudienceFlight, never both), the request's method and path, and the
// hash of what the policy decided on: for GraphQL the operation
// (request.OperationHash of the document, after resolving a persisted hash,
// and the operation name), for other requests the body extauthz saw (a
// Flight descriptor). The core checks each against the request it is about
// to run (see Binding) and spends the assertion's id (jti, the request id)
// in a ReplayCache, so that an assertion runs one request, once.
package assertion

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/b64url"
)

// Header is the request header that carries the assertion.
const Header = "x-fraise-assertion"

// The audiences, one per core listener: an assertion is for one of them,
// and a listener accepts no other, so an assertion issued for a GraphQL
// request cannot be presented to the Flight port, nor the reverse.
const (
	AudienceGraphQL = "fraise-core-graphql"
	AudienceFlight  = "fraise-core-flight"
	// AudienceConsole is the console's (paths under /console/ of the
	// core's HTTP listener): a console assertion runs no GraphQL request,
	// and a GraphQL assertion calls no console API.
	AudienceConsole = "fraise-console"
)

// Issuer is the iss claim of every assertion.
const Issuer = "fraise-extauthz"

// DefaultTTL is how long an assertion stays valid. It only has to outlive the
// hop from extauthz through the gateway to the core, so it is short: a leaked
// assertion is useless a minute later.
const DefaultTTL = 60 * time.Second

// Leeway tolerates clock skew between extauthz and the core.
const Leeway = 5 * time.Second

// MaxLifetime is the longest an assertion is accepted after the moment it
// is verified: an expiry further ahead is refused, so that a ReplayCache
// needs to remember an id for no longer than MaxLifetime plus Leeway.
const MaxLifetime = DefaultTTL + Leeway

// ErrInvalid is returned for any assertion that does not verify; the reason
// is wrapped for logs, never shown to clients.
var ErrInvalid = errors.New("invalid identity assertion")

// ErrMismatch is returned by Binding.Check for an assertion issued for
// another request than the one presenting it.
var ErrMismatch = errors.New("identity assertion issued for another request")

// Binding is what an assertion was issued for: the listener, the request,
// and what extauthz's policy decided on. Hashes are lower-case hex SHA-256.
type Binding struct {
	// Audience is AudienceGraphQL, AudienceFlight or AudienceConsole.
	Audience string `json:"-"`
	// Method and Path are the request's, the path without its query
	// string (a gRPC call's method is POST, its path /package.Service/Method).
	Method string `json:"method"`
	Path   string `json:"path"`
	// Operation is, for a GraphQL request, request.OperationHash of the
	// document and operation name the policy decided on; "" otherwise.
	Operation string `json:"op_sha256,omitempty"`
	// Body is, for any other request whose body extauthz read whole and
	// decided on (a Flight descriptor), the SHA-256 of that body; "" when
	// extauthz decided without one (a streaming Flight call, whose body
	// Envoy does not buffer).
	Body string `json:"body_sha256,omitempty"`
}

// Check compares the binding with the request that presents it: its
// method and path, and the hashes the listener computed of what it is about
// to run (operation for GraphQL, body for a request with a body; "" when
// the listener has none). A difference is ErrMismatch, with the field that
// differs for logs.
func (b Binding) Check(method, path, operation, body string) error {
	switch {
	case b.Method != method:
		return fmt.Errorf("%w: method %q, issued for %q", ErrMismatch, method, b.Method)
	case b.Path != path:
		return fmt.Errorf("%w: path %q, issued for %q", ErrMismatch, path, b.Path)
	case b.Operation != operation:
		return fmt.Errorf("%w: operation hash %q, issued for %q", ErrMismatch, operation, b.Operation)
	case b.Body != body:
		return fmt.Errorf("%w: body hash %q, issued for %q", ErrMismatch, body, b.Body)
	}
	return nil
}

// Assertion is a verified assertion.
type Assertion struct {
	// Principal is who the request runs as.
	Principal core.Principal
	// ID is the jti, the request id extauthz issued it for: single use.
	ID string
	// Binding is what it was issued for; the caller checks it against the
	// request (Binding.Check).
	Binding
	// Expiry is its exp; past it (and Leeway) it no longer verifies.
	Expiry time.Time
}

type claims struct {
	jwt.Claims
	Tenant string             `json:"tenant"`
	Roles  []string           `json:"roles,omitempty"`
	Scopes []string           `json:"scopes,omitempty"`
	Kind   core.PrincipalKind `json:"kind,omitempty"`
	Tier   string             `json:"tier,omitempty"`
	Binding
}

// Signer signs assertions with an Ed25519 key identified by a key id. Its
// key rotates (Rotate): it then signs with the new key and keeps
// publishing the previous one (PublicKeys, JWKS), so that assertions signed
// just before the rotation still verify in the core.
type Signer struct {
	cur atomic.Pointer[signingKey]
	ttl time.Duration
	now func() time.Time
}

type signingKey struct {
	kid    string
	key    ed25519.PrivateKey
	header string // the encoded protected header, the same for every assertion
	pub    ed25519.PublicKey
	prev   *signingKey // the key before this one; its prev is dropped
}

// NewSigner returns a Signer for key, named kid in the JWS header so the
// verifier can pick the right public key across rotations. now may be nil.
func NewSigner(key ed25519.PrivateKey, kid string, now func() time.Time) (*Signer, error) {
	if now == nil {
		now = time.Now
	}
	s := &Signer{ttl: DefaultTTL, now: now}
	if err := s.Rotate(key, kid); err != nil {
		return nil, err
	}
	return s, nil
}

// Rotate makes key (named kid) the signing key. The key it replaces stays
// published as the previous key until the next rotation; the one before
// that is dropped. Rotating to the current key id does nothing.
func (s *Signer) Rotate(key ed25519.PrivateKey, kid string) error {
	if len(key) != ed25519.PrivateKeySize || kid == "" {
		return errors.New("assertion signer: want an Ed25519 private key and a key id")
	}
	cur := s.cur.Load()
	if cur != nil && cur.kid == kid {
		return nil
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(jose.EdDSA), kid, "JWT"})
	if err != nil {
		return fmt.Errorf("assertion signer: %w", err)
	}
	next := &signingKey{kid: kid, key: key, header: base64.RawURLEncoding.EncodeToString(h), pub: key.Public().(ed25519.PublicKey)}
	if cur != nil {
		next.prev = &signingKey{kid: cur.kid, pub: cur.pub}
	}
	s.cur.Store(next)
	return nil
}

// KeyID returns the id of the signing key.
func (s *Signer) KeyID() string { return s.cur.Load().kid }

// PublicKeys returns the current and (after a rotation) the previous
// public key by key id: what a verifier should trust.
func (s *Signer) PublicKeys() map[string]ed25519.PublicKey {
	cur := s.cur.Load()
	m := map[string]ed25519.PublicKey{cur.kid: cur.pub}
	if cur.prev != nil {
		m[cur.prev.kid] = cur.prev.pub
	}
	return m
}

// JWKS returns PublicKeys as a JSON Web Key Set.
func (s *Signer) JWKS() ([]byte, error) { return MarshalJWKS(s.PublicKeys()) }

// Sign returns the compact assertion for p issued for the request b
// describes; requestID becomes its jti, so an assertion can be traced to
// the one request it was issued for, and is spent by it. b must name an
// audience, a method and a path.
func (s *Signer) Sign(p core.Principal, requestID string, b Binding) (string, error) {
	if b.Audience != AudienceGraphQL && b.Audience != AudienceFlight && b.Audience != AudienceConsole {
		return "", fmt.Errorf("sign assertion: audience %q, want %s, %s or %s", b.Audience, AudienceGraphQL, AudienceFlight, AudienceConsole)
	}
	if requestID == "" || b.Method == "" || b.Path == "" {
		return "", errors.New("sign assertion: a request id, a method and a path are required")
	}
	now := s.now()
	c := claims{
		Claims: jwt.Claims{
			Issuer:   Issuer,
			Subject:  p.Subject,
			Audience: jwt.Audience{b.Audience},
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(s.ttl)),
			ID:       requestID,
		},
		Tenant: p.Tenant, Roles: p.Roles, Scopes: p.Scopes, Kind: p.Kind, Tier: p.Tier,
		Binding: b,
	}
	// The compact JWS (RFC 7515 §7.1) is built here rather than through
	// go-jose's builder, which marshals the claims twice and normalises
	// them through a map: a fifth of extauthz's CPU per Check. The
	// signature is crypto/ed25519's; verification stays with go-jose.
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	k := s.cur.Load()
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(k.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519.SignatureSize))
	buf = append(buf, k.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig := ed25519.Sign(k.key, buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// Verifier checks assertions against a set of public keys by key id. The set
// can be replaced at run time, which is how the current and previous keys are
// both accepted during a rotation. It spends assertion ids in its
// ReplayCache (Spend).
type Verifier struct {
	mu     sync.RWMutex
	keys   map[string]ed25519.PublicKey
	now    func() time.Time
	replay atomic.Pointer[ReplayCache]

	refreshMu   sync.Mutex
	refresh     func() (map[string]ed25519.PublicKey, error)
	minInterval time.Duration
	lastRefresh time.Time // guarded by refreshMu
}

// NewVerifier returns a Verifier trusting keys (key id to public key), with
// a ReplayCache sized for DefaultReplayRate (SetReplayCache replaces it).
// now may be nil.
func NewVerifier(keys map[string]ed25519.PublicKey, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{now: now}
	v.SetKeys(keys)
	v.SetReplayCache(NewReplayCache(ReplayCapacity(DefaultReplayRate), now))
	return v
}

// SetReplayCache makes c the cache Spend records ids in. Listeners that
// share a Verifier share its cache.
func (v *Verifier) SetReplayCache(c *ReplayCache) { v.replay.Store(c) }

// Spend records a's id as used until it can no longer verify. It returns
// ErrReplayed when the id was spent already (the assertion is being
// replayed), or ErrReplayCacheFull when the cache holds as many live ids as
// it may: the caller refuses the request in both cases.
func (v *Verifier) Spend(a Assertion) error {
	return v.replay.Load().Spend(a.ID, a.Expiry.Add(Leeway))
}

// SetKeys replaces the trusted keys.
func (v *Verifier) SetKeys(keys map[string]ed25519.PublicKey) {
	m := make(map[string]ed25519.PublicKey, len(keys))
	for k, pk := range keys {
		m[k] = pk
	}
	v.mu.Lock()
	v.keys = m
	v.mu.Unlock()
}

// SetRefresh makes an assertion with an unknown key id fetch the trusted
// keys again with fetch (typically extauthz's JWKS over HTTP), at most
// once per minInterval, so that a rotation is picked up on the first
// assertion signed with the new key rather than at the next poll.
func (v *Verifier) SetRefresh(fetch func() (map[string]ed25519.PublicKey, error), minInterval time.Duration) {
	v.refreshMu.Lock()
	v.refresh, v.minInterval = fetch, minInterval
	v.refreshMu.Unlock()
}

func (v *Verifier) key(kid string) (ed25519.PublicKey, bool) {
	v.mu.RLock()
	key, ok := v.keys[kid]
	v.mu.RUnlock()
	return key, ok
}

// refreshFor fetches the keys once if kid is still unknown and the last
// fetch is old enough, and returns kid's key.
func (v *Verifier) refreshFor(kid string) (ed25519.PublicKey, bool) {
	v.refreshMu.Lock()
	defer v.refreshMu.Unlock()
	if key, ok := v.key(kid); ok || v.refresh == nil {
		return key, ok
	}
	if now := v.now(); !v.lastRefresh.IsZero() && now.Sub(v.lastRefresh) < v.minInterval {
		return nil, false
	}
	v.lastRefresh = v.now()
	keys, err := v.refresh()
	if err != nil || len(keys) == 0 {
		return nil, false
	}
	v.SetKeys(keys)
	return v.key(kid)
}

// Verify checks token's signature, issuer, lifetime and that it is for
// audience (AudienceGraphQL or AudienceFlight), and returns what it
// asserts. It neither checks the binding against the request (the caller
// does, with Binding.Check, once it knows what it will run) nor spends the
// id (Spend). Any failure wraps ErrInvalid.
func (v *Verifier) Verify(token, audience string) (Assertion, error) {
	if token == "" {
		return Assertion{}, fmt.Errorf("%w: missing", ErrInvalid)
	}
	if len(token) > 16<<10 {
		return Assertion{}, fmt.Errorf("%w: too long", ErrInvalid)
	}
	kid, signed, payload, sig, err := splitCompact(token)
	if err != nil {
		return Assertion{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	key, ok := v.key(kid)
	if !ok {
		key, ok = v.refreshFor(kid)
	}
	if !ok {
		return Assertion{}, fmt.Errorf("%w: unknown key id %q", ErrInvalid, kid)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, []byte(signed), sig) {
		return Assertion{}, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	var c claims
	if err := josejson.Unmarshal(payload, &c); err != nil {
		return Assertion{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	now := v.now()
	exp := jwt.Expected{Issuer: Issuer, AnyAudience: jwt.Audience{audience}, Time: now}
	if err := c.Claims.ValidateWithLeeway(exp, Leeway); err != nil {
		return Assertion{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(c.Claims.Audience) != 1 {
		return Assertion{}, fmt.Errorf("%w: %d audiences, want one", ErrInvalid, len(c.Claims.Audience))
	}
	if c.Expiry == nil || c.Subject == "" || c.Tenant == "" || c.ID == "" || c.Method == "" || c.Path == "" {
		return Assertion{}, fmt.Errorf("%w: missing exp, sub, tenant, jti, method or path", ErrInvalid)
	}
	expiry := c.Expiry.Time()
	if expiry.After(now.Add(MaxLifetime)) {
		// Longer than any assertion extauthz signs, and longer than the
		// replay cache remembers.
		return Assertion{}, fmt.Errorf("%w: expires more than %s ahead", ErrInvalid, MaxLifetime)
	}
	b := c.Binding
	b.Audience = audience
	return Assertion{
		Principal: core.Principal{Subject: c.Subject, Tenant: c.Tenant, Roles: c.Roles, Scopes: c.Scopes, Kind: c.Kind, Tier: c.Tier},
		ID:        c.ID, Binding: b, Expiry: expiry,
	}, nil
}

// splitCompact parses a compact JWS as the assertion's verification needs
// it: the key id, the signed text, the payload and the signature. It does
// the part of go-jose's ParseSigned that applies to one EdDSA signature
// (the profile of the core showed go-jose's general parse, which re-reads
// the header into every field JWS defines, at a third of the verification's
// cost): the header must name EdDSA and may not carry crit or b64, the
// extensions that change what is signed or how it must be understood.
func splitCompact(token string) (kid, signed string, payload, sig []byte, err error) {
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first <= 0 || last == first || last == len(token)-1 || strings.Count(token[first+1:last], ".") != 0 {
		return "", "", nil, nil, errors.New("not a compact JWS")
	}
	header, err := b64url.Decode(token[:first])
	if err != nil {
		return "", "", nil, nil, errors.New("header is not base64url")
	}
	var h struct {
		Alg  string               `json:"alg"`
		Kid  string               `json:"kid"`
		Crit *josejson.RawMessage `json:"crit"`
		B64  *josejson.RawMessage `json:"b64"`
	}
	if err := josejson.Unmarshal(header, &h); err != nil {
		return "", "", nil, nil, errors.New("header is not a JSON object")
	}
	if h.Alg != string(jose.EdDSA) {
		return "", "", nil, nil, fmt.Errorf("algorithm %q, want EdDSA", h.Alg)
	}
	if h.Crit != nil || h.B64 != nil {
		return "", "", nil, nil, errors.New("unsupported header crit or b64")
	}
	if payload, err = b64url.Decode(token[first+1 : last]); err != nil {
		return "", "", nil, nil, errors.New("payload is not base64url")
	}
	if sig, err = b64url.Decode(token[last+1:]); err != nil || len(sig) != ed25519.SignatureSize {
		return "", "", nil, nil, errors.New("malformed signature")
	}
	return h.Kid, token[:last], payload, sig, nil
}
