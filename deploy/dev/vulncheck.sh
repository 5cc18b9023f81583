#!/usr/bin/env bash
# Runs govulncheck (pinned) over the module and fails on a vulnerability the
# code can reach. Its database is built from the pinned golang.org/x/vulndb
# module's OSV files (deploy/dev/vulndb.py) into .tools/vulndb/, because
# the Go module proxy is reachable where vuln.go.dev may not be. Move
# VULNDB forward to take newer entries.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
GOVULNCHECK=golang.org/x/vuln/cmd/govulncheck@v1.1.4
VULNDB=v0.0.0-20261105234957-e22db6528018
go=${GO:-go}
db="$root/.tools/vulndb/$VULNDB"
if [ ! -f "$db/index/db.json" ]; then
  echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB"
  src=$($go mod download -json "golang.org/x/vulndb@$VULNDB" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src/data/osv" ] || { echo "vulncheck: no data/osv in golang.org/x/vulndb@$VULNDB" >&2; exit 1; }
  rm -rf "$db.tmp"
  python3 "$root/deploy/dev/vulndb.py" "$src/data/osv" "$db.tmp"
  mv "$db.tmp" "$db"
fi
echo "vulncheck: govulncheck over ./... (database golang.org/x/vulndb@$VULNDB)"
$go run "$GOVULNCHECK" -db "file://$db" ./...
