#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzX in a _test.go file) for a short,
# fixed time: `make test` calls it with FUZZTIME=3s so fuzzing stays inside
# the suite's time budget; `make fuzz` runs longer (FUZZTIME=60s) and with
# --grow copies the new interesting inputs go test found from its cache
# into the target's testdata/fuzz/FuzzX/, for the developer to commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
fuzztime=${FUZZTIME:-3s}
grow=false
[ "${1:-}" = "--grow" ] && grow=true
go=${GO:-go}
cache=$($go env GOCACHE)/fuzz
mod=$($go list -m)
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

n=0
while IFS=: read -r file name; do
  dir=$(dirname "$file")
  pkg="$mod/${dir#./}"
  echo "fuzz: $name in ./${dir#./} for $fuzztime"
  # The fuzzer's own output says why it stopped (a failing input it wrote
  # to testdata, or a worker that hung or died, which writes none): it is
  # kept and shown on failure, not only a rerun of the seed corpus.
  out="$log_dir/$name.txt"
  tries=0
  until $go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./${dir#./}" >"$out" 2>&1; do
    tries=$((tries + 1))
    # Go 1.26's coordinator can report its own -fuzztime deadline as the
    # target's failure (go.dev/issue/75804, fixed in Go 1.27): the only
    # cause printed is "context deadline exceeded" and no input is written.
    # That run is repeated once; a failure with an input, or the same race
    # twice, fails the suite.
    if [ "$tries" -eq 1 ] && ! grep -q 'Failing input written to' "$out" &&
      [ "$(grep -v '^fuzz: elapsed' "$out" | grep -cE '^[[:space:]]+context deadline exceeded$')" -ge 1 ] &&
      ! grep -v '^fuzz: elapsed' "$out" | grep -qE '^[[:space:]]+(panic|.*\.go:[0-9]+:)'; then
      echo "fuzz: $name stopped on Go's fuzztime race (go.dev/issue/75804, no input written): running it again"
      continue
    fi
    where="no failing input was written"
    grep -q 'Failing input written to' "$out" && where="the failing input is in ${dir#./}/testdata/fuzz/$name"
    echo "fuzz: $name failed ($where); go test's output (without its progress lines) follows" >&2
    grep -v '^fuzz: elapsed' "$out" | tail -60 >&2
    exit 1
  done
  n=$((n + 1))
  if $grow && [ -d "$cache/$pkg/$name" ]; then
    mkdir -p "$dir/testdata/fuzz/$name"
    for f in "$cache/$pkg/$name"/*; do
      [ -f "$f" ] || continue
      cmp -s "$f" "$dir/testdata/fuzz/$name/$(basename "$f")" 2>/dev/null || cp "$f" "$dir/testdata/fuzz/$name/"
    done
  fi
done < <(grep -rHoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | grep -v '/node_modules/' | sed 's/:func /:/' | sort)
echo "fuzz: $n targets, $fuzztime each"
