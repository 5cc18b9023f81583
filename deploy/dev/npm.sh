#!/usr/bin/env bash
# npm.sh DIR...: installs each DIR's npm packages exactly as its
# package-lock.json pins them (npm ci), only when the lock file changed
# since the last install: a stamp in DIR/node_modules keeps its SHA-256.
# The console's build (adapters/console/web) and its browser tests
# (test/console, playwright-core) use this; node_modules is git-ignored.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v npm >/dev/null 2>&1; then
  echo "npm: no npm here (deploy/dev/deps.sh installs Debian's); skipping $*" >&2
  exit 0
fi
for dir in "$@"; do
  d="$root/$dir"
  stamp="$d/node_modules/.fraise-lock.sha256"
  want=$(sha256sum "$d/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    continue
  fi
  "$root/deploy/dev/progress.sh" "npm: npm ci in $dir (the versions its package-lock.json pins)" \
    npm ci --prefix "$d" --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
done
