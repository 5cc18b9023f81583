package assertion_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/assertion"
)

// clock is a settable clock for the tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestReplayCacheSpendsOnce(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	c := assertion.NewReplayCache(10, clk.now)
	until := clk.now().Add(assertion.DefaultTTL + assertion.Leeway)
	if err := c.Spend("req-1", until); err != nil {
		t.Fatalf("first use: got %v, want nil", err)
	}
	if err := c.Spend("req-1", until); !errors.Is(err, assertion.ErrReplayed) {
		t.Fatalf("second use: got %v, want ErrReplayed", err)
	}
	if err := c.Spend("req-2", until); err != nil {
		t.Fatalf("another id: got %v, want nil", err)
	}
	clk.advance(assertion.DefaultTTL + assertion.Leeway + time.Second)
	// Past its expiry the assertion no longer verifies: its id is forgotten.
	if n := c.Len(); n != 2 {
		t.Fatalf("got %d ids before the next use, want 2 (expiry is lazy)", n)
	}
	if err := c.Spend("req-3", clk.now().Add(time.Minute)); err != nil {
		t.Fatalf("after expiry: got %v, want nil", err)
	}
	if n := c.Len(); n != 1 {
		t.Fatalf("got %d ids, want 1: the expired ones forgotten", n)
	}
}

// TestReplayCacheFullRefusesRatherThanForgets shows that a flood of new ids
// cannot push a spent id out: a full cache refuses new ids until old ones
// expire.
func TestReplayCacheFullRefusesRatherThanForgets(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	c := assertion.NewReplayCache(3, clk.now)
	for i := range 3 {
		if err := c.Spend("old-"+strconv.Itoa(i), clk.now().Add(time.Duration(10+i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if err := c.Spend("flood-"+strconv.Itoa(i), clk.now().Add(time.Minute)); !errors.Is(err, assertion.ErrReplayCacheFull) {
			t.Fatalf("flood %d: got %v, want ErrReplayCacheFull", i, err)
		}
	}
	if err := c.Spend("old-0", clk.now().Add(10*time.Second)); !errors.Is(err, assertion.ErrReplayed) {
		t.Fatalf("a spent id after the flood: got %v, want ErrReplayed", err)
	}
	clk.advance(11 * time.Second) // old-0 and old-1 expire (after 10 s and 11 s: the latter not yet)
	if err := c.Spend("new", clk.now().Add(time.Minute)); err != nil {
		t.Fatalf("once one expired: got %v, want nil", err)
	}
	if err := c.Spend("newer", clk.now().Add(time.Minute)); !errors.Is(err, assertion.ErrReplayCacheFull) {
		t.Fatalf("got %v, want ErrReplayCacheFull: one id expired, one place freed", err)
	}
}

// TestReplayCacheOutOfOrderExpiry spends ids whose expiries are not in the
// order of their spending, as assertions from several extauthz replicas
// are, and forgets each at its own expiry.
func TestReplayCacheOutOfOrderExpiry(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	c := assertion.NewReplayCache(100, clk.now)
	start := clk.now()
	order := []int{5, 1, 9, 3, 7, 2, 8, 4, 6, 10}
	for _, s := range order {
		if err := c.Spend("id-"+strconv.Itoa(s), start.Add(time.Duration(s)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for sec := 1; sec <= 10; sec++ {
		clk.advance(time.Second)
		_ = c.Spend("tick-"+strconv.Itoa(sec), start.Add(time.Hour)) // triggers expiry
		// Expired: ids 1..sec-1 (until < now); id sec expires at now itself.
		if got, want := c.Len(), len(order)-(sec-1)+sec; got != want {
			t.Fatalf("at +%ds: got %d ids, want %d", sec, got, want)
		}
		if err := c.Spend("id-"+strconv.Itoa(sec), start.Add(time.Hour)); !errors.Is(err, assertion.ErrReplayed) {
			t.Fatalf("at +%ds: id-%d got %v, want still remembered until its expiry has passed", sec, sec, err)
		}
	}
}

// TestReplayCacheConcurrent spends one id from many goroutines: exactly one
// wins. Run with -race.
func TestReplayCacheConcurrent(t *testing.T) {
	c := assertion.NewReplayCache(10_000, nil)
	until := time.Now().Add(time.Minute)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if c.Spend("shared-"+strconv.Itoa(i), until) == nil {
					wins.Add(1)
				}
				if err := c.Spend(fmt.Sprintf("own-%d-%d", g, i), until); err != nil {
					t.Errorf("own id: got %v, want nil", err)
				}
			}
		}()
	}
	wg.Wait()
	if got := wins.Load(); got != 200 {
		t.Fatalf("got %d first uses of 200 shared ids, want 200", got)
	}
	if got := c.Len(); got != 200+16*200 {
		t.Fatalf("got %d ids, want %d", got, 200+16*200)
	}
}

func TestReplayCapacity(t *testing.T) {
	// An id is remembered until its assertion's expiry plus the leeway: at
	// most DefaultTTL + 2 × Leeway = 70 s after it is spent.
	if got := assertion.ReplayCapacity(10_000); got != 700_000 {
		t.Fatalf("got %d, want 700000", got)
	}
}

// TestVerifierSpend shows the verifier's own cache: a verified assertion
// is spent once.
func TestVerifierSpend(t *testing.T) {
	pub, priv := mustKey(t)
	v := assertion.NewVerifier(map[string]ed25519.PublicKey{assertion.KeyID(pub): pub}, nil)
	tok, err := mustSigner(t, priv, nil).Sign(alice, "req-9", gql)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{nil, assertion.ErrReplayed} {
		a, err := v.Verify(tok, assertion.AudienceGraphQL)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Spend(a); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Fatalf("use %d: got %v, want %v", i+1, err, want)
		}
	}
}

// TestVerifyRefusesClaimsExtauthzNeverSigns crafts payloads with the right
// key: a lifetime longer than the replay cache remembers, and assertions
// that bind nothing.
func TestVerifyRefusesClaimsExtauthzNeverSigns(t *testing.T) {
	pub, priv := mustKey(t)
	kid := assertion.KeyID(pub)
	now := time.Unix(1_800_000_000, 0)
	sign := func(claims map[string]any) string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"` + kid + `","typ":"JWT"}`))
		b, _ := json.Marshal(claims)
		in := h + "." + base64.RawURLEncoding.EncodeToString(b)
		return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(in)))
	}
	base := func() map[string]any {
		return map[string]any{"iss": assertion.Issuer, "sub": "alice", "tenant": alice.Tenant, "aud": []string{assertion.AudienceGraphQL},
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "r", "method": "POST", "path": "/graphql", "op_sha256": gql.Operation}
	}
	with := func(k string, v any) map[string]any {
		m := base()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	v := assertion.NewVerifier(map[string]ed25519.PublicKey{kid: pub}, func() time.Time { return now })
	if _, err := v.Verify(sign(base()), assertion.AudienceGraphQL); err != nil {
		t.Fatalf("the crafted base: got %v, want it valid (the cases below change one claim)", err)
	}
	tests := []struct {
		name   string
		claims map[string]any
	}{
		{name: "an hour's lifetime", claims: with("exp", now.Add(time.Hour).Unix())},
		{name: "no jti", claims: with("jti", nil)},
		{name: "no method", claims: with("method", nil)},
		{name: "no path", claims: with("path", nil)},
		{name: "both audiences", claims: with("aud", []string{assertion.AudienceGraphQL, assertion.AudienceFlight})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := v.Verify(sign(tt.claims), assertion.AudienceGraphQL); !errors.Is(err, assertion.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

// BenchmarkReplayCacheMemory fills a cache to the capacity
// ReplayCapacity(DefaultReplayRate) gives and reports its heap bytes per id.
func BenchmarkReplayCacheMemory(b *testing.B) {
	n := assertion.ReplayCapacity(assertion.DefaultReplayRate)
	until := time.Now().Add(time.Hour)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := assertion.NewReplayCache(n, nil)
		for i := range n {
			if err := c.Spend("0f8fad5b-d9cb-469f-a165-"+strconv.Itoa(100000000000+i), until); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/id")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
		runtime.KeepAlive(c)
	}
}

// BenchmarkReplayCacheSpend is the cost a request pays.
func BenchmarkReplayCacheSpend(b *testing.B) {
	c := assertion.NewReplayCache(assertion.ReplayCapacity(assertion.DefaultReplayRate), nil)
	until := time.Now().Add(time.Minute)
	var i atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = c.Spend(strconv.FormatInt(i.Add(1), 10), until)
		}
	})
}
