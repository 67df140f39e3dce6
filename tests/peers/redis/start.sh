#!/usr/bin/env bash
# Starts two private Redis servers on 127.0.30.3 unless they already run: 16379 wants a
# password (requirepass), 16380 is open. Neither saves anything to disk.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

R=$DIR/redis
mkdir -p "$R"

# start NAME PORT [ARGS...]: one redis-server in the foreground with its own pid file.
start() {
    local name=$1 port=$2
    shift 2
    alive "$R/$name.pid" /usr/bin/redis-server && return 0
    launch "$R/$name.log" /usr/bin/redis-server --bind 127.0.30.3 --port "$port" --save "" \
        --appendonly no --dir "$R" --pidfile "$R/$name.pid" "$@"
}
start auth 16379 --requirepass probe-pw
start open 16380

pong() { printf 'PING\r\n' | timeout 2 bash -c "exec 3<>/dev/tcp/127.0.30.3/$1; cat >&3; head -n1 <&3" 2>/dev/null | grep -q "$2"; }
wait_for 15 pong 16380 PONG || die "redis on 127.0.30.3:16380" "$R/open.log"
wait_for 15 pong 16379 NOAUTH || die "redis with requirepass on 127.0.30.3:16379" "$R/auth.log"

cat <<ENV
CUSTODIAN_PEER_REDIS=127.0.30.3:16380
CUSTODIAN_PEER_REDIS_AUTH=127.0.30.3:16379
CUSTODIAN_PEER_REDIS_PASSWORD=probe-pw
ENV
