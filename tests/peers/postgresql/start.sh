#!/usr/bin/env bash
# Starts a private PostgreSQL on 127.0.30.1:15432 (its own cluster in the state dir, never the
# system one) unless it already runs, and makes the probe's login role and database.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

P=$DIR/postgresql
BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n1)
[ -x "$BIN/postgres" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
mkdir -p "$P"
chown postgres: "$P"
as_pg() { runuser -u postgres -- "$@"; }

if [ ! -f "$P/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$P/data" -U postgres --auth-local=trust --auth-host=reject \
        >"$P/initdb.log" 2>&1 || die "initdb" "$P/initdb.log"
fi
render "$PEERS_ROOT/postgresql/postgresql.conf" "$P/data/postgresql.conf"
cp "$PEERS_ROOT/postgresql/pg_hba.conf" "$P/data/pg_hba.conf"
chown postgres: "$P/data/postgresql.conf" "$P/data/pg_hba.conf"

if ! alive "$P/data/postmaster.pid" "$BIN/postgres"; then
    touch "$P/postgres.log" && chown postgres: "$P/postgres.log"
    launch "$P/postgres.log" runuser -u postgres -- "$BIN/postgres" -D "$P/data"
fi
ready() { as_pg psql -h "$P" -p 15432 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; }
wait_for 30 ready || die "postgres on 127.0.30.1:15432" "$P/postgres.log"

# The probe's role and database (scram-sha-256 from loopback, see pg_hba.conf).
as_pg psql -h "$P" -p 15432 -U postgres -d postgres -q -v ON_ERROR_STOP=1 >>"$P/postgres.log" 2>&1 <<'SQL' ||
SELECT 'CREATE ROLE custodian_probe LOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'custodian_probe') \gexec
ALTER ROLE custodian_probe PASSWORD 'probe-pw';
SELECT 'CREATE DATABASE custodian_probe OWNER custodian_probe'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'custodian_probe') \gexec
SQL
    die "creating the custodian_probe role" "$P/postgres.log"

cat <<ENV
CUSTODIAN_PEER_POSTGRESQL=127.0.30.1:15432
CUSTODIAN_PEER_DB_USER=custodian_probe
CUSTODIAN_PEER_DB_PASSWORD=probe-pw
ENV
