// Package token authenticates bearer JWTs for extauthz: it picks the trusted
// issuer a token names, checks its signature with that issuer's keys (a JWKS
// file or URL, refreshed on an unknown key id), its algorithm, audience and
// lifetime, and maps its claims onto a core.Principal. Every refusal wraps
// ErrInvalid; the precise reason is for the decision log, never the client.
package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fraise-dev/fraise/core"
)

// MaxBytes is the longest token accepted. Real access tokens are a few
// hundred bytes to a few KiB; refusing longer ones before parsing bounds the
// work an unauthenticated client can cause.
const MaxBytes = 8 << 10

// DefaultLeeway tolerates clock skew between the issuer and extauthz.
const DefaultLeeway = 30 * time.Second

// Default claim names.
const (
	DefaultTenantClaim = "tenant"
	DefaultRolesClaim  = "roles"
	DefaultScopesClaim = "scope"
	DefaultTierClaim   = "tier"
)

// ErrInvalid is wrapped by every refusal of a token.
var ErrInvalid = errors.New("invalid bearer token")

// Issuer is one trusted token issuer.
type Issuer struct {
	// Issuer is the exact iss claim of the issuer's tokens.
	Issuer string
	// Audiences are the aud values accepted; a token must name at least one.
	Audiences []string
	// JWKSFile is a JWKS JSON file holding the issuer's public keys
	// (development, or keys distributed by configuration management).
	JWKSFile string
	// JWKSURL is fetched and cached, and fetched again when a token names
	// an unknown key id (at most once per MinRefreshInterval).
	JWKSURL string
	// Discovery finds the JWKS URL through OpenID Connect discovery: the
	// document at Issuer + "/.well-known/openid-configuration", whose
	// issuer must equal Issuer. Its jwks_uri is then used as JWKSURL.
	Discovery bool
	// Algorithms are the signature algorithms accepted, e.g. ["ES256"].
	// "none" is never accepted. HS256, HS384 and HS512 are accepted only
	// with HMACSecret, and verify only with it: a public JWKS key never
	// doubles as an HMAC secret, which is what defeats key confusion.
	Algorithms []string
	// HMACSecret is the shared secret of the HS* algorithms, at least 32
	// bytes; nil when the issuer uses none.
	HMACSecret []byte
	// TenantClaim, RolesClaim, ScopesClaim and TierClaim name the claims
	// the principal is read from; "" takes the defaults "tenant", "roles",
	// "scope" (a space-separated string, with "scopes" as an array
	// fallback) and "tier". A name is looked up as is first, then as a
	// dotted path into nested objects (e.g. "realm_access.roles").
	TenantClaim, RolesClaim, ScopesClaim, TierClaim string
	// Tenant binds the issuer to one tenant: every token it signs is for
	// that tenant, whether or not it carries a tenant claim, and a token
	// whose tenant claim names another tenant is refused. It is what an
	// identity provider with one realm per tenant (Keycloak) needs.
	Tenant string
	// Tenants binds the issuer to a set of tenants: a token's tenant claim
	// must name one of them, or the token is refused. Leave Tenant and
	// Tenants empty only for an issuer every tenant trusts to say which
	// tenant a user belongs to (one shared realm).
	Tenants []string
}

// Options configures a Verifier.
type Options struct {
	// Leeway tolerates clock skew in exp, nbf and iat; 0 means DefaultLeeway.
	Leeway time.Duration
	// DefaultTier is the tier of principals whose token names none.
	DefaultTier string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient fetches JWKS URLs; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// MinRefreshInterval rate-limits refetching a key set on unknown key
	// ids; 0 means 30 s.
	MinRefreshInterval time.Duration
	// MaxAge is how long a fetched key set is used before it is refetched
	// in the background; 0 means 15 minutes.
	MaxAge time.Duration
	// Logger reports key set refreshes; nil discards.
	Logger *slog.Logger
	// CacheTTL is how long a verified token is remembered (never beyond
	// its exp); 0 means one minute, negative disables the cache. A change
	// of any key set forgets every remembered token.
	CacheTTL time.Duration

	onKeysChanged func() // set by NewVerifier for its key sets
}

// Identity is an authenticated token: the principal it grants and all its
// claims, which a policy may inspect.
type Identity struct {
	Principal core.Principal
	Issuer    string
	// Claims are all the token's claims. They are shared by every request
	// that presents the same token: read them, never modify them.
	Claims map[string]any

	expiry time.Time
}

// Verifier authenticates tokens from a fixed set of issuers. It is safe for
// concurrent use.
type Verifier struct {
	issuers map[string]*issuer
	algs    []jose.SignatureAlgorithm
	leeway  time.Duration
	tier    string
	now     func() time.Time

	cacheTTL time.Duration
	gen      atomic.Uint64 // bumped whenever a key set changes
	mu       sync.RWMutex
	cache    map[string]verified // guarded by mu
}

// verified is a token that passed every check, remembered so that the
// same token's next request skips the signature check (the costliest part
// of Verify): clients send one token for many requests.
type verified struct {
	id    Identity
	until time.Time // the token's exp plus leeway, or the cache TTL if sooner
	gen   uint64    // the key sets it was verified against
}

// maxCached bounds the cache; when full it is emptied, which costs only a
// burst of signature checks.
const maxCached = 10000

type issuer struct {
	cfg    Issuer
	algs   []jose.SignatureAlgorithm
	keys   *keySet // nil for an issuer that only uses HMAC
	hmac   []byte
	tenant string
	roles  string
	scopes string
	tier   string
}

// bindTenant checks the tenant a token's claim names (claimed, "" when it
// names none) against the tenants the issuer vouches for, and returns the
// principal's tenant. An issuer is trusted to say who a user is, and which
// of its own tenants the user acts for; never to speak for a tenant it
// was not configured for.
func (is *issuer) bindTenant(claimed string) (string, error) {
	switch {
	case is.cfg.Tenant != "":
		if claimed != "" && claimed != is.cfg.Tenant {
			return "", fmt.Errorf("issuer %q is bound to tenant %q: the token's tenant %q is refused", is.cfg.Issuer, is.cfg.Tenant, claimed)
		}
		return is.cfg.Tenant, nil
	case len(is.cfg.Tenants) > 0:
		if claimed == "" {
			return "", fmt.Errorf("issuer %q is bound to %d tenants and the token names no tenant", is.cfg.Issuer, len(is.cfg.Tenants))
		}
		if !slices.Contains(is.cfg.Tenants, claimed) {
			return "", fmt.Errorf("issuer %q: the token's tenant %q is not one of the issuer's tenants", is.cfg.Issuer, claimed)
		}
	}
	return claimed, nil
}

var supportedAlgs = map[string]jose.SignatureAlgorithm{
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512,
	"EdDSA": jose.EdDSA,
	"HS256": jose.HS256, "HS384": jose.HS384, "HS512": jose.HS512,
}

func isHMAC(a jose.SignatureAlgorithm) bool {
	return a == jose.HS256 || a == jose.HS384 || a == jose.HS512
}

// NewVerifier returns a Verifier for issuers. It loads every JWKS file and
// tries every JWKS URL once: an unreadable file is an error, an unreachable
// URL is only logged and fetched again when a token needs it, so extauthz
// can start while an identity provider is briefly down.
func NewVerifier(ctx context.Context, issuers []Issuer, o Options) (*Verifier, error) {
	if o.Leeway == 0 {
		o.Leeway = DefaultLeeway
	}
	if o.Leeway < 0 {
		return nil, fmt.Errorf("token: negative leeway %v", o.Leeway)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.MinRefreshInterval == 0 {
		o.MinRefreshInterval = 30 * time.Second
	}
	if o.MaxAge == 0 {
		o.MaxAge = 15 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Minute
	}
	v := &Verifier{issuers: make(map[string]*issuer), leeway: o.Leeway, tier: o.DefaultTier, now: o.Now,
		cacheTTL: o.CacheTTL, cache: make(map[string]verified)}
	o.onKeysChanged = func() { v.gen.Add(1) }
	var errs []error
	for i, cfg := range issuers {
		is, err := newIssuer(cfg, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("token: issuer %d (%q): %w", i, cfg.Issuer, err))
			continue
		}
		if _, dup := v.issuers[cfg.Issuer]; dup {
			errs = append(errs, fmt.Errorf("token: issuer %q configured twice", cfg.Issuer))
			continue
		}
		v.issuers[cfg.Issuer] = is
		for _, a := range is.algs {
			if !slices.Contains(v.algs, a) {
				v.algs = append(v.algs, a)
			}
		}
	}
	if len(issuers) == 0 {
		errs = append(errs, errors.New("token: no issuers configured"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, is := range v.issuers {
		if is.keys == nil {
			continue
		}
		if err := is.keys.refresh(ctx); err != nil {
			if is.cfg.JWKSFile != "" {
				return nil, fmt.Errorf("token: issuer %q: %w", is.cfg.Issuer, err)
			}
			o.Logger.LogAttrs(ctx, slog.LevelWarn, "JWKS not fetched; will retry when a token needs it",
				slog.String("issuer", is.cfg.Issuer), slog.String("err", err.Error()))
		}
	}
	return v, nil
}

func newIssuer(cfg Issuer, o Options) (*issuer, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("issuer (iss) is required")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("at least one non-empty audience is required")
	}
	sources := 0
	for _, set := range []bool{cfg.JWKSFile != "", cfg.JWKSURL != "", cfg.Discovery} {
		if set {
			sources++
		}
	}
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("at least one algorithm is required")
	}
	if err := checkTenants(cfg); err != nil {
		return nil, err
	}
	is := &issuer{
		cfg:    cfg,
		tenant: or(cfg.TenantClaim, DefaultTenantClaim),
		roles:  or(cfg.RolesClaim, DefaultRolesClaim),
		scopes: cfg.ScopesClaim,
		tier:   or(cfg.TierClaim, DefaultTierClaim),
	}
	asymmetric := false
	for _, name := range cfg.Algorithms {
		a, ok := supportedAlgs[name]
		if !ok {
			return nil, fmt.Errorf("algorithm %q is not accepted (want one of RS*, PS*, ES*, EdDSA, HS*)", name)
		}
		if isHMAC(a) && len(cfg.HMACSecret) < 32 {
			return nil, fmt.Errorf("algorithm %s needs an HMAC secret of at least 32 bytes", name)
		}
		asymmetric = asymmetric || !isHMAC(a)
		is.algs = append(is.algs, a)
	}
	is.hmac = cfg.HMACSecret
	switch {
	case !asymmetric && sources == 0:
		return is, nil
	case sources != 1:
		return nil, errors.New("set exactly one of JWKSFile, JWKSURL and Discovery")
	}
	var load func(context.Context) ([]byte, error)
	switch {
	case cfg.JWKSFile != "":
		load = fileLoader(cfg.JWKSFile)
	case cfg.JWKSURL != "":
		l, err := urlLoader(cfg.JWKSURL, o.HTTPClient)
		if err != nil {
			return nil, err
		}
		load = l
	default:
		l, err := discoveryLoader(cfg.Issuer, o.HTTPClient)
		if err != nil {
			return nil, err
		}
		load = l
	}
	is.keys = newKeySet(load, o)
	return is, nil
}

// checkTenants refuses a tenant binding that could not mean what it says.
func checkTenants(cfg Issuer) error {
	if cfg.Tenant != "" && len(cfg.Tenants) > 0 {
		return errors.New("set Tenant or Tenants, not both")
	}
	for _, t := range append([]string{cfg.Tenant}, cfg.Tenants...) {
		if t == "*" {
			return errors.New(`tenant "*" is not a tenant: leave Tenant and Tenants empty for an issuer of every tenant`)
		}
		if err := checkValue("tenant", t); err != nil {
			return fmt.Errorf("tenant %q: %w", t, err)
		}
	}
	if slices.Contains(cfg.Tenants, "") {
		return errors.New("an empty tenant among Tenants")
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// invalid wraps a refusal reason as an unauthenticated core error.
func invalid(format string, args ...any) error {
	return core.E("token.Verify", core.CodeUnauthenticated, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
}

// Verify authenticates raw, a compact JWS without the "Bearer " prefix.
// Any refusal wraps ErrInvalid and carries core.CodeUnauthenticated; its
// text says precisely why, for logs only. A token whose key cannot be
// looked up because the issuer's key set is unreachable is no refusal: the
// error wraps ErrKeysUnavailable and carries core.CodeUnavailable.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	if raw == "" {
		return Identity{}, invalid("empty token")
	}
	if len(raw) > MaxBytes {
		return Identity{}, invalid("token of %d bytes exceeds %d", len(raw), MaxBytes)
	}
	if v.cacheTTL < 0 {
		return v.verify(ctx, raw)
	}
	now := v.now()
	v.mu.RLock()
	c, ok := v.cache[raw]
	v.mu.RUnlock()
	if ok && now.Before(c.until) && c.gen == v.gen.Load() {
		return c.id, nil
	}
	gen := v.gen.Load()
	id, err := v.verify(ctx, raw)
	if err != nil {
		return id, err
	}
	until := now.Add(v.cacheTTL)
	if exp := id.expiry.Add(v.leeway); exp.Before(until) {
		until = exp
	}
	v.mu.Lock()
	if len(v.cache) >= maxCached {
		clear(v.cache)
	}
	v.cache[raw] = verified{id: id, until: until, gen: gen}
	v.mu.Unlock()
	return id, nil
}

// verify authenticates raw without the cache.
func (v *Verifier) verify(ctx context.Context, raw string) (Identity, error) {
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		return Identity{}, invalid("parse: %v", err)
	}
	if len(tok.Headers) != 1 {
		return Identity{}, invalid("want one signature, got %d", len(tok.Headers))
	}
	hdr := tok.Headers[0]
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Identity{}, invalid("claims: %v", err)
	}
	is, ok := v.issuers[unverified.Issuer]
	if !ok {
		return Identity{}, invalid("untrusted issuer %q", unverified.Issuer)
	}
	alg := jose.SignatureAlgorithm(hdr.Algorithm)
	if !slices.Contains(is.algs, alg) {
		return Identity{}, invalid("algorithm %s not accepted for issuer %q", alg, is.cfg.Issuer)
	}
	var key any
	if isHMAC(alg) {
		key = is.hmac
	} else {
		var err error
		if is.keys == nil {
			return Identity{}, invalid("issuer %q has no public keys", is.cfg.Issuer)
		}
		if key, err = is.keys.key(ctx, hdr.KeyID, alg); err != nil {
			if errors.Is(err, ErrKeysUnavailable) {
				return Identity{}, core.E("token.Verify", core.CodeUnavailable, fmt.Errorf("issuer %q: %w", is.cfg.Issuer, err))
			}
			return Identity{}, invalid("issuer %q: %v", is.cfg.Issuer, err)
		}
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(key, &std, &all); err != nil {
		return Identity{}, invalid("signature: %v", err)
	}
	exp := jwt.Expected{Issuer: is.cfg.Issuer, AnyAudience: is.cfg.Audiences, Time: v.now()}
	if err := std.ValidateWithLeeway(exp, v.leeway); err != nil {
		return Identity{}, invalid("claims: %v", err)
	}
	if std.Expiry == nil {
		return Identity{}, invalid("no exp claim")
	}
	p, err := is.principal(std.Subject, all, v.tier)
	if err != nil {
		return Identity{}, invalid("%v", err)
	}
	return Identity{Principal: p, Issuer: is.cfg.Issuer, Claims: all, expiry: std.Expiry.Time()}, nil
}

// principal maps claims onto a principal. Values end up in request headers,
// so anything that could split or smuggle a header is refused rather than
// cleaned up.
func (is *issuer) principal(sub string, claims map[string]any, defaultTier string) (core.Principal, error) {
	if sub == "" {
		return core.Principal{}, errors.New("no sub claim")
	}
	if err := checkValue("sub", sub); err != nil {
		return core.Principal{}, err
	}
	p := core.Principal{Subject: sub, Kind: core.KindJWT}
	var err error
	if p.Tenant, err = stringClaim(claims, is.tenant); err != nil {
		return core.Principal{}, err
	}
	if p.Tenant, err = is.bindTenant(p.Tenant); err != nil {
		return core.Principal{}, err
	}
	if p.Tier, err = stringClaim(claims, is.tier); err != nil {
		return core.Principal{}, err
	}
	if p.Tier == "" {
		p.Tier = defaultTier
	}
	if p.Roles, err = listClaim(claims, is.roles, ","); err != nil {
		return core.Principal{}, err
	}
	if is.scopes != "" {
		p.Scopes, err = listClaim(claims, is.scopes, " ")
	} else if _, ok := lookup(claims, DefaultScopesClaim); ok {
		p.Scopes, err = listClaim(claims, DefaultScopesClaim, " ")
	} else {
		p.Scopes, err = listClaim(claims, "scopes", " ")
	}
	if err != nil {
		return core.Principal{}, err
	}
	return p, nil
}

// lookup finds a claim by its exact name first (names such as
// "https://example.com/roles" contain dots), then as a dotted path.
func lookup(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func stringClaim(claims map[string]any, name string) (string, error) {
	v, ok := lookup(claims, name)
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("claim %q: want a string, got %T", name, v)
	}
	return s, checkValue(name, s)
}

// listClaim reads a claim that is an array of strings or one string of
// items separated by spaces (and commas, for roles). sep is the separator
// of the header the items end up in, which no item may contain.
func listClaim(claims map[string]any, name, sep string) ([]string, error) {
	v, ok := lookup(claims, name)
	if !ok || v == nil {
		return nil, nil
	}
	var items []string
	switch t := v.(type) {
	case string:
		items = strings.FieldsFunc(t, func(r rune) bool { return r == ' ' || r == ',' && sep == "," })
	case []any:
		if len(t) > 256 {
			return nil, fmt.Errorf("claim %q: %d items, at most 256", name, len(t))
		}
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim %q: want strings, got %T", name, e)
			}
			items = append(items, s)
		}
	default:
		return nil, fmt.Errorf("claim %q: want a string or an array of strings, got %T", name, v)
	}
	out := items[:0]
	for _, s := range items {
		if s == "" {
			continue
		}
		if err := checkValue(name, s); err != nil {
			return nil, err
		}
		if strings.ContainsAny(s, sep+" ") {
			return nil, fmt.Errorf("claim %q: item %q contains a separator", name, s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// checkValue refuses values that are too long or could corrupt a header.
func checkValue(name, s string) error {
	if len(s) > 512 {
		return fmt.Errorf("claim %q: longer than 512 bytes", name)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("claim %q: not UTF-8", name)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("claim %q: contains a control character", name)
		}
	}
	return nil
}

// keyMatches reports whether key may verify alg: RSA keys for RS* and PS*,
// ECDSA keys on the algorithm's own curve for ES*, Ed25519 for EdDSA. This
// is the check that defeats key-type confusion whatever a JWKS contains.
func keyMatches(key any, alg jose.SignatureAlgorithm) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return k.N.BitLen() >= 2048
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return k.Curve == elliptic.P256()
		case jose.ES384:
			return k.Curve == elliptic.P384()
		case jose.ES512:
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}
