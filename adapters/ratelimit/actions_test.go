package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestActionLimiter runs the real service with a per-action limit and asks
// it through ActionLimiter, as observer workers do.
func TestActionLimiter(t *testing.T) {
	rd := harness.StartRedis(t)
	o := ratelimit.Options{Tiers: map[string]ratelimit.Tier{ratelimit.DefaultTier: {Tenant: ratelimit.Limit{Requests: 1000, Unit: "hour"}}},
		Actions: map[string]ratelimit.Limit{"email": {Requests: 2, Unit: "hour"}}}
	o.GRPCAddr, o.HTTPAddr, o.DebugAddr, o.RedisAddr = addr(t), addr(t), addr(t), rd.Addr
	s, err := ratelimit.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l, err := ratelimit.NewActionLimiter(o.GRPCAddr, "fraise", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if ok, _, err := l.Allow(ctx, "a", "email"); err != nil || !ok {
			t.Fatalf("email %d: got %v %v, want allowed", i+1, ok, err)
		}
	}
	ok, wait, err := l.Allow(ctx, "a", "email")
	if err != nil || ok || wait <= 0 || wait > time.Hour {
		t.Fatalf("third email: got allowed=%v wait=%v err=%v, want refused with a wait up to an hour", ok, wait, err)
	}
	if ok, _, _ := l.Allow(ctx, "b", "email"); !ok {
		t.Fatal("tenant b was limited by tenant a's emails")
	}
	if ok, _, _ := l.Allow(ctx, "a", "webhook"); !ok {
		t.Fatal("webhooks were limited by emails")
	}
}

func TestActionLimiterUnavailable(t *testing.T) {
	l, err := ratelimit.NewActionLimiter(addr(t), "fraise", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ok, _, err := l.Allow(context.Background(), "a", "email")
	if err == nil || !ok {
		t.Fatalf("got allowed=%v err=%v, want allowed (fail open) with the error", ok, err)
	}
}
