#!/usr/bin/env bash
# Checks deploy/observability with Prometheus' own promtool (pinned, built
# with `go install` from the module proxy, no download of a release): the scrape configuration and
# the recording and alerting rules parse (`check config`, `check rules`),
# every alert's unit tests pass (`test rules` on alerts_test.yml), and the
# lint of the rules and the dashboard passes (lint_test.go).
# The first run compiles promtool: a minute or two on two cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/deploy/observability"
PROMTOOL=github.com/prometheus/prometheus/cmd/promtool@v0.316.0
go=${GO:-go}
progress="$root/deploy/dev/progress.sh"
# Installed once per version into .tools/ (go install of the pinned
# module; from this directory, whose go.mod names no toolchain, so the
# machine's Go builds it and its build cache serves the next time).
bin="$root/.tools/promtool/${PROMTOOL##*@}"
if [ ! -x "$bin/promtool" ]; then
  GOBIN="$bin" "$progress" "observability: build promtool ($PROMTOOL)" $go install "$PROMTOOL"
fi
promtool="$bin/promtool"
"$progress" "observability: promtool check config prometheus.yml" "$promtool" check config prometheus.yml
"$progress" "observability: promtool check rules rules.yml alerts.yml" "$promtool" check rules rules.yml alerts.yml
"$progress" "observability: promtool test rules alerts_test.yml" "$promtool" test rules alerts_test.yml
# The rules' and the dashboard's PromQL parse and name only documented
# metrics (a module of its own: Prometheus' parser stays out of go.mod).
"$progress" "observability: go test (the rules and the Grafana dashboard name documented metrics)" $go test -count=1 ./...
