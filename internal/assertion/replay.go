package assertion

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// ErrReplayed is ReplayCache.Spend's answer for an id already spent: the
// assertion carrying it is being presented a second time.
var ErrReplayed = errors.New("identity assertion already used")

// ErrReplayCacheFull is ReplayCache.Spend's answer when the cache holds
// as many live ids as its capacity: it refuses the new id rather than
// forget an old one, since a forgotten id could be replayed.
var ErrReplayCacheFull = errors.New("identity assertion replay cache full")

// DefaultReplayRate is the rate, in assertions per second, a Verifier's
// default ReplayCache is sized for: about three times what one core
// serves on two cores (docs/graphql-over-http.md measures 2,000 to 3,600
// requests/s).
const DefaultReplayRate = 10_000

// ReplayCapacity is the capacity a ReplayCache needs for rate assertions
// a second: rate times the longest an id must be remembered, an
// assertion's MaxLifetime plus the Leeway past its expiry.
func ReplayCapacity(rate int) int {
	return rate * int((MaxLifetime+Leeway+time.Second-1)/time.Second)
}

// ReplayCache remembers spent assertion ids until their assertions expire,
// so that each assertion runs one request. It is bounded: at most capacity
// ids are remembered at once, each in about 60 bytes (a 16-byte digest of
// the id in a map and in a min-heap ordered by expiry). An id leaves only
// when its assertion has expired (plus Leeway), never to make room: a new
// id that finds the cache full is refused (ErrReplayCacheFull), so no
// flood of requests can push a spent id out and make it replayable again.
// Filling it takes more than capacity valid assertions within one
// lifetime, each from a request extauthz allowed and the rate limiter let
// through. It is safe for concurrent use.
type ReplayCache struct {
	mu       sync.Mutex
	capacity int
	now      func() time.Time
	live     map[[16]byte]struct{}
	byExpiry []replayEntry // a min-heap on until
}

type replayEntry struct {
	until int64 // unix nanoseconds after which the id may be forgotten
	id    [16]byte
}

// NewReplayCache returns a cache of at most capacity live ids (at least
// one), on clock now (nil is time.Now).
func NewReplayCache(capacity int, now func() time.Time) *ReplayCache {
	if capacity < 1 {
		capacity = 1
	}
	if now == nil {
		now = time.Now
	}
	return &ReplayCache{capacity: capacity, now: now, live: map[[16]byte]struct{}{}}
}

// Spend records id as spent until until (after which its assertion no
// longer verifies). It returns ErrReplayed when id is spent already, and
// ErrReplayCacheFull when the cache is full of ids that have not expired.
func (c *ReplayCache) Spend(id string, until time.Time) error {
	// A digest keeps entries small whatever the id's length; 128 bits of
	// SHA-256 collide for no two ids this side of 2^64 of them.
	sum := sha256.Sum256([]byte(id))
	var key [16]byte
	copy(key[:], sum[:16])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(c.now().UnixNano())
	if _, ok := c.live[key]; ok {
		return ErrReplayed
	}
	if len(c.live) >= c.capacity {
		return ErrReplayCacheFull
	}
	c.live[key] = struct{}{}
	c.push(replayEntry{until: until.UnixNano(), id: key})
	return nil
}

// Len returns how many ids the cache remembers.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live)
}

// expire forgets the ids whose assertions expired before now.
func (c *ReplayCache) expire(now int64) {
	for len(c.byExpiry) > 0 && c.byExpiry[0].until < now {
		delete(c.live, c.byExpiry[0].id)
		c.pop()
	}
}

func (c *ReplayCache) push(e replayEntry) {
	h := append(c.byExpiry, e)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].until <= h[i].until {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	c.byExpiry = h
}

func (c *ReplayCache) pop() {
	h := c.byExpiry
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h[l].until < h[m].until {
			m = l
		}
		if r < n && h[r].until < h[m].until {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	c.byExpiry = h
}
