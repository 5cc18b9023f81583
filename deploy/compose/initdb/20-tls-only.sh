#!/bin/sh
# PostgreSQL over TCP only with TLS (the server runs with ssl=on: see
# compose.yaml), each client presenting a certificate from the data CA
# (ssl_ca_file) and then its password; plaintext TCP is refused. The
# container's own socket (pg_isready, these scripts) stays as the image
# sets it. The postgres image runs this once, when it initialises an empty
# volume, and restarts the server afterwards, which reads this file.
set -eu
cat > "$PGDATA/pg_hba.conf" <<'HBA'
local   all all     trust
hostssl all all all scram-sha-256 clientcert=verify-ca
host    all all all reject
HBA
