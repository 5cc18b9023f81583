package ratelimit_test

import (
	"context"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/credentials"

	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/test/harness"
)

// outcome is one ShouldRateLimit call of the load run.
type outcome struct {
	sent    time.Time
	latency time.Duration
	over    bool // the tenant over its limit (else the one under it)
	code    rlsv3.RateLimitResponse_Code
	err     bool
}

// BenchmarkShouldRateLimitBurst holds 10,000 ShouldRateLimit calls a second
// (60 s; 5 s when CI is set) against the real service and Redis, half for a
// tenant well under its limit and half for one over it, and reports
// refusals under the limit (want 0), how far each full second's accepted
// count above the limit strays from the limit (want within 1%), and the
// decision latency.
func BenchmarkShouldRateLimitBurst(b *testing.B) {
	const (
		rate       = 10000 // calls a second, both tenants
		underLimit = 20000 // a second: never reached by half the rate
		overLimit  = 2000  // a second: reached by half the rate in 0.4 s
	)
	duration := 60 * time.Second
	if os.Getenv("CI") != "" {
		duration = 5 * time.Second
	}
	rd := harness.StartRedis(b)
	o := ratelimit.Options{
		Tiers: map[string]ratelimit.Tier{
			"default":    {Tenant: ratelimit.Limit{Requests: underLimit, Unit: "second"}},
			"enterprise": {Tenant: ratelimit.Limit{Requests: overLimit, Unit: "second"}},
		},
		LocalCacheBytes: 1 << 20,
	}
	certs := mustCerts(b)
	svc := mustStart(b, rd.Addr, certs, o)
	// Envoy's connections: mutual TLS with the gateway's certificate.
	gw := credentials.NewTLS(clientTLS(b, certs.GatewayCert, certs.GatewayKey, certs.CACert))
	var clients []rlsv3.RateLimitServiceClient
	for i := 0; i < 4; i++ {
		clients = append(clients, rlsv3.NewRateLimitServiceClient(mustConn(b, svc.GRPCAddr(), gw)))
	}
	under := &rlsv3.RateLimitRequest{Domain: "fraise", HitsAddend: 1, Descriptors: []*commonrl.RateLimitDescriptor{desc("tier", "default", "tenant", "under")}}
	over := &rlsv3.RateLimitRequest{Domain: "fraise", HitsAddend: 1, Descriptors: []*commonrl.RateLimitDescriptor{desc("tier", "enterprise", "tenant", "over")}}

	for i := 0; i < b.N; i++ {
		total := int(duration.Seconds() * rate)
		results := make([]outcome, total)
		var next atomic.Int64
		interval := time.Second / rate
		start := time.Now().Add(50 * time.Millisecond)
		var wg sync.WaitGroup
		b.ResetTimer()
		for w := 0; w < 128; w++ {
			wg.Add(1)
			go func(c rlsv3.RateLimitServiceClient) {
				defer wg.Done()
				for {
					n := int(next.Add(1) - 1)
					if n >= total {
						return
					}
					// Open loop: each call has its slot in the schedule.
					if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
						time.Sleep(d)
					}
					req := under
					if n%2 == 1 {
						req = over
					}
					t0 := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					r, err := c.ShouldRateLimit(ctx, req)
					cancel()
					lat := time.Since(t0)
					results[n] = outcome{sent: t0, latency: lat, over: n%2 == 1, err: err != nil, code: r.GetOverallCode()}
				}
			}(clients[w%len(clients)])
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()

		var lat []time.Duration
		underRefused, errs := 0, 0
		// The over tenant's accepted calls by the second Redis counted them
		// in: certain when sent and answered in the same second, else
		// either of the two (a call in flight across a boundary).
		accepted, straddling := map[int64]int{}, map[int64]int{}
		refusedAt := map[int64]int{} // the over tenant's refusals by second
		for _, r := range results {
			if r.err {
				errs++
				continue
			}
			lat = append(lat, r.latency)
			switch {
			case !r.over && r.code != rlsv3.RateLimitResponse_OK:
				underRefused++
			case r.over && r.code != rlsv3.RateLimitResponse_OK:
				if s, e := r.sent.Unix(), r.sent.Add(r.latency).Unix(); s == e {
					refusedAt[s]++
				}
			case r.over && r.code == rlsv3.RateLimitResponse_OK:
				if s, e := r.sent.Unix(), r.sent.Add(r.latency).Unix(); s == e {
					accepted[s]++
				} else {
					for ; s <= e; s++ {
						straddling[s]++
					}
				}
			}
		}
		// Only whole seconds count (the first and last are partial), and
		// only those in which the tenant did pass its limit: when a busy
		// machine keeps the generator from offering the limit in a second,
		// that second says nothing about the limiter.
		first, last := start.Unix()+1, start.Add(elapsed).Unix()-1
		worst, windows := 0.0, 0
		for s := first; s <= last; s++ {
			if refusedAt[s] == 0 {
				continue
			}
			// The distance from the limit to the counts this second can have.
			lo, hi := accepted[s], accepted[s]+straddling[s]
			var dev float64
			switch {
			case overLimit < lo:
				dev = float64(lo - overLimit)
			case overLimit > hi:
				dev = float64(overLimit - hi)
			}
			worst = max(worst, math.Abs(dev)/overLimit*100)
			windows++
			b.Logf("second %d: accepted %d certain, %d in flight across its bounds, %d refused", s-first+1, lo, hi-lo, refusedAt[s])
		}
		slices.Sort(lat)
		pct := func(p float64) float64 {
			if len(lat) == 0 {
				return 0
			}
			return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
		}
		b.ReportMetric(float64(total)/elapsed.Seconds(), "req/s")
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(underRefused), "refused-under-limit")
		b.ReportMetric(worst, "max-dev-%")
		b.ReportMetric(float64(windows), "windows")
		b.ReportMetric(float64(errs), "errors")
		if underRefused > 0 {
			b.Errorf("got %d refusals below the limit, want 0", underRefused)
		}
		if windows == 0 || worst > 1 {
			b.Errorf("accepted above the limit: worst second %.2f%% off %d/s over %d seconds, want within 1%%", worst, overLimit, windows)
		}
	}
}
