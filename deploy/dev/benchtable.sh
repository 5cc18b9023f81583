#!/usr/bin/env bash
# Prints `go test -bench` output (and the custom metrics benchmarks report,
# such as p50/p99 latencies and requests/s) as one table, then the ingress's
# figures against its targets, side by side with the peers measured in the
# same run: Envoy's added latency (test/bench BenchmarkEnvoyOverhead) and the
# read's throughput through the full ingress beside PostGraphile v4 direct
# (BenchmarkVsPostGraphile/read); Flight's export beside the tools an
# analyst would read PostgreSQL with instead (test/e2e BenchmarkExport),
# against its targets; then Fraise, FraiseQL v2 and PostGraphile v4 on
# FraiseQL's example database (BenchmarkVsFraiseQL), side by side.
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
function hx(b, u) { return (("test/e2e BenchmarkExport/" b " " u) in m) }
function xv(b, u) { return hx(b, u) ? m["test/e2e BenchmarkExport/" b " " u] : "" }
function cpu(b, u) { return hx(b, u) ? sprintf("%.2f", xv(b, u)) : "-" }
function exportRow(b, label) {
  if (!hx(b, "rows/s")) return
  printf "%-52s %10.0f %8.1f %8s %8s %8s\n", label, xv(b, "rows/s"), xv(b, "MB/s"), \
    cpu(b, "client-cpu-s/Mrow"), (xv(b, "fraise-cpu-s/Mrow") + 0 > 0 ? cpu(b, "fraise-cpu-s/Mrow") : "-"), cpu(b, "pg-cpu-s/Mrow")
}
function flight() {
  if (!hx("copy_binary_raw", "rows/s")) return
  print ""
  print "Flight export of one table (1,000,000 rows x 10 mixed columns; 100,000 with CI set) into Arrow, beside what analysts would use instead, best of 3 rounds:"
  printf "%-52s %10s %8s %8s %8s %8s\n", "", "rows/s", "MB/s", "client", "Fraise", "Postgres"
  printf "%-52s %10s %8s %26s\n", "", "", "", "(CPU s per million rows)"
  exportRow("pyarrow_doget_ingress", "pyarrow do_get through the ingress, one endpoint")
  exportRow("pyarrow_doget_ingress_parallel", "pyarrow do_get through the ingress, " (xv("pyarrow_doget_ingress_parallel", "endpoints") + 0) " endpoints")
  exportRow("adbc_postgresql_direct", "ADBC PostgreSQL driver (Python), direct")
  exportRow("connectorx_direct", "ConnectorX, direct")
  exportRow("copy_binary_raw", "raw COPY (FORMAT binary), pgx, discarded")
  if (!hx("targets", "doget/adbc-%")) return
  printf "%-52s %10s  %s\n", "one endpoint / ADBC PostgreSQL direct (rate)", sprintf("%.1f%%", xv("targets", "doget/adbc-%")), \
    "at least 90%: " met(xv("targets", "doget/adbc-%") + 0 >= 90)
  printf "%-52s %10s  %s\n", "one endpoint / raw COPY (rate)", sprintf("%.1f%%", xv("targets", "doget/copy-%")), \
    "at least 80%: " met(xv("targets", "doget/copy-%") + 0 >= 80)
  printf "%-52s %10s  %s\n", "Fraise CPU / ADBC PostgreSQL client CPU (per row)", sprintf("%.2fx", xv("targets", "fraise-cpu/adbc-cpu-x")), \
    "at most 1.5x: " met(xv("targets", "fraise-cpu/adbc-cpu-x") + 0 <= 1.5)
}
END {
  printf "%-28s %-46s %12s  %s\n", "package", "benchmark", "iterations", "metrics"
  for (i = 1; i <= n; i++) print rows[i]
  flight()

  oh = "BenchmarkEnvoyOverhead"; rd = "BenchmarkVsPostGraphile/read/"
  if (has(oh, "added-p50-ms") || has(rd "postgraphile", "req/s")) ingress(oh, rd)
}
# ingress prints the figures of the ingress against its targets.
function ingress(oh, rd,    rate, x) {
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
}
END {
  fq = "BenchmarkVsFraiseQL/"
  if (has(fq "read/fraise", "req/s") || has(fq "create-post/fraise", "req/s")) sideBySide(fq)
}
# sideBySide prints BenchmarkVsFraiseQL'"'"'s servers side by side.
function sideBySide(fq,    ops, servers, names, i, j, b, target, want, x, r) {
  print ""
  print "FraiseQL'"'"'s example database served by each, side by side (BenchmarkVsFraiseQL, 16 clients):"
  printf "%-12s %-16s %9s %9s %9s  %s\n", "operation", "server", "req/s", "p50 ms", "p99 ms", "target"
  split("read create-post", ops, " ")
  split("fraise fraiseql postgraphile", servers, " ")
  names["fraise"] = "Fraise"; names["fraiseql"] = "FraiseQL v2"; names["postgraphile"] = "PostGraphile v4"
  for (i = 1; i <= 2; i++) {
    for (j = 1; j <= 3; j++) {
      b = fq ops[i] "/" servers[j]
      if (!has(b, "req/s")) { printf "%-12s %-16s %9s\n", ops[i], names[servers[j]], "(not run: see the log)"; continue }
      target = ""
      if (servers[j] == "fraiseql" && has(b, "fraise-x")) {
        want = (ops[i] == "read") ? 1.5 : 2
        x = v(b, "fraise-x"); r = v(b, "fraise-p99-ratio")
        target = sprintf("Fraise %.2fx its req/s (at least %gx), p99 %.2f of its (at most 1): %s", x, want, r, met(x + 0 >= want && r + 0 <= 1))
      }
      printf "%-12s %-16s %9.0f %9s %9s  %s\n", ops[i], names[servers[j]], v(b, "req/s"), v(b, "p50-ms"), v(b, "p99-ms"), target
    }
  }
}' "$file"
