#!/usr/bin/env bash
# Starts the private Redis servers on 127.0.30.3 unless they already run: 16379 wants a
# password (requirepass), 16380 is open, 16381 speaks only TLS (certificate from the test CA)
# and wants a password or the ACL user `ops`, and one more listens only on a unix socket.
# None saves anything to disk.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

R=$DIR/redis
mkdir -p "$R"
# /usr/bin/redis-server is a symlink (to redis-check-rdb on Debian): /proc/PID/exe names the target.
EXE=$(readlink -f /usr/bin/redis-server)

# `if` rather than `||` so that set -e still stops on an openssl failure inside.
tls_ca
if ! fresh "$T/redis.pem" $((30 * 86400)); then tls_leaf redis 365 "$PEERS_ROOT/redis/leaf.ext"; fi
# redis-server reads its key as the user it runs as (root here, but keep it private anyway).
chmod 600 "$T/redis.key"

# start NAME PORT [ARGS...]: one redis-server in the foreground with its own pid file.
start() {
    local name=$1 port=$2
    shift 2
    # A renewed certificate only takes effect after a restart.
    if [ "$name" = tls ] && [ "$RENEWED" = 1 ]; then stop_pid "$R/$name.pid" "$EXE"; fi
    alive "$R/$name.pid" "$EXE" && return 0
    launch "$R/$name.log" /usr/bin/redis-server --bind 127.0.30.3 --port "$port" --save "" \
        --appendonly no --dir "$R" --pidfile "$R/$name.pid" "$@"
    # redis-server writes no pid file in the foreground: setsid's pid is the server's.
    echo $! >"$R/$name.pid"
}
start auth 16379 --requirepass probe-pw
start open 16380
start tls 0 --tls-port 16381 --tls-cert-file "$T/redis.pem" --tls-key-file "$T/redis.key" \
    --tls-ca-cert-file "$T/ca.pem" --tls-auth-clients no --requirepass probe-pw \
    --user ops on '>ops-pw' '~*' '&*' '+@all'
start sock 0 --unixsocket "$R/redis.sock" --unixsocketperm 700

pong() { printf 'PING\r\n' | timeout 2 bash -c "exec 3<>/dev/tcp/127.0.30.3/$1; cat >&3; head -n1 <&3" 2>/dev/null | grep -q "$2"; }
tls_pong() {
    timeout 3 redis-cli --tls --cacert "$T/ca.pem" -h 127.0.30.3 -p 16381 --user ops --pass ops-pw \
        --no-auth-warning PING 2>/dev/null | grep -q PONG
}
sock_pong() { timeout 2 redis-cli -s "$R/redis.sock" PING 2>/dev/null | grep -q PONG; }
wait_for 15 pong 16380 PONG || die "redis on 127.0.30.3:16380" "$R/open.log"
wait_for 15 pong 16379 NOAUTH || die "redis with requirepass on 127.0.30.3:16379" "$R/auth.log"
wait_for 15 tls_pong || die "redis with TLS on 127.0.30.3:16381" "$R/tls.log"
wait_for 15 sock_pong || die "redis on $R/redis.sock" "$R/sock.log"

cat <<ENV
CUSTODIAN_PEER_REDIS=127.0.30.3:16380
CUSTODIAN_PEER_REDIS_AUTH=127.0.30.3:16379
CUSTODIAN_PEER_REDIS_PASSWORD=probe-pw
CUSTODIAN_PEER_REDIS_TLS=127.0.30.3:16381
CUSTODIAN_PEER_REDIS_ACL_USER=ops
CUSTODIAN_PEER_REDIS_ACL_PASSWORD=ops-pw
CUSTODIAN_PEER_REDIS_SOCKET=$R/redis.sock
ENV
