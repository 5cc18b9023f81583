// Package bench measures Fraise side by side with PostGraphile v4 on the
// same PostgreSQL, on the same machine: through the core directly, through
// the full ingress (Envoy, extauthz, the rate limiter, mTLS on every hop)
// and PostGraphile, a nested read and a mutation each; side by side with
// FraiseQL v2 and PostGraphile on FraiseQL's example database; the latency
// Envoy adds; and the core under overload. It holds only benchmarks (its
// _test.go files, run by `make bench`) and their fixtures (schema.sql,
// seed.sql, schema.graphql, and the peers' folders fraiseql, postgraphile,
// postgres18); the load they generate comes from test/loadgen, which other
// tests can use without importing the benchmarks.
package bench
