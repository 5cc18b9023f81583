#!/usr/bin/env bash
# Fails when a test left an Envoy running: tests start Envoy on a bootstrap
# in their temporary directory, and each must stop it (envoy/process also
# has the kernel kill it when the test binary dies). `make run`'s Envoy,
# whose bootstrap is under .dev/, is not a leftover.
set -euo pipefail
tmp=${TMPDIR:-/tmp}
left=$(pgrep -af 'envoy' | grep -E -- "-c ${tmp%/}/[^ ]*envoy\.yaml" || true)
if [ -n "$left" ]; then
  echo "leftovers: tests left Envoy running:" >&2
  echo "$left" >&2
  exit 1
fi
echo "leftovers: no Envoy left running by the tests"
