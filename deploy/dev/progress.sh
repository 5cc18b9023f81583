#!/usr/bin/env bash
# progress.sh WHAT CMD...: runs CMD, saying WHAT first and then, every 10
# seconds while CMD is still running, how long it has taken: long steps
# that print nothing (the first build, module downloads) show they are alive.
set -uo pipefail
what=$1
shift
echo "$what"
"$@" &
pid=$!
start=$SECONDS
trap 'kill "$pid" 2>/dev/null' INT TERM
while kill -0 "$pid" 2>/dev/null; do
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 "$pid" 2>/dev/null || break 2
    sleep 1
  done
  echo "  ... $what ($((SECONDS - start)) s so far)"
done
wait "$pid"
status=$?
[ "$status" = 0 ] && [ $((SECONDS - start)) -ge 10 ] && echo "  done in $((SECONDS - start)) s"
exit "$status"
