// Package apikey issues and authenticates Fraise API keys. A key reads
// "frs_<id>_<secret>": the prefix makes a leaked key easy to recognise (and
// for secret scanners to find), the id (16 hex digits) names the stored
// record, and the secret (32 random bytes, base32) is known only to the
// holder: the store keeps its SHA-256, which is enough for a secret of that
// entropy and costs nothing per request.
//
// The Authenticator caches records for a short, documented time (CacheTTL,
// 30 s by default), so a revocation takes effect within that time, and
// writes last-use times in batches rather than once per request.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// Prefix starts every API key.
const Prefix = "frs_"

// DefaultTTL is the lifetime of a key created without one.
const DefaultTTL = 90 * 24 * time.Hour

// DefaultCacheTTL is how long a looked-up key is trusted without asking
// the store again, and so the longest a revoked key keeps working.
const DefaultCacheTTL = 30 * time.Second

// DefaultFlushInterval is how often last-use times are written.
const DefaultFlushInterval = 30 * time.Second

const (
	idBytes     = 8
	secretBytes = 32
	idLen       = 2 * idBytes
)

var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var secretLen = secretEncoding.EncodedLen(secretBytes)

// ErrInvalid is wrapped by every refusal of a key; the text after it says
// why, for the decision log only.
var ErrInvalid = errors.New("invalid API key")

// Looks reports whether raw has the shape of an API key, so a caller can
// tell a key from a JWT without trying both.
func Looks(raw string) bool { return strings.HasPrefix(raw, Prefix) }

// Parse splits raw into its id and secret.
func Parse(raw string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(raw, Prefix)
	if !ok {
		return "", "", fmt.Errorf("%w: no %q prefix", ErrInvalid, Prefix)
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != idLen || len(secret) != secretLen {
		return "", "", fmt.Errorf("%w: malformed", ErrInvalid)
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return "", "", fmt.Errorf("%w: malformed id", ErrInvalid)
	}
	if _, err := secretEncoding.DecodeString(secret); err != nil {
		return "", "", fmt.Errorf("%w: malformed secret", ErrInvalid)
	}
	return id, secret, nil
}

// Hash is what the store keeps of secret.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// NewKey is the input of Generate.
type NewKey struct {
	Tenant, Name, CreatedBy string
	Roles, Scopes           []string
	// TTL is the key's lifetime; 0 means DefaultTTL.
	TTL time.Duration
}

// Generate creates a key for n at now with randomness from rnd (nil means
// crypto/rand). It returns the record to store and the full key, which is
// shown once and never stored.
func Generate(n NewKey, now time.Time, rnd io.Reader) (core.APIKey, string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if n.TTL == 0 {
		n.TTL = DefaultTTL
	}
	if n.TTL < 0 {
		return core.APIKey{}, "", errors.New("apikey: negative lifetime")
	}
	if n.Tenant == "" || n.CreatedBy == "" {
		return core.APIKey{}, "", errors.New("apikey: tenant and created-by are required")
	}
	for _, r := range n.Roles {
		if r == "" || strings.ContainsAny(r, ", \t\r\n") {
			return core.APIKey{}, "", fmt.Errorf("apikey: invalid role %q", r)
		}
	}
	for _, s := range n.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return core.APIKey{}, "", fmt.Errorf("apikey: invalid scope %q", s)
		}
	}
	var b [idBytes + secretBytes]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return core.APIKey{}, "", fmt.Errorf("apikey: %w", err)
	}
	id := hex.EncodeToString(b[:idBytes])
	secret := secretEncoding.EncodeToString(b[idBytes:])
	k := core.APIKey{
		ID: id, Tenant: n.Tenant, Name: n.Name, Roles: n.Roles, Scopes: n.Scopes, Hash: Hash(secret),
		CreatedBy: n.CreatedBy, CreatedAt: now.UTC().Truncate(time.Microsecond),
		ExpiresAt: now.Add(n.TTL).UTC().Truncate(time.Microsecond),
	}
	return k, Prefix + id + "_" + secret, nil
}

// Options configures an Authenticator.
type Options struct {
	// CacheTTL is how long a record is used without asking the store;
	// 0 means DefaultCacheTTL. It bounds how long a revoked key works.
	CacheTTL time.Duration
	// FlushInterval is how often last-use times are written; 0 means
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// MaxCached bounds the cache; 0 means 10,000 records.
	MaxCached int
	// MaxLookupsPerSecond bounds store lookups of keys not in the cache
	// (a burst of as many is allowed); beyond it a key is refused with
	// core.CodeRateLimited. 0 means 100.
	MaxLookupsPerSecond int
	// DefaultTier is the tier of key principals.
	DefaultTier string
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Authenticator checks API keys against a store. It is safe for
// concurrent use; Close stops its last-use writer after a final flush.
type Authenticator struct {
	store core.APIKeyStore
	o     Options

	mu       sync.Mutex
	cache    map[string]cached
	used     map[string]time.Time // pending last-use times
	inflight map[string]*flight
	tokens   float64   // lookups the bucket allows now
	refilled time.Time // when tokens was last topped up

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type cached struct {
	key     core.APIKey
	found   bool
	fetched time.Time
}

// NewAuthenticator returns an Authenticator over store and starts its
// last-use writer.
func NewAuthenticator(store core.APIKeyStore, o Options) *Authenticator {
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxCached == 0 {
		o.MaxCached = 10000
	}
	if o.MaxLookupsPerSecond == 0 {
		o.MaxLookupsPerSecond = 100
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{store: store, o: o, stop: make(chan struct{}), done: make(chan struct{})}
	a.cache, a.used, a.inflight = make(map[string]cached), make(map[string]time.Time), make(map[string]*flight)
	go a.flushLoop()
	return a
}

// Verify authenticates raw and returns the principal it grants: subject
// "apikey:<id>", the key's tenant, roles and scopes. A refusal wraps
// ErrInvalid with CodeUnauthenticated; a store failure is an *Error with
// CodeUnavailable, so that extauthz fails closed with an error rather than
// calling a valid key invalid; too many lookups of uncached keys are an
// *Error with CodeRateLimited.
func (a *Authenticator) Verify(ctx context.Context, raw string) (core.Principal, error) {
	const op = "apikey.Verify"
	id, secret, err := Parse(raw)
	if err != nil {
		return core.Principal{}, &core.Error{Op: op, Code: core.CodeUnauthenticated, Err: err}
	}
	k, found, err := a.lookup(ctx, id)
	if err != nil {
		return core.Principal{}, err
	}
	// Hash and compare even for an unknown id, so that timing does not
	// tell an attacker which ids exist.
	want := k.Hash
	if !found || len(want) != sha256.Size {
		want = make([]byte, sha256.Size)
	}
	match := subtle.ConstantTimeCompare(Hash(secret), want) == 1
	now := a.o.Now()
	switch {
	case !found:
		return core.Principal{}, refuse("key %s unknown", id)
	case !match:
		return core.Principal{}, refuse("key %s: wrong secret", id)
	case !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):
		return core.Principal{}, refuse("key %s revoked at %s", id, k.RevokedAt.UTC().Format(time.RFC3339))
	case !now.Before(k.ExpiresAt):
		return core.Principal{}, refuse("key %s expired at %s", id, k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	a.mu.Lock()
	a.used[id] = now
	a.mu.Unlock()
	return core.Principal{
		Subject: "apikey:" + id, Tenant: k.Tenant, Roles: k.Roles, Scopes: k.Scopes,
		Kind: core.KindAPIKey, Tier: a.o.DefaultTier,
	}, nil
}

func refuse(format string, args ...any) error {
	return &core.Error{Op: "apikey.Verify", Code: core.CodeUnauthenticated,
		Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)}
}

// lookup returns the record for id from the cache or the store. Unknown
// ids are cached too, so that guessing ids costs the store nothing more
// than guessing the same id again.
func (a *Authenticator) lookup(ctx context.Context, id string) (core.APIKey, bool, error) {
	now := a.o.Now()
	a.mu.Lock()
	c, ok := a.cache[id]
	a.mu.Unlock()
	if ok && now.Sub(c.fetched) < a.o.CacheTTL {
		return c.key, c.found, nil
	}
	// Concurrent requests for the same id share one store lookup.
	a.mu.Lock()
	if f, ok := a.inflight[id]; ok {
		a.mu.Unlock()
		select {
		case <-f.done:
			return f.key, f.found, f.err
		case <-ctx.Done():
			return core.APIKey{}, false, &core.Error{Op: "apikey.Verify", Code: core.CodeUnavailable, Err: ctx.Err()}
		}
	}
	// Lookups that miss the cache are rate-limited: keys with made-up ids
	// would otherwise turn a flood of requests into a flood of queries.
	if !a.takeToken(now) {
		a.mu.Unlock()
		return core.APIKey{}, false, &core.Error{Op: "apikey.Verify", Code: core.CodeRateLimited,
			Err: fmt.Errorf("%w: key %s not looked up: more than %d lookups/s", ErrInvalid, id, a.o.MaxLookupsPerSecond)}
	}
	f := &flight{done: make(chan struct{})}
	a.inflight[id] = f
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.inflight, id)
		a.mu.Unlock()
		close(f.done)
	}()

	k, err := a.store.Get(ctx, id)
	found := err == nil
	if err != nil && core.ErrorCode(err) != core.CodeNotFound {
		f.err = &core.Error{Op: "apikey.Verify", Code: core.CodeUnavailable, Err: err}
		return core.APIKey{}, false, f.err
	}
	f.key, f.found = k, found
	a.mu.Lock()
	if len(a.cache) >= a.o.MaxCached {
		for k, c := range a.cache {
			if now.Sub(c.fetched) >= a.o.CacheTTL {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= a.o.MaxCached {
			clear(a.cache)
		}
	}
	a.cache[id] = cached{key: k, found: found, fetched: now}
	a.mu.Unlock()
	return k, found, nil
}

// flight is one store lookup other requests for the same id wait for.
type flight struct {
	done  chan struct{}
	key   core.APIKey
	found bool
	err   error
}

// takeToken takes one lookup from the token bucket; a.mu is held.
func (a *Authenticator) takeToken(now time.Time) bool {
	rate := float64(a.o.MaxLookupsPerSecond)
	if !a.refilled.IsZero() {
		a.tokens = min(rate, a.tokens+now.Sub(a.refilled).Seconds()*rate)
	} else {
		a.tokens = rate
	}
	a.refilled = now
	if a.tokens < 1 {
		return false
	}
	a.tokens--
	return true
}

func (a *Authenticator) flushLoop() {
	defer close(a.done)
	t := time.NewTicker(a.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.Flush(context.Background())
		}
	}
}

// Flush writes the pending last-use times now. Times that fail to be
// written are kept for the next flush.
func (a *Authenticator) Flush(ctx context.Context) {
	a.mu.Lock()
	batch := a.used
	a.used = make(map[string]time.Time)
	a.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.store.TouchLastUsed(ctx, batch); err != nil {
		a.o.Logger.LogAttrs(ctx, slog.LevelWarn, "API key last-use times not written; retrying later",
			slog.Int("keys", len(batch)), slog.String("err", err.Error()))
		a.mu.Lock()
		for id, at := range batch {
			if cur, ok := a.used[id]; !ok || at.After(cur) {
				a.used[id] = at
			}
		}
		a.mu.Unlock()
	}
}

// Close stops the last-use writer and flushes what is pending.
func (a *Authenticator) Close() {
	a.once.Do(func() {
		close(a.stop)
		<-a.done
		a.Flush(context.Background())
	})
}
