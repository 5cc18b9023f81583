#!/usr/bin/env bash
# restore.sh --archive ARCHIVE --pgdata NEWDIR [--target-time TIME] [--backup STAMP]
#
# Prepares NEWDIR, a new data directory, to become a restored primary:
# copies the newest base backup that finished before the target, and sets
# it to replay the archived WAL (restore_command) up to TIME, then be
# promoted to a new timeline. Start PostgreSQL on NEWDIR afterwards
# (`pg_ctl -D NEWDIR -w start`, or your service manager): it accepts
# connections once its recovery has ended (hot_standby is off meanwhile).
#
# TIME is a timestamp PostgreSQL reads ("2026-01-07 03:00:00 UTC",
# "2026-01-07T03:00:00Z"); recovery stops before the first transaction that
# committed after it. Without --target-time, or when TIME is at or after
# the last commit in the archive (a destroyed primary: "restore to now"),
# the whole archive is replayed, which PostgreSQL's own target would refuse
# ("recovery ended before configured recovery target was reached").
#
# Run it as the OS user PostgreSQL runs as; PG_BINDIR names PostgreSQL's
# programs when they are not on PATH. It prints the backup, the target and
# the archive's last commit. docs/operations.md is the whole runbook.
set -euo pipefail

usage() { echo "usage: restore.sh --archive ARCHIVE --pgdata NEWDIR [--target-time TIME] [--backup STAMP]" >&2; exit 2; }
archive= pgdata= target= backup=
while [ $# -gt 0 ]; do
  case $1 in
    --archive) archive=${2:-}; shift 2 ;;
    --pgdata) pgdata=${2:-}; shift 2 ;;
    --target-time) target=${2:-}; shift 2 ;;
    --backup) backup=${2:-}; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$archive" ] && [ -n "$pgdata" ] || usage
here=$(cd "$(dirname "$0")" && pwd)

pgbin() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR/$1"; return; fi
  command -v "$1" 2>/dev/null && return
  local found
  found=$(compgen -G "/usr/lib/postgresql/*/bin/$1" | sort -V | tail -n 1 || true)
  [ -n "$found" ] || { echo "restore: $1 not found (set PG_BINDIR)" >&2; exit 1; }
  echo "$found"
}
epoch() { date -u -d "$1" +%s.%N; }
# before A B: is time A strictly before time B?
before() { awk -v a="$(epoch "$1")" -v b="$(epoch "$2")" 'BEGIN { exit !(a < b) }'; }

# last_commit prints the time of the last commit in the archive: recovery
# can stop at a time only if a later commit tells it the time has passed.
last_commit() {
  local f t
  while read -r f; do
    t=$(TZ=UTC "$(pgbin pg_waldump)" "$archive/wal/$f" 2>/dev/null |
      sed -n 's/.*desc: COMMIT \([0-9-]* [0-9:.]*\) UTC.*/\1/p' | tail -n 1 || true)
    if [ -n "$t" ]; then echo "$t UTC"; return; fi
  done < <(find "$archive/wal" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9A-F]{24}' -printf '%f\n' | sort -r | head -n 4)
}

# stop_time prints when backup STAMP ended: its backup history file in the
# archive says (a restore cannot stop before the backup is consistent).
stop_time() {
  local start hist
  start=$(sed -n 's/^START WAL LOCATION: .* (file \([0-9A-F]\{24\}\))$/\1/p' "$archive/base/$1/backup_label")
  hist=$(find "$archive/wal" -maxdepth 1 -name "$start.*.backup" | sort | tail -n 1)
  [ -n "$hist" ] || return 0
  sed -n 's/^STOP TIME: //p' "$hist"
}

[ -d "$archive/base" ] || { echo "restore: no $archive/base: no base backup to restore" >&2; exit 1; }
if [ -e "$pgdata" ] && [ -n "$(ls -A "$pgdata")" ]; then
  echo "restore: $pgdata is not empty" >&2
  exit 1
fi

end=$(last_commit)
if [ -n "$target" ]; then
  epoch "$target" >/dev/null || { echo "restore: cannot read --target-time $target" >&2; exit 1; }
  if [ -z "$end" ] || ! before "$target" "$end"; then
    echo "restore: the archive's last commit is at ${end:-<none>}, not after $target: replaying the whole archive"
    target=
  fi
fi

if [ -z "$backup" ]; then
  while read -r b; do
    stop=$(stop_time "$b")
    if [ -z "$target" ] || { [ -n "$stop" ] && before "$stop" "$target"; }; then backup=$b; break; fi
  done < <(find "$archive/base" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9]{8}T[0-9]{6}(\.[0-9]{3})?Z' -printf '%f\n' | sort -r)
  [ -n "$backup" ] || { echo "restore: no base backup ended before $target" >&2; exit 1; }
fi
[ -f "$archive/base/$backup/backup_label" ] || { echo "restore: $archive/base/$backup is no base backup" >&2; exit 1; }

mkdir -p "$pgdata"
chmod 700 "$pgdata"
cp -a "$archive/base/$backup/." "$pgdata/"
{
  echo "# restore.sh $(date -u +%FT%TZ): backup $backup, target ${target:-the end of the archive}"
  echo "restore_command = '$here/restore-wal.sh $archive %f %p'"
  echo "recovery_target_timeline = 'latest'"
  echo "recovery_target_action = 'promote'"
  echo "hot_standby = off"
  if [ -n "$target" ]; then
    echo "recovery_target_time = '$(date -u -d "$target" '+%Y-%m-%d %H:%M:%S.%6N+00')'"
  fi
} >>"$pgdata/postgresql.auto.conf"
touch "$pgdata/recovery.signal"

echo "restore: backup $backup into $pgdata"
echo "restore: target ${target:-the end of the archive} (last commit in the archive: ${end:-none})"
echo "restore: now start PostgreSQL on $pgdata; it replays the archive and is promoted to a new timeline"
