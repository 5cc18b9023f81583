#!/usr/bin/env bash
# archive-wal.sh ARCHIVE WALPATH WALNAME: PostgreSQL's archive_command.
#
#   archive_command = '/usr/local/lib/fraise/backup/archive-wal.sh /srv/fraise-archive %p %f'
#
# Copies one WAL segment (or timeline history, or backup history file) into
# ARCHIVE/wal, the directory that stands for object storage. The copy is
# written under a temporary name, flushed to disk and renamed, so the
# archive never holds half a segment: PostgreSQL deletes its own copy as
# soon as this exits 0. A file already archived with the same content is
# accepted (PostgreSQL retries a segment whose first archiving it did not
# see finish); one with different content is refused, never overwritten:
# two clusters writing to one archive must be noticed, not merged.
#
# With real object storage, replace the copy with the store's client
# (`aws s3 cp --only-show-errors`, `gsutil cp -n`, ...) or a WAL archiver
# (WAL-G, pgBackRest); keep the same contract: exit 0 only once the file
# is durably stored, never overwrite a different file.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: archive-wal.sh ARCHIVE WALPATH WALNAME" >&2; exit 2; }
archive=$1 src=$2 name=$3
dir="$archive/wal"
dest="$dir/$name"

if [ -e "$dest" ]; then
  if cmp -s "$src" "$dest"; then
    exit 0
  fi
  echo "archive-wal: $dest exists with different content; refusing to overwrite (two clusters archiving to one place?)" >&2
  exit 1
fi
mkdir -p "$dir"
tmp="$dir/.$name.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cp "$src" "$tmp"
sync "$tmp"
mv "$tmp" "$dest"
trap - EXIT
# The rename itself is durable once the directory is flushed.
sync "$dir"
