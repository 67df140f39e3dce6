#!/usr/bin/env bash
# Starts a private MariaDB on 127.0.30.2:13306 (its own data dir in the state dir, never the
# system one) unless it already runs, and makes the probe's user and database.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

M=$DIR/mariadb
mkdir -p "$M"
chown mysql: "$M"
render "$PEERS_ROOT/mariadb/my.cnf" "$M/my.cnf"

if [ ! -d "$M/data/mysql" ]; then
    mariadb-install-db --defaults-file="$M/my.cnf" --auth-root-authentication-method=socket \
        --skip-test-db >"$M/install.log" 2>&1 || die "mariadb-install-db" "$M/install.log"
fi
if ! alive "$M/mariadbd.pid" /usr/sbin/mariadbd; then
    launch "$M/start.log" /usr/sbin/mariadbd --defaults-file="$M/my.cnf"
fi
sql() { mariadb --defaults-file=/dev/null --socket="$M/mariadbd.sock" -uroot "$@"; }
ready() { sql -e 'SELECT 1' >/dev/null 2>&1; }
wait_for 30 ready || die "mariadbd on 127.0.30.2:13306" "$M/error.log" "$M/start.log"

# Clients on 127.x are seen as 127.0.0.1 (PEERS-NOTES.md).
sql >>"$M/start.log" 2>&1 <<'SQL' || die "creating the custodian_probe user" "$M/start.log"
CREATE USER IF NOT EXISTS 'custodian_probe'@'127.0.0.1' IDENTIFIED BY 'probe-pw';
ALTER USER 'custodian_probe'@'127.0.0.1' IDENTIFIED BY 'probe-pw';
CREATE DATABASE IF NOT EXISTS custodian_probe;
GRANT ALL ON custodian_probe.* TO 'custodian_probe'@'127.0.0.1';
SQL

cat <<ENV
CUSTODIAN_PEER_MYSQL=127.0.30.2:13306
ENV
