package extauthz

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"github.com/fraise-dev/fraise/extauthz/policy"
)

// DefaultDecisionCacheTTL is how long a decision is reused for an
// identical request when the policy allows it (policy.Policy.Cacheable).
const DefaultDecisionCacheTTL = 10 * time.Second

// maxCachedDecisions bounds the decision cache; when full it is emptied.
const maxCachedDecisions = 10000

// decisionCache memoises one policy revision's decisions by everything
// that policy can read: the credential (which determines the principal),
// the request's method, path and host, and the operation. It belongs to
// one *policy.Policy and is replaced with it, so a reload never serves a
// previous revision's decision.
type decisionCache struct {
	pol *policy.Policy
	ttl time.Duration

	mu sync.RWMutex
	m  map[[sha256.Size]byte]cachedDecision
}

type cachedDecision struct {
	d     policy.Decision
	until time.Time
}

func newDecisionCache(p *policy.Policy, ttl time.Duration) *decisionCache {
	return &decisionCache{pol: p, ttl: ttl, m: make(map[[sha256.Size]byte]cachedDecision)}
}

func (c *decisionCache) get(key [sha256.Size]byte, now time.Time) (policy.Decision, bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return policy.Decision{}, false
	}
	return e.d, true
}

func (c *decisionCache) put(key [sha256.Size]byte, d policy.Decision, now time.Time) {
	c.mu.Lock()
	if len(c.m) >= maxCachedDecisions {
		clear(c.m)
	}
	c.m[key] = cachedDecision{d: d, until: now.Add(c.ttl)}
	c.mu.Unlock()
}

// decisionKey names a request by the parts of the input a cacheable
// policy may read. The credential stands for the principal: the same
// credential always maps to the same principal. The key is a SHA-256 of
// them, so that a caller with long operations cannot make each cache
// entry large, nor craft two requests that share an entry.
func decisionKey(credential string, in *input) [sha256.Size]byte {
	var b strings.Builder
	b.Grow(len(credential) + 128)
	for _, s := range []string{credential, in.method, in.path, in.host} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	switch {
	case in.graphql != nil:
		b.WriteString("g\x00")
		b.WriteString(in.graphql.Operation)
		b.WriteByte(0)
		b.WriteString(in.graphql.Name)
		for _, f := range in.graphql.RootFields {
			b.WriteByte(1)
			b.WriteString(f)
		}
	case in.flight != nil:
		b.WriteString("f\x00")
		b.WriteString(in.flight.Method)
		b.WriteByte(0)
		b.WriteString(in.flight.Dataset)
	}
	if in.console != nil {
		// The same token as a cookie or a header is the same principal,
		// but input.console.session tells them apart.
		b.WriteString("\x00c\x00")
		b.WriteString(in.console.session)
	}
	return sha256.Sum256([]byte(b.String()))
}
