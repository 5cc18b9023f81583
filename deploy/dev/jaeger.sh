#!/usr/bin/env bash
# Starts or stops Jaeger for `make run TRACING=jaeger`: all in one process,
# traces in memory, OTLP/gRPC on 127.0.0.1:4317 and the UI on
# http://127.0.0.1:16686: Jaeger's embedded all-in-one configuration (its
# default ports, on loopback only).
#   deploy/dev/jaeger.sh start|stop|status
#
# Jaeger is pinned in deploy/dev/jaeger/go.mod, a module of its own: its
# go.mod has a replace directive, which `go run pkg@version` refuses, and
# its dependencies stay out of Fraise's go.mod. It is built with the go
# command from the module proxy (no Docker) into .dev/bin/jaeger; the first
# build compiles all of Jaeger (half an hour on a busy two-core machine),
# later ones come from the build cache in seconds.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dev="$root/.dev"
bin="$dev/bin/jaeger"
pidfile="$dev/jaeger.pid"
log="$dev/jaeger.log"
ui=http://127.0.0.1:16686

up() { curl -fsS -o /dev/null "$ui/" 2>/dev/null; }

start() {
  mkdir -p "$dev/bin"
  if up; then
    echo "jaeger: UI on $ui"
    return
  fi
  # Rebuilt when the pin moves; otherwise the build cache answers at once.
  (cd "$root/deploy/dev/jaeger" &&
    "$root/deploy/dev/progress.sh" "jaeger: go build (the first time: up to half an hour)" \
      go build -o "$bin" github.com/jaegertracing/jaeger/cmd/jaeger)
  JAEGER_LISTEN_HOST=127.0.0.1 nohup "$bin" >"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 300); do
    up && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "jaeger: exited, see $log" >&2; exit 1; }
    sleep 0.1
  done
  up || { echo "jaeger: UI not up after 30 s, see $log" >&2; exit 1; }
  echo "jaeger: UI on $ui, OTLP/gRPC on 127.0.0.1:4317"
}

stop() {
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    # It drains its pipelines first: a few seconds.
    for _ in $(seq 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$pidfile"
  fi
  echo "jaeger: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) up && echo "jaeger: UI on $ui" || echo "jaeger: not running" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
