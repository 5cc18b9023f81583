// Package assertion signs and verifies the identity assertion: the short-lived
// compact JWS (EdDSA) that extauthz adds to every request it allows and from
// which alone the core derives who a request runs as. Keeping both halves in
// one package keeps the claim set one definition.
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
)

// Header is the request header that carries the assertion.
const Header = "x-fraise-assertion"

// Audience is the aud claim every assertion carries; the core accepts no other.
const Audience = "fraise-core"

// Issuer is the iss claim of every assertion.
const Issuer = "fraise-extauthz"

// DefaultTTL is how long an assertion stays valid. It only has to outlive the
// hop from extauthz through the gateway to the core, so it is short: a leaked
// assertion is useless a minute later.
const DefaultTTL = 60 * time.Second

// Leeway tolerates clock skew between extauthz and the core.
const Leeway = 5 * time.Second

// ErrInvalid is returned for any assertion that does not verify; the reason
// is wrapped for logs, never shown to clients.
var ErrInvalid = errors.New("invalid identity assertion")

type claims struct {
	jwt.Claims
	Tenant string             `json:"tenant"`
	Roles  []string           `json:"roles,omitempty"`
	Scopes []string           `json:"scopes,omitempty"`
	Kind   core.PrincipalKind `json:"kind,omitempty"`
	Tier   string             `json:"tier,omitempty"`
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

// Sign returns the compact assertion for p; requestID becomes its jti so an
// assertion can be traced to the one request it was issued for.
func (s *Signer) Sign(p core.Principal, requestID string) (string, error) {
	now := s.now()
	c := claims{
		Claims: jwt.Claims{
			Issuer:   Issuer,
			Subject:  p.Subject,
			Audience: jwt.Audience{Audience},
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(s.ttl)),
			ID:       requestID,
		},
		Tenant: p.Tenant, Roles: p.Roles, Scopes: p.Scopes, Kind: p.Kind, Tier: p.Tier,
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
// both accepted during a rotation.
type Verifier struct {
	mu   sync.RWMutex
	keys map[string]ed25519.PublicKey
	now  func() time.Time

	refreshMu   sync.Mutex
	refresh     func() (map[string]ed25519.PublicKey, error)
	minInterval time.Duration
	lastRefresh time.Time // guarded by refreshMu
}

// NewVerifier returns a Verifier trusting keys (key id to public key). now
// may be nil.
func NewVerifier(keys map[string]ed25519.PublicKey, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{now: now}
	v.SetKeys(keys)
	return v
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

// Verify checks token's signature, audience, issuer and lifetime and returns
// the principal it asserts and its request id. Any failure wraps ErrInvalid.
func (v *Verifier) Verify(token string) (core.Principal, string, error) {
	if token == "" {
		return core.Principal{}, "", fmt.Errorf("%w: missing", ErrInvalid)
	}
	if len(token) > 16<<10 {
		return core.Principal{}, "", fmt.Errorf("%w: too long", ErrInvalid)
	}
	kid, signed, payload, sig, err := splitCompact(token)
	if err != nil {
		return core.Principal{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	key, ok := v.key(kid)
	if !ok {
		key, ok = v.refreshFor(kid)
	}
	if !ok {
		return core.Principal{}, "", fmt.Errorf("%w: unknown key id %q", ErrInvalid, kid)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, []byte(signed), sig) {
		return core.Principal{}, "", fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	var c claims
	if err := josejson.Unmarshal(payload, &c); err != nil {
		return core.Principal{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	exp := jwt.Expected{Issuer: Issuer, AnyAudience: jwt.Audience{Audience}, Time: v.now()}
	if err := c.Claims.ValidateWithLeeway(exp, Leeway); err != nil {
		return core.Principal{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.Expiry == nil || c.Subject == "" || c.Tenant == "" {
		return core.Principal{}, "", fmt.Errorf("%w: missing exp, sub or tenant", ErrInvalid)
	}
	return core.Principal{
		Subject: c.Subject, Tenant: c.Tenant, Roles: c.Roles, Scopes: c.Scopes, Kind: c.Kind, Tier: c.Tier,
	}, c.ID, nil
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
	header, err := base64.RawURLEncoding.DecodeString(token[:first])
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
	if payload, err = base64.RawURLEncoding.DecodeString(token[first+1 : last]); err != nil {
		return "", "", nil, nil, errors.New("payload is not base64url")
	}
	if sig, err = base64.RawURLEncoding.DecodeString(token[last+1:]); err != nil || len(sig) != ed25519.SignatureSize {
		return "", "", nil, nil, errors.New("malformed signature")
	}
	return h.Kid, token[:last], payload, sig, nil
}
