#!/bin/sh
# Creates the role the core and extauthz connect as, with the password
# from the app_db_password secret: `fraise migrate` creates the role
# without one and then only hardens it (NOBYPASSRLS), keeping this password.
# The postgres image runs this once, when it initialises an empty volume.
set -eu
password=$(cat /run/secrets/app_db_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v password="$password" <<'SQL'
CREATE ROLE fraise_app LOGIN PASSWORD :'password';
SQL
