package ratelimit_test

import (
	"context"
	"net"
	"strconv"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/test/harness"
)

func addr(tb testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(tb)))
}

func mustService(tb testing.TB, redis string, o ratelimit.Options) rlsv3.RateLimitServiceClient {
	tb.Helper()
	o.GRPCAddr, o.HTTPAddr, o.DebugAddr, o.RedisAddr = addr(tb), addr(tb), addr(tb), redis
	s, err := ratelimit.Start(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	conn, err := grpc.NewClient(o.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

func ask(tb testing.TB, c rlsv3.RateLimitServiceClient, tenant string) *rlsv3.RateLimitResponse {
	tb.Helper()
	r, err := c.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
		Domain:      "fraise",
		Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "tier", Value: "default"}, {Key: "tenant", Value: tenant}}}},
		HitsAddend:  1,
	})
	if err != nil {
		tb.Fatalf("ShouldRateLimit: %v", err)
	}
	return r
}

func TestPerTenantLimit(t *testing.T) {
	rd := harness.StartRedis(t)
	c := mustService(t, rd.Addr, ratelimit.Options{PerTenant: ratelimit.Limit{Requests: 3, Unit: "hour"}})
	for i := 0; i < 3; i++ {
		if r := ask(t, c, "a"); r.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("request %d: got %v, want OK", i+1, r.OverallCode)
		}
	}
	r := ask(t, c, "a")
	if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("request 4: got %v, want OVER_LIMIT", r.OverallCode)
	}
	var retry string
	for _, h := range r.ResponseHeadersToAdd {
		if h.Key == ratelimit.HeaderReset {
			retry = h.Value
		}
	}
	if n, err := strconv.Atoi(retry); err != nil || n <= 0 || n > 3600 {
		t.Errorf("got Retry-After %q, want seconds until the hour resets", retry)
	}
	if r := ask(t, c, "b"); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("tenant b: got %v, want OK", r.OverallCode)
	}
}

func TestShadowModeCountsWithoutRefusing(t *testing.T) {
	rd := harness.StartRedis(t)
	c := mustService(t, rd.Addr, ratelimit.Options{PerTenant: ratelimit.Limit{Requests: 1, Unit: "hour"}, ShadowMode: true})
	for i := 0; i < 3; i++ {
		if r := ask(t, c, "a"); r.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("request %d: got %v, want OK in shadow mode", i+1, r.OverallCode)
		}
	}
}
