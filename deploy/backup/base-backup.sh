#!/usr/bin/env bash
# base-backup.sh ARCHIVE [pg_basebackup connection options...]
#
#   base-backup.sh /srv/fraise-archive -h db.internal -U fraise_backup
#
# Takes a base backup of the running primary into ARCHIVE/base/<UTC stamp>
# (plain format, with a manifest), checks it with pg_verifybackup against
# the archived WAL, and only then gives it its final name: a directory
# under ARCHIVE/base named like 20260107T030000.000Z is a complete, verified
# backup. Then it keeps the FRAISE_BACKUP_KEEP newest backups (7) and
# removes the WAL that only older ones needed (pg_archivecleanup).
#
# The backup carries no WAL of its own (-X none): the server waits until
# every segment the backup needs is archived before pg_basebackup returns,
# and a restore reads them from ARCHIVE/wal. Run it as the OS user that
# owns the archive, with a role that has REPLICATION (and a pg_hba.conf
# `replication` line for it); PG_BINDIR names PostgreSQL's programs when
# they are not on PATH. Schedule it daily (deploy/backup/systemd).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: base-backup.sh ARCHIVE [pg_basebackup options...]" >&2; exit 2; }
archive=$1
shift

pgbin() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR/$1"; return; fi
  command -v "$1" 2>/dev/null && return
  local found
  found=$(compgen -G "/usr/lib/postgresql/*/bin/$1" | sort -V | tail -n 1 || true)
  [ -n "$found" ] || { echo "base-backup: $1 not found (set PG_BINDIR)" >&2; exit 1; }
  echo "$found"
}

stamp=$(date -u +%Y%m%dT%H%M%S.%3NZ)
base="$archive/base"
final="$base/$stamp"
partial="$base/.$stamp.partial"
mkdir -p "$base" "$archive/wal"
[ ! -e "$final" ] || { echo "base-backup: $final exists" >&2; exit 1; }

trap 'rm -rf "$partial"' EXIT
"$(pgbin pg_basebackup)" -D "$partial" -Fp -X none --checkpoint=fast --no-password \
  -l "fraise base backup $stamp" "$@"
"$(pgbin pg_verifybackup)" --quiet --wal-directory="$archive/wal" "$partial"
mv "$partial" "$final"
trap - EXIT
sync "$base"
echo "base-backup: $final"

# Retention: the newest FRAISE_BACKUP_KEEP backups, and the WAL from the
# oldest of them on (a point-in-time restore needs a backup that ended
# before its target, and every segment after it).
keep=${FRAISE_BACKUP_KEEP:-7}
mapfile -t all < <(find "$base" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9]{8}T[0-9]{6}(\.[0-9]{3})?Z' -printf '%f\n' | sort)
if [ "${#all[@]}" -gt "$keep" ]; then
  for old in "${all[@]:0:${#all[@]}-keep}"; do
    rm -rf "${base:?}/$old"
    echo "base-backup: removed $old (FRAISE_BACKUP_KEEP=$keep)"
  done
  all=("${all[@]: -keep}")
fi
first=$(sed -n 's/^START WAL LOCATION: .* (file \([0-9A-F]\{24\}\))$/\1/p' "$base/${all[0]}/backup_label")
if [ -n "$first" ]; then
  "$(pgbin pg_archivecleanup)" "$archive/wal" "$first"
fi
