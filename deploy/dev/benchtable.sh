#!/usr/bin/env bash
# Prints `go test -bench` output (and the custom metrics benchmarks report,
# such as p50/p99 latencies and requests/s) as one table.
set -euo pipefail
file=${1:?usage: benchtable.sh bench-output.txt}
awk '
/^pkg: / { pkg = $2; sub(/^github.com\/fraise-dev\/fraise\//, "", pkg) }
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  line = sprintf("%-28s %-46s %12s", pkg, name, $2)
  for (i = 3; i < NF; i += 2) line = line sprintf("  %s %s", $i, $(i+1))
  rows[++n] = line
}
END {
  printf "%-28s %-46s %12s  %s\n", "package", "benchmark", "iterations", "metrics"
  for (i = 1; i <= n; i++) print rows[i]
}' "$file"
