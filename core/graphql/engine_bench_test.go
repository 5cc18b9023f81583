package graphql_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// nestedRead is the benchmark's read: 50 posts with their author,
// filtered and ordered on nested JSON paths.
const nestedRead = `query($min: Int) { posts(where: {stats: {readingMinutes: {gte: $min}}}, orderBy: [{publishedAt: DESC}], limit: 50) {
	id title publishedAt author { id name } } }`

// BenchmarkEngine measures the engine through core.TenantDB on the
// harness's PostgreSQL (no HTTP), reporting throughput and latency.
func BenchmarkEngine(b *testing.B) {
	d := mustDemoDB(b)
	// 2000 posts per tenant, so the filter and the sort have work to do.
	d.admin(b, `insert into public.posts (tenant_id, author_id, title, body, published_at, tags, reading_minutes)
		select u.tenant_id, u.id, 'Post ' || g, 'Some words for post ' || g, now() - g * interval '1 minute', '{bench}', g % 30
		from public.users u, generate_series(1, 1000) g`)
	d.admin(b, `analyze public.posts`)
	e := mustEngine(b, d, graphql.Options{})
	ctx := core.WithPrincipal(context.Background(), core.Principal{Subject: "bench", Tenant: demo.TenantAcme})
	run := func(b *testing.B, req func(i int) graphql.Request) {
		var mu sync.Mutex
		lat := make([]time.Duration, 0, b.N)
		var n int64
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			local := make([]time.Duration, 0, 256)
			i := 0
			for pb.Next() {
				t0 := time.Now()
				r := e.Execute(ctx, req(i))
				local = append(local, time.Since(t0))
				if len(r.Errors) > 0 {
					b.Error(r.Errors[0].Message)
					return
				}
				i++
			}
			mu.Lock()
			lat = append(lat, local...)
			n += int64(len(local))
			mu.Unlock()
		})
		elapsed := time.Since(start)
		b.StopTimer()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
		}
	}
	b.Run("nested-read", func(b *testing.B) {
		run(b, func(int) graphql.Request {
			return graphql.Request{Query: nestedRead, Variables: map[string]any{"min": 5}}
		})
	})
	b.Run("create-post", func(b *testing.B) {
		run(b, func(i int) graphql.Request {
			return graphql.Request{Query: createPost, Variables: map[string]any{"in": map[string]any{
				"title": fmt.Sprintf("bench %d", i), "authorId": "a0000000-0000-4000-8000-00000000000a",
			}}}
		})
	})
}

// BenchmarkEngineOverhead measures the engine alone (plan lookup,
// variable coercion, limits, compilation) against a database that answers
// instantly: the core's share of each request's latency.
func BenchmarkEngineOverhead(b *testing.B) {
	e, db := mustRecordingEngine(b, graphql.Options{})
	ctx := as(demo.TenantAcme)
	req := graphql.Request{Query: nestedRead, Variables: map[string]any{"min": 5}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Execute(ctx, req)
		db.take()
	}
}

// BenchmarkRefusal measures the core's time to refuse each attack document
// of security #13 (defects 2 and 8), through the engine with a database
// that is never reached: it must stay in single milliseconds, well under
// the 50 ms the whole-stack attack suite allows.
func BenchmarkRefusal(b *testing.B) {
	e, db := mustRecordingEngine(b, graphql.Options{})
	ctx := as(demo.TenantAcme)
	for _, bb := range []struct {
		name, query, code string
	}{
		{"fragment-bomb-30", fragmentBomb(30), graphql.CodeSelectionLimit},
		{"alias-20000", "{ users {" + strings.Repeat(" a:id", 20000) + " } }", graphql.CodeAliasLimit},
		{"field-20000", "{ users {" + strings.Repeat(" id", 20000) + " } }", graphql.CodeSelectionLimit},
	} {
		b.Run(bb.name, func(b *testing.B) {
			req := graphql.Request{Query: bb.query}
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.query)))
			for b.Loop() {
				if r := e.Execute(ctx, req); len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != bb.code {
					b.Fatalf("got %+v, want %s", r.Errors, bb.code)
				}
			}
			if n := len(db.take()); n != 0 {
				b.Fatalf("got %d statements, want none", n)
			}
		})
	}
}
