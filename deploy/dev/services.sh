#!/usr/bin/env bash
# Starts or stops the PostgreSQL and Redis that `make run` uses: private
# instances under .dev/ on ports 55432 and 56379, so the machine's own
# servers (if any) are never touched and data survives between runs.
#   deploy/dev/services.sh start|stop|status
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dev="$root/.dev"
pgport=${FRAISE_DEV_PGPORT:-55432}
redisport=${FRAISE_DEV_REDISPORT:-56379}
pgdata="$dev/pg"

pgbin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local found
  found=$(compgen -G "/usr/lib/postgresql/*/bin/$1" | sort -V | tail -n 1 || true)
  [ -n "$found" ] || { echo "services: $1 not found (run make deps)" >&2; exit 1; }
  echo "$found"
}

# initdb refuses to run as root, so root runs PostgreSQL as "postgres".
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

redis_up() { redis-cli -h 127.0.0.1 -p "$redisport" ping >/dev/null 2>&1; }

start() {
  mkdir -p "$dev"
  # PostgreSQL runs as "postgres" when we are root: it must be able to
  # traverse .dev (whose keys and certs stay private in 0700 folders).
  [ "$(id -u)" = 0 ] && chmod 711 "$dev"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
    chmod 700 "$pgdata"
    as_pg "$(pgbin initdb)" -D "$pgdata" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
  fi
  if ! as_pg "$(pgbin pg_ctl)" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$(pgbin pg_ctl)" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
      -o "-p $pgport -c listen_addresses=127.0.0.1 -k $pgdata" start >/dev/null
  fi
  echo "services: PostgreSQL on 127.0.0.1:$pgport"
  if ! redis_up; then
    redis-server --port "$redisport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --dir "$dev" --logfile "$dev/redis.log" --pidfile "$dev/redis.pid"
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
    redis_up || { echo "services: redis-server did not start, see $dev/redis.log" >&2; exit 1; }
  fi
  echo "services: Redis on 127.0.0.1:$redisport"
}

stop() {
  if [ -f "$pgdata/PG_VERSION" ]; then
    as_pg "$(pgbin pg_ctl)" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  redis_up && redis-cli -h 127.0.0.1 -p "$redisport" shutdown nosave >/dev/null 2>&1 || true
  echo "services: stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) as_pg "$(pgbin pg_ctl)" -D "$pgdata" status || true; redis_up && echo "redis up" || echo "redis down" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
