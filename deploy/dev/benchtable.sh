#!/usr/bin/env bash
# Prints `go test -bench` output (and the custom metrics benchmarks report,
# such as p50/p99 latencies and requests/s) as one table, then the ingress's
# figures against its targets, side by side with the peers measured in the
# same run: Envoy's added latency (test/bench BenchmarkEnvoyOverhead) and the
# read's throughput through the full ingress beside PostGraphile v4 direct
# (BenchmarkVsPostGraphile/read).
set -euo pipefail
file=${1:?usage: benchtable.sh bench-output.txt}
awk '
/^pkg: / { pkg = $2; sub(/^github.com\/fraise-dev\/fraise\//, "", pkg) }
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  line = sprintf("%-28s %-46s %12s", pkg, name, $2)
  for (i = 3; i < NF; i += 2) {
    line = line sprintf("  %s %s", $i, $(i+1))
    m[pkg " " name " " $(i+1)] = $i
  }
  rows[++n] = line
}
function has(b, u) { return (("test/bench " b " " u) in m) }
function v(b, u) { return has(b, u) ? m["test/bench " b " " u] : "" }
function met(ok) { return ok ? "met" : "MISSED" }
END {
  printf "%-28s %-46s %12s  %s\n", "package", "benchmark", "iterations", "metrics"
  for (i = 1; i <= n; i++) print rows[i]

  oh = "BenchmarkEnvoyOverhead"; rd = "BenchmarkVsPostGraphile/read/"
  if (!has(oh, "added-p50-ms") && !has(rd "postgraphile", "req/s")) exit
  print ""
  print "Ingress (Envoy, extauthz, rate limiter) against its targets, beside the peers of the same run:"
  printf "%-58s %9s %9s %9s  %s\n", "", "p50 ms", "p99 ms", "req/s", "target"
  if (has(oh, "added-p50-ms")) {
    rate = sprintf("%g", v(oh, "rate-req/s"))
    printf "%-58s %9s %9s %9s\n", "read, direct to the core (mTLS), open loop at " rate " req/s", v(oh, "direct-p50-ms"), v(oh, "direct-p99-ms"), ""
    printf "%-58s %9s %9s %9s\n", "read, through Envoy, open loop at " rate " req/s", v(oh, "ingress-p50-ms"), v(oh, "ingress-p99-ms"), ""
    printf "%-58s %9s %9s %9s  %s\n", "Envoy'"'"'s added latency", v(oh, "added-p50-ms"), v(oh, "added-p99-ms"), "", \
      "added p50 < 1 ms: " met(v(oh, "added-p50-ms") + 0 < 1)
  }
  if (has(rd "postgraphile", "req/s")) {
    printf "%-58s %9s %9s %9s\n", "read, the core direct (fraise serve), 16 clients", v(rd "core", "p50-ms"), v(rd "core", "p99-ms"), v(rd "core", "req/s")
    printf "%-58s %9s %9s %9s\n", "read, through the full ingress, 16 clients", v(rd "ingress", "p50-ms"), v(rd "ingress", "p99-ms"), v(rd "ingress", "req/s")
    printf "%-58s %9s %9s %9s\n", "read, PostGraphile v4 direct, 16 clients", v(rd "postgraphile", "p50-ms"), v(rd "postgraphile", "p99-ms"), v(rd "postgraphile", "req/s")
    if (has(rd "postgraphile", "ingress/postgraphile")) {
      x = v(rd "postgraphile", "ingress/postgraphile")
      printf "%-58s %9s %9s %9s  %s\n", "read, ingress over PostGraphile (ingress/postgraphile)", "", "", sprintf("%.2fx", x), \
        "at least 2x: " met(x + 0 >= 2)
    }
  }
  if (has(oh, "rate-req/s") && v(rd "ingress", "req/s") + 0 > 0)
    printf "(the overhead'"'"'s rate is %.0f%% of the read'"'"'s closed-loop throughput through the ingress in this run)\n", \
      100 * v(oh, "rate-req/s") / v(rd "ingress", "req/s")
}' "$file"
