#!/usr/bin/env bash
# Installs FraiseQL v2 (fraiseql-cli and fraiseql-server) from crates.io
# at a pinned version into .tools/fraiseql (git-ignored), for make bench to
# run it beside PostGraphile and Fraise. The first build compiles several
# hundred crates: long on a small machine, then cached. Its build directory
# is .tools/fraiseql-target (git-ignored, kept): an interrupted build
# resumes where it stopped instead of starting over in a fresh temporary
# directory, as cargo install does by default. Exits 0 with a
# clear message, installing nothing, where cargo is missing or cannot reach
# crates.io: the benchmark then skips FraiseQL and says so.
#   FRAISEQL_VERSION overrides the pin.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
version=${FRAISEQL_VERSION:-2.18.0}
dest="$root/.tools/fraiseql"
stamp="$dest/version"
target="$root/.tools/fraiseql-target"

if [ -x "$dest/bin/fraiseql-server" ] && [ -x "$dest/bin/fraiseql-cli" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "fraiseql: cargo not found; FraiseQL $version not installed (the benchmark skips it)" >&2
  exit 0
fi
if ! cargo info --quiet "fraiseql-server@$version" >/dev/null 2>&1; then
  echo "fraiseql: cargo cannot reach fraiseql-server $version on crates.io; FraiseQL not installed (the benchmark skips it)" >&2
  exit 0
fi
echo "fraiseql: cargo install fraiseql-cli@$version fraiseql-server@$version into $dest (the first build is long)"
mkdir -p "$dest"
# fraiseql-server's build script builds its Studio web UI with npm ci when
# it finds npm, and 2.18.0's lock file names a package the npm registry does
# not serve (luxen-ui 0.1.2), so that build fails; without npm on PATH the
# script skips the UI, as it documents, and the server builds (the
# benchmark does not use the UI). nopath is PATH without npm and node.
nopath="$root/.tools/fraiseql-path"
rm -rf "$nopath"
mkdir -p "$nopath"
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    b=$(basename "$f")
    case "$b" in npm | npx | node | nodejs | corepack) continue ;; esac
    [ -e "$nopath/$b" ] || ln -s "$f" "$nopath/$b"
  done
done
# --locked: the versions of the crates' own Cargo.lock, as published.
PATH="$nopath" cargo install --locked --root "$dest" --target-dir "$target" "fraiseql-cli@$version" "fraiseql-server@$version"
echo "$version" > "$stamp"
