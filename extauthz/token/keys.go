package token

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// maxJWKSBytes bounds a JWKS document; real ones hold a handful of keys.
const maxJWKSBytes = 1 << 20

// keySet is one issuer's public keys. Lookups of known keys take no lock;
// an unknown key id triggers one refetch, deduplicated across concurrent
// requests and rate-limited, so a flood of tokens with made-up key ids
// cannot turn into a flood of requests to the identity provider.
type keySet struct {
	load        func(context.Context) ([]byte, error)
	now         func() time.Time
	minInterval time.Duration
	maxAge      time.Duration
	log         *slog.Logger

	keys atomic.Pointer[loadedKeys]

	mu        sync.Mutex // serialises refreshes
	lastTry   time.Time  // guarded by mu
	lastErr   error      // of the last refresh; guarded by mu
	bgRunning atomic.Bool
	onChange  func() // called when a refresh changes the keys
}

// sameKeys reports whether a and b hold the same key ids and keys.
func sameKeys(a, b *loadedKeys) bool {
	if len(a.all) != len(b.all) {
		return false
	}
	for i := range a.all {
		x, y := a.all[i], b.all[i]
		if x.KeyID != y.KeyID || x.Algorithm != y.Algorithm {
			return false
		}
		xt, err1 := x.Thumbprint(crypto.SHA256)
		yt, err2 := y.Thumbprint(crypto.SHA256)
		if err1 != nil || err2 != nil || string(xt) != string(yt) {
			return false
		}
	}
	return true
}

type loadedKeys struct {
	byKID map[string]jose.JSONWebKey
	all   []jose.JSONWebKey
	at    time.Time
}

func newKeySet(load func(context.Context) ([]byte, error), o Options) *keySet {
	return &keySet{load: load, now: o.Now, minInterval: o.MinRefreshInterval, maxAge: o.MaxAge, log: o.Logger, onChange: o.onKeysChanged}
}

// key returns the verification key for kid and alg, refreshing the set
// once if kid is unknown. A token without kid is accepted only when the set
// holds exactly one key usable with alg.
func (ks *keySet) key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (any, error) {
	cur := ks.keys.Load()
	if cur != nil && ks.now().Sub(cur.at) > ks.maxAge {
		ks.refreshInBackground(ctx)
	}
	if k, err := pick(cur, kid, alg); err == nil || !errors.Is(err, errUnknownKey) {
		return k, err
	}
	ks.mu.Lock()
	// Another request may have refreshed the set while this one waited.
	if next := ks.keys.Load(); next != cur {
		ks.mu.Unlock()
		return pick(next, kid, alg)
	}
	if !ks.lastTry.IsZero() && ks.now().Sub(ks.lastTry) < ks.minInterval {
		lastErr := ks.lastErr
		ks.mu.Unlock()
		if lastErr != nil {
			return nil, fmt.Errorf("%w: key id %q not held, and the key set's refresh less than %v ago failed: %v", ErrKeysUnavailable, kid, ks.minInterval, lastErr)
		}
		return nil, fmt.Errorf("%w %q (key set refreshed less than %v ago)", errUnknownKey, kid, ks.minInterval)
	}
	err := ks.refreshLocked(ctx)
	ks.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: key id %q not held: refresh: %v", ErrKeysUnavailable, kid, err)
	}
	return pick(ks.keys.Load(), kid, alg)
}

var errUnknownKey = errors.New("unknown key id")

// ErrKeysUnavailable is a token naming a key this process does not hold
// while the issuer's key set cannot be fetched to look for it: no verdict
// on the token, which may be signed with a key the identity provider has
// just rotated to. extauthz answers it as an outage (503, retry), not as a
// bad credential (401, which tells clients to drop their token).
var ErrKeysUnavailable = errors.New("issuer's key set unavailable")

func pick(set *loadedKeys, kid string, alg jose.SignatureAlgorithm) (any, error) {
	if set == nil {
		return nil, fmt.Errorf("%w %q: no keys loaded", errUnknownKey, kid)
	}
	if kid == "" {
		var found []jose.JSONWebKey
		for _, k := range set.all {
			if usable(k, alg) {
				found = append(found, k)
			}
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("token has no kid and %d keys could verify it", len(found))
		}
		return found[0].Key, nil
	}
	k, ok := set.byKID[kid]
	if !ok {
		return nil, fmt.Errorf("%w %q", errUnknownKey, kid)
	}
	if !usable(k, alg) {
		return nil, fmt.Errorf("key %q cannot verify %s", kid, alg)
	}
	return k.Key, nil
}

// usable reports whether k may verify alg: its declared alg (if any) must
// be alg, and its type must fit alg.
func usable(k jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	return keyMatches(k.Key, alg)
}

func (ks *keySet) refresh(ctx context.Context) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.refreshLocked(ctx)
}

func (ks *keySet) refreshLocked(ctx context.Context) error {
	ks.lastTry = ks.now()
	data, err := ks.load(ctx)
	if err == nil {
		var set *loadedKeys
		if set, err = parseJWKS(data); err == nil {
			set.at = ks.now()
			if prev := ks.keys.Swap(set); prev != nil && ks.onChange != nil && !sameKeys(prev, set) {
				ks.onChange()
			}
		}
	}
	ks.lastErr = err
	return err
}

// refreshInBackground refetches a stale set without delaying the request
// that noticed: the keys it has stay valid until the new ones arrive.
func (ks *keySet) refreshInBackground(ctx context.Context) {
	if !ks.bgRunning.CompareAndSwap(false, true) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer ks.bgRunning.Store(false)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if cur := ks.keys.Load(); cur != nil && ks.now().Sub(cur.at) <= ks.maxAge {
			return
		}
		if ks.now().Sub(ks.lastTry) < ks.minInterval {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := ks.refreshLocked(ctx); err != nil {
			ks.log.LogAttrs(ctx, slog.LevelWarn, "JWKS refresh failed; keeping the previous keys", slog.String("err", err.Error()))
		}
	}()
}

// parseJWKS reads a JWKS, keeping the public signing keys and refusing any
// private or symmetric key: a JWKS that publishes a secret is a
// misconfiguration to report, not to use.
func parseJWKS(data []byte) (*loadedKeys, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	set := &loadedKeys{byKID: make(map[string]jose.JSONWebKey)}
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			// Keys of types go-jose does not know are skipped, as RFC 7517
			// asks, rather than failing the whole set.
			continue
		}
		if !k.IsPublic() {
			return nil, fmt.Errorf("JWKS: key %d (%q) is not a public key", i, k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if _, dup := set.byKID[k.KeyID]; dup && k.KeyID != "" {
			return nil, fmt.Errorf("JWKS: key id %q appears twice", k.KeyID)
		}
		set.all = append(set.all, k)
		if k.KeyID != "" {
			set.byKID[k.KeyID] = k
		}
	}
	if len(set.all) == 0 {
		return nil, errors.New("JWKS: no public signing keys")
	}
	return set, nil
}

func fileLoader(path string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readLimited(f)
	}
}

func urlLoader(raw string, c *http.Client) (func(context.Context) ([]byte, error), error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("JWKSURL %q: want an http or https URL", raw)
	}
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
		}
		return readLimited(resp.Body)
	}, nil
}

// discoveryLoader fetches the issuer's OpenID Connect discovery document
// on every load (it is small, and a provider may move its JWKS), checks
// that it names the configured issuer, and fetches its jwks_uri.
func discoveryLoader(issuer string, c *http.Client) (func(context.Context) ([]byte, error), error) {
	docURL := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	fetchDoc, err := urlLoader(docURL, c)
	if err != nil {
		return nil, fmt.Errorf("discovery: issuer %q is not an http or https URL", issuer)
	}
	return func(ctx context.Context) ([]byte, error) {
		b, err := fetchDoc(ctx)
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		// OpenID Connect Discovery 1.0 §4.3: a document for another issuer
		// must not be used, or one provider could vouch for another.
		if doc.Issuer != issuer {
			return nil, fmt.Errorf("discovery: document names issuer %q, want %q", doc.Issuer, issuer)
		}
		fetchKeys, err := urlLoader(doc.JWKSURI, c)
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		return fetchKeys(ctx)
	}, nil
}

// RefreshEvery refetches every issuer's keys each interval until ctx ends,
// so that keys an issuer adds are known before its first token arrives. A
// failed fetch keeps the previous keys.
func (v *Verifier) RefreshEvery(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, is := range v.issuers {
			if is.keys == nil {
				continue
			}
			if err := is.keys.refresh(ctx); err != nil && ctx.Err() == nil {
				log.LogAttrs(ctx, slog.LevelWarn, "JWKS refresh failed; keeping the previous keys",
					slog.String("issuer", is.cfg.Issuer), slog.String("err", err.Error()))
			}
		}
	}
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	return data, nil
}
