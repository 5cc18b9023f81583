#!/usr/bin/env bash
# Installs what `make run` and `make test` need and a fresh machine may lack:
# PostgreSQL's server programs, redis-server, and Node.js with npm (the
# GraphQL-over-HTTP audits run npm's graphql-http), from Debian's packages.
set -euo pipefail

have_pg() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

pkgs=()
have_pg || pkgs+=(postgresql)
command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
command -v go >/dev/null 2>&1 || { echo "deps: Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }

if ((${#pkgs[@]})); then
  echo "deps: installing ${pkgs[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
