#!/usr/bin/env bash
# silence.sh [UNTIL] -- CMD...: runs CMD, passes on what it prints, and when
# CMD exits or prints a line matching UNTIL (a bash regular expression;
# default: the banner of `fraise dev`, "Fraise is running"), stops it and
# reports the longest time between two lines, counting from the start:
# what a user waits through without a word. The first `make run` of a
# fresh clone is measured with: deploy/dev/silence.sh -- make run
set -uo pipefail
until_re="Fraise is running"
if [ "${1:-}" != "--" ]; then until_re=$1; shift; fi
[ "${1:-}" = "--" ] && shift
ms() { date +%s%3N; }
coproc RUN { exec setsid "$@" 2>&1; }
pid=$RUN_PID
# Bash unsets RUN when the command exits: read from a copy of its output.
exec {out}<&"${RUN[0]}"
start=$(ms)
last=$start
longest=0
before="(the start)"
reached=""
while IFS= read -r line <&"$out"; do
  now=$(ms)
  if (( now - last > longest )); then longest=$((now - last)); before=$line; fi
  last=$now
  printf '%s\n' "$line"
  if [[ "$line" =~ $until_re ]]; then
    reached=$now
    kill -TERM -- "-$pid" 2>/dev/null
    break
  fi
done
wait "$pid" 2>/dev/null
end=${reached:-$(ms)}
printf 'silence: %s after %d.%03d s; longest silence %d.%03d s, ending with: %s\n' \
  "$([ -n "$reached" ] && echo "reached \"$until_re\"" || echo "the command ended")" \
  $(((end - start) / 1000)) $(((end - start) % 1000)) $((longest / 1000)) $((longest % 1000)) "$before" >&2
