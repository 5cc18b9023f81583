#!/usr/bin/env bash
# restore-wal.sh ARCHIVE WALNAME DESTPATH: PostgreSQL's restore_command.
#
#   restore_command = '/usr/local/lib/fraise/backup/restore-wal.sh /srv/fraise-archive %f %p'
#
# Copies one archived file back for recovery. A file that is not in the
# archive is no error of the script: PostgreSQL asks for the next segment
# until there is none, and for history files that may not exist; it reads
# a non-zero exit as "not there".
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: restore-wal.sh ARCHIVE WALNAME DESTPATH" >&2; exit 2; }
archive=$1 name=$2 dest=$3
src="$archive/wal/$name"
[ -f "$src" ] || exit 1
cp "$src" "$dest"
