#!/usr/bin/env bash
# Makes the Python test environment at .tools/python: a private virtual
# environment holding the clients deploy/dev/requirements-python.txt pins
# (pyarrow, the ADBC drivers, ConnectorX, DuckDB, pandas, polars), each file's
# hash checked. It is made again only when the requirements file changes: a
# stamp inside it keeps the file's SHA-256.
#
# Tests find it through test/pyenv. Where no python3 with venv can be had
# (deploy/dev/deps.sh installs python3-venv on Debian), this says so and
# leaves the environment out; the tests that need it then skip saying why.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
req="$root/deploy/dev/requirements-python.txt"
env="$root/.tools/python"
stamp="$env/.requirements.sha256"

want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$env/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "python: no python3 with venv here; the tests that need Python clients will skip" >&2
  exit 0
fi
rm -rf "$env"
python3 -m venv "$env"
"$root/deploy/dev/progress.sh" "python: installing the test clients (deploy/dev/requirements-python.txt, hash-pinned) into .tools/python" \
  "$env/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$req"
"$env/bin/python" -c 'import pyarrow.flight, adbc_driver_flightsql.dbapi, adbc_driver_postgresql.dbapi, connectorx, duckdb, pandas, polars'
echo "$want" > "$stamp"
echo "python: $("$env/bin/python" --version) with the test clients at .tools/python"
