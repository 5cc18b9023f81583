package observers_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/observers/obstest"
)

// benchDuration bounds a load run: shorter in CI.
func benchDuration() time.Duration {
	if os.Getenv("CI") != "" {
		return 2 * time.Second
	}
	return 5 * time.Second
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i].Microseconds()) / 1000
}

// insertRows inserts n orders of tenant in one statement, ids from first.
func insertRows(tb testing.TB, p *pipeline, tenant string, first, n int) {
	tb.Helper()
	if err := tryInsertRows(p, tenant, first, n); err != nil {
		tb.Fatal(err)
	}
}

// warmUp returns once one event (row 0 of tenant) has gone through the whole
// pipeline, so the timed part starts with a running pipeline; it returns the
// deliveries so far, which the benchmark does not count.
func warmUp(tb testing.TB, p *pipeline, rc *obstest.Receiver, tenant string) int {
	tb.Helper()
	insertRows(tb, p, tenant, 0, 1)
	await.Until(tb, 30*time.Second, "the warm-up event delivered", func() bool { return rc.Delivered() >= 1 })
	return rc.Delivered()
}

func tryInsertRows(p *pipeline, tenant string, first, n int) error {
	return p.DB.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		_, err := q.QueryJSON(ctx, `with x as (insert into orders (id, tenant_id, total)
			select g, $1, g from generate_series($2::int, $3::int) g returning 1) select to_jsonb(count(*)) from x`,
			tenant, first, first+n-1)
		return err
	})
}

// BenchmarkObserverLatency: event-to-webhook latency (from the row's
// insertion to the webhook's arrival at a receiver) at a steady 1,000
// events/s, through PostgreSQL, Redis and HTTP on loopback.
func BenchmarkObserverLatency(b *testing.B) {
	p := mustPipeline(b)
	rc := obstest.StartReceiver(b)
	p.Rule(b, obstest.TenantA, map[string]any{"name": "all", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	p.start(b, "bench")
	warm := warmUp(b, p, rc, obstest.TenantA)
	d := benchDuration()
	const offered, tick = 1000, 10 * time.Millisecond
	b.ResetTimer()
	t := time.NewTicker(tick)
	start, sent := time.Now(), 0
	for time.Since(start) < d {
		<-t.C
		// Catch up on ticks a slow insert made us miss: the offered load
		// stays 1,000 events/s on average.
		if owed := int(time.Since(start).Seconds()*offered) - sent; owed > 0 {
			insertRows(b, p, obstest.TenantA, sent+1, owed)
			sent += owed
		}
	}
	t.Stop()
	rate := float64(sent) / time.Since(start).Seconds()
	await.Until(b, 30*time.Second, "every event delivered", func() bool { return rc.Delivered()-warm >= sent })
	b.StopTimer()
	lat := rc.Snapshot().Latency
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.95), "p95-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(rate, "events/s")
}

// BenchmarkObserverThroughput: the highest sustained rate. Events are
// inserted as fast as PostgreSQL takes them (statements of 500 rows, over
// four tenants) so the pipeline stays saturated; events/s is the delivery
// rate at the receiver over the saturated window (after a half-second
// warm-up), e2e-events/s the rate from the first insertion until the last
// event is delivered.
func BenchmarkObserverThroughput(b *testing.B) {
	p := mustPipeline(b)
	rc := obstest.StartReceiver(b)
	tenants := []string{obstest.TenantA, obstest.TenantB, "00000000-0000-0000-0000-0000000000cc", "00000000-0000-0000-0000-0000000000dd"}
	for _, tn := range tenants {
		p.Rule(b, tn, map[string]any{"name": "all", "table": "public.orders", "operations": []string{"INSERT"},
			"actions": []map[string]any{{"kind": "webhook", "url": rc.URL}}})
	}
	if w, t, ok := benchWorkers(); ok {
		p.opts.Workers, p.opts.PerTenant = w, t
	}
	o, _ := p.start(b, "bench")
	warm := warmUp(b, p, rc, obstest.TenantA)
	delivered := func() int { return rc.Delivered() - warm }
	d := benchDuration()
	const batch = 500
	b.ResetTimer()
	start := time.Now()
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; time.Since(start) < d; i++ {
			n := int(sent.Load())
			if err := tryInsertRows(p, tenants[i%len(tenants)], n+1, batch); err != nil {
				b.Error(err)
				return
			}
			sent.Add(batch)
			// Saturated, not an unbounded burst.
			if !await.Within(time.Minute, func() bool { return int(sent.Load())-delivered() <= 5_000 }) {
				b.Error("the backlog stayed over 5,000 events for a minute")
				return
			}
		}
	}()
	// The measured window opens after a half-second warm-up of saturation.
	select {
	case <-time.After(500 * time.Millisecond):
	case <-done:
	}
	c0, t0 := delivered(), time.Now()
	<-done
	c1, t1 := delivered(), time.Now()
	total := int(sent.Load())
	if c1 >= total {
		b.Logf("the pipeline kept up with the inserts: events/s is the insert rate")
	}
	last := time.Now()
	await.Until(b, 120*time.Second, fmt.Sprintf("%d events delivered", total), func() bool {
		if testing.Verbose() && time.Since(last) > 500*time.Millisecond {
			last = time.Now()
			b.Logf("enqueued %d, delivered %d of %d", o.Enqueued(), rc.Delivered(), total)
		}
		return delivered() >= total
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.Logf("inserting took %v (%d of %d delivered by then), draining %v", t1.Sub(start).Round(time.Millisecond),
		c1, total, elapsed-t1.Sub(start))
	b.ReportMetric(float64(c1-c0)/t1.Sub(t0).Seconds(), "events/s")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "e2e-events/s")
	counts := rc.Snapshot().Count
	dups := 0
	for _, n := range counts {
		dups += n - 1
	}
	st := o.Stats()
	b.Logf("%d events, %d duplicate deliveries, %d retried", total, dups, st.Retried.Load())
}

// benchWorkers reads FRAISE_BENCH_WORKERS=workers/per_tenant, to compare
// pool sizes; the configuration's defaults otherwise.
func benchWorkers() (int, int, bool) {
	var w, t int
	_, err := fmt.Sscanf(os.Getenv("FRAISE_BENCH_WORKERS"), "%d/%d", &w, &t)
	return w, t, err == nil
}
