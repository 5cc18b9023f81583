// Package apikey issues and authenticates Fraise API keys. A key reads
// "frs_<id>_<secret>": the prefix makes a leaked key easy to recognise (and
// for secret scanners to find), the id (16 hex digits) names the stored
// record, and the secret (32 random bytes, base32) is known only to the
// holder: the store keeps its SHA-256, which is enough for a secret of that
// entropy and costs nothing per request.
//
// The Authenticator caches records for a short, documented time (CacheTTL,
// 30 s by default), so a revocation takes effect within that time, and
// writes last-use times in batches rather than once per request. A key
// known to exist keeps being served from the cache while its record is
// read again in the background; lookups of ids not known to exist are
// limited per client, then together, so made-up keys cannot turn real
// clients away.
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
func Generate(n NewKey, now time.Time, rnd io.Reader) (Key, string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if n.TTL == 0 {
		n.TTL = DefaultTTL
	}
	if n.TTL < 0 {
		return Key{}, "", errors.New("apikey: negative lifetime")
	}
	if n.Tenant == "" || n.CreatedBy == "" {
		return Key{}, "", errors.New("apikey: tenant and created-by are required")
	}
	for _, r := range n.Roles {
		if r == "" || strings.ContainsAny(r, ", \t\r\n") {
			return Key{}, "", fmt.Errorf("apikey: invalid role %q", r)
		}
	}
	for _, s := range n.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return Key{}, "", fmt.Errorf("apikey: invalid scope %q", s)
		}
	}
	var b [idBytes + secretBytes]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return Key{}, "", fmt.Errorf("apikey: %w", err)
	}
	id := hex.EncodeToString(b[:idBytes])
	secret := secretEncoding.EncodeToString(b[idBytes:])
	k := Key{
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
	// MaxLookupsPerSecond bounds all store lookups (a burst of as many
	// is allowed); beyond it a key that must be looked up is refused with
	// core.CodeRateLimited. 0 means 100.
	MaxLookupsPerSecond int
	// MaxUnknownLookupsPerSecond bounds lookups of ids not known to be
	// keys (never seen, or last seen not to exist), within
	// MaxLookupsPerSecond; it is kept below it so that refreshes of known
	// keys always find room. 0 means a fifth of MaxLookupsPerSecond (at
	// least 1); it is capped at MaxLookupsPerSecond.
	MaxUnknownLookupsPerSecond int
	// MaxClientLookupsPerSecond bounds one client's lookups of ids not
	// known to be keys (the client is what WithClient put in the context),
	// before MaxUnknownLookupsPerSecond: one client sending made-up keys
	// exhausts its own allowance, not everyone's. 0 means a twentieth of
	// MaxLookupsPerSecond (at least 1); it is capped at
	// MaxUnknownLookupsPerSecond.
	MaxClientLookupsPerSecond int
	// MaxClients bounds the clients whose lookups are counted apart; 0
	// means 10,000.
	MaxClients int
	// Refreshed, when set, is called after each background refresh of a
	// cached key with the key id and the store's error, for metrics (and
	// for tests, which wait on it).
	Refreshed func(id string, err error)
	// DefaultTier is the tier of key principals.
	DefaultTier string
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Authenticator checks API keys against a store. It is safe for
// concurrent use; Close stops its last-use writer and background refreshes
// after a final flush.
type Authenticator struct {
	store Store
	o     Options

	mu       sync.Mutex
	cache    map[string]cached
	used     map[string]time.Time // pending last-use times
	inflight map[string]*flight
	all      bucket             // every store lookup
	unknown  bucket             // lookups of ids not known to be keys
	clients  map[string]*bucket // the same, per client
	closed   bool

	refreshes sync.WaitGroup // background refreshes running
	stop      chan struct{}
	done      chan struct{}
	once      sync.Once
}

type cached struct {
	key     Key
	found   bool
	fetched time.Time
}

// bucket is a token bucket of rate lookups a second holding at most rate,
// on the Authenticator's clock.
type bucket struct {
	rate   float64
	tokens float64
	at     time.Time // when tokens was last topped up; zero: full
}

// refill tops the bucket up to now.
func (b *bucket) refill(now time.Time) {
	if b.at.IsZero() {
		b.tokens = b.rate
	} else if now.After(b.at) {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.at).Seconds()*b.rate)
	}
	b.at = now
}

// idle reports whether the bucket is full again at now, so forgetting it
// changes nothing.
func (b *bucket) idle(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.rate
}

// NewAuthenticator returns an Authenticator over store and starts its
// last-use writer.
func NewAuthenticator(store Store, o Options) *Authenticator {
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxCached == 0 {
		o.MaxCached = 10000
	}
	if o.MaxLookupsPerSecond <= 0 {
		o.MaxLookupsPerSecond = 100
	}
	if o.MaxUnknownLookupsPerSecond <= 0 {
		o.MaxUnknownLookupsPerSecond = max(1, o.MaxLookupsPerSecond/5)
	}
	o.MaxUnknownLookupsPerSecond = min(o.MaxUnknownLookupsPerSecond, o.MaxLookupsPerSecond)
	if o.MaxClientLookupsPerSecond <= 0 {
		o.MaxClientLookupsPerSecond = max(1, o.MaxLookupsPerSecond/20)
	}
	o.MaxClientLookupsPerSecond = min(o.MaxClientLookupsPerSecond, o.MaxUnknownLookupsPerSecond)
	if o.MaxClients <= 0 {
		o.MaxClients = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{store: store, o: o, stop: make(chan struct{}), done: make(chan struct{})}
	a.cache, a.used, a.inflight = make(map[string]cached), make(map[string]time.Time), make(map[string]*flight)
	a.all.rate, a.unknown.rate = float64(o.MaxLookupsPerSecond), float64(o.MaxUnknownLookupsPerSecond)
	a.clients = make(map[string]*bucket)
	go a.flushLoop()
	return a
}

type clientKey struct{}

// WithClient returns ctx carrying client, the identity of the connection
// a key arrives on (its client certificate and peer address), by which
// Verify limits the store lookups one client can cause.
func WithClient(ctx context.Context, client string) context.Context {
	return context.WithValue(ctx, clientKey{}, client)
}

func clientOf(ctx context.Context) string {
	c, _ := ctx.Value(clientKey{}).(string)
	return c
}

// Verify authenticates raw and returns the principal it grants: subject
// "apikey:<id>", the key's tenant, roles and scopes. A refusal wraps
// ErrInvalid with CodeUnauthenticated; a store failure is an *Error with
// CodeUnavailable, so that extauthz fails closed with an error rather than
// calling a valid key invalid; a key that had to be looked up while its
// client, the unknown ids or all lookups were over their limits is an
// *Error with CodeRateLimited.
func (a *Authenticator) Verify(ctx context.Context, raw string) (core.Principal, error) {
	const op = "apikey.Verify"
	id, secret, err := Parse(raw)
	if err != nil {
		return core.Principal{}, core.E(op, core.CodeUnauthenticated, err)
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
	return core.E("apikey.Verify", core.CodeUnauthenticated, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
}

// lookup returns the record for id from the cache or the store. Unknown
// ids are cached too, so that guessing ids costs the store nothing more
// than guessing the same id again.
//
// A key known to exist is served from the cache for up to CacheTTL after
// its record was read; for another CacheTTL it is still served, while the
// record is read again in the background, so a client using a real key is
// never made to wait for, or be refused by, a lookup of it. Beyond that
// (the store stayed unreachable), it is looked up like any id. Revocation
// takes effect once the background read has seen it: within CacheTTL of
// the revocation when the store is reachable.
func (a *Authenticator) lookup(ctx context.Context, id string) (Key, bool, error) {
	const op = "apikey.Verify"
	now := a.o.Now()
	a.mu.Lock()
	c, ok := a.cache[id]
	if ok {
		age := now.Sub(c.fetched)
		if age < a.o.CacheTTL {
			a.mu.Unlock()
			return c.key, c.found, nil
		}
		if c.found && age < 2*a.o.CacheTTL {
			a.refreshLocked(id, now)
			a.mu.Unlock()
			return c.key, true, nil
		}
	}
	// Concurrent requests for the same id share one store lookup.
	if f, ok := a.inflight[id]; ok {
		a.mu.Unlock()
		select {
		case <-f.done:
			return f.key, f.found, f.err
		case <-ctx.Done():
			return Key{}, false, core.E(op, core.CodeUnavailable, ctx.Err())
		}
	}
	// Lookups that miss the cache are rate-limited: keys with made-up ids
	// would otherwise turn a flood of requests into a flood of queries.
	if err := a.takeLocked(now, id, clientOf(ctx), ok && c.found); err != nil {
		a.mu.Unlock()
		return Key{}, false, core.E(op, core.CodeRateLimited, err)
	}
	f := &flight{done: make(chan struct{})}
	a.inflight[id] = f
	a.mu.Unlock()
	k, found, err := a.fetch(ctx, id, f, now)
	if err != nil {
		return Key{}, false, err
	}
	return k, found, nil
}

// fetch reads id from the store for flight f started at now, caches what
// it learns and releases f's waiters. A store failure leaves the cache as
// it was.
func (a *Authenticator) fetch(ctx context.Context, id string, f *flight, now time.Time) (Key, bool, error) {
	defer func() {
		a.mu.Lock()
		delete(a.inflight, id)
		a.mu.Unlock()
		close(f.done)
	}()
	k, err := a.store.Get(ctx, id)
	found := err == nil
	if err != nil && core.ErrorCode(err) != core.CodeNotFound {
		f.err = core.E("apikey.Verify", core.CodeUnavailable, err)
		return Key{}, false, f.err
	}
	f.key, f.found = k, found
	a.mu.Lock()
	a.storeLocked(id, cached{key: k, found: found, fetched: now}, now)
	a.mu.Unlock()
	return k, found, nil
}

// storeLocked caches c for id; a.mu is held. A full cache first forgets
// what it would no longer serve, then ids that are not keys, and only then
// everything.
func (a *Authenticator) storeLocked(id string, c cached, now time.Time) {
	if _, ok := a.cache[id]; !ok && len(a.cache) >= a.o.MaxCached {
		for k, e := range a.cache {
			if age := now.Sub(e.fetched); age >= 2*a.o.CacheTTL || !e.found && age >= a.o.CacheTTL {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= a.o.MaxCached {
			for k, e := range a.cache {
				if !e.found {
					delete(a.cache, k)
				}
			}
		}
		if len(a.cache) >= a.o.MaxCached {
			clear(a.cache)
		}
	}
	a.cache[id] = c
}

// refreshLocked reads known key id again in the background, unless a
// lookup of it is under way or the store lookups are over their limit (a
// later request tries again); a.mu is held.
func (a *Authenticator) refreshLocked(id string, now time.Time) {
	if _, busy := a.inflight[id]; busy || a.closed {
		return
	}
	if a.all.refill(now); a.all.tokens < 1 {
		return
	}
	a.all.tokens--
	f := &flight{done: make(chan struct{})}
	a.inflight[id] = f
	a.refreshes.Add(1)
	go func() {
		defer a.refreshes.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err := a.fetch(ctx, id, f, now)
		if err != nil {
			a.o.Logger.LogAttrs(ctx, slog.LevelWarn, "API key not refreshed; serving the cached record until it is",
				slog.String("key", id), slog.String("err", err.Error()))
		}
		if a.o.Refreshed != nil {
			a.o.Refreshed(id, err)
		}
	}()
}

// flight is one store lookup other requests for the same id wait for.
type flight struct {
	done  chan struct{}
	key   Key
	found bool
	err   error
}

// takeLocked takes one lookup of id for client from the buckets it must
// pass, or none and says which refused: an id known to be a key needs
// room among all lookups only; any other id first within its client's
// allowance, then within the unknown ids', then among all. a.mu is held.
func (a *Authenticator) takeLocked(now time.Time, id, client string, known bool) error {
	buckets := []*bucket{&a.all}
	if !known {
		cb := a.clients[client]
		if cb == nil {
			if len(a.clients) >= a.o.MaxClients {
				for c, b := range a.clients {
					if b.idle(now) {
						delete(a.clients, c)
					}
				}
				if len(a.clients) >= a.o.MaxClients {
					clear(a.clients)
				}
			}
			cb = &bucket{rate: float64(a.o.MaxClientLookupsPerSecond)}
			a.clients[client] = cb
		}
		buckets = []*bucket{cb, &a.unknown, &a.all}
	}
	for _, b := range buckets {
		if b.refill(now); b.tokens >= 1 {
			continue
		}
		switch {
		case b == &a.all:
			return fmt.Errorf("%w: key %s not looked up: more than %d lookups/s", ErrInvalid, id, a.o.MaxLookupsPerSecond)
		case b == &a.unknown:
			return fmt.Errorf("%w: key %s not looked up: more than %d lookups/s of ids not known to be keys", ErrInvalid, id, a.o.MaxUnknownLookupsPerSecond)
		default:
			return fmt.Errorf("%w: key %s not looked up: more than %d lookups/s of ids not known to be keys from client %q",
				ErrInvalid, id, a.o.MaxClientLookupsPerSecond, client)
		}
	}
	for _, b := range buckets {
		b.tokens--
	}
	return nil
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

// Close stops the last-use writer, waits for background refreshes and
// flushes what is pending.
func (a *Authenticator) Close() {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		close(a.stop)
		<-a.done
		a.refreshes.Wait()
		a.Flush(context.Background())
	})
}
