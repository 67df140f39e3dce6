#!/usr/bin/env bash
# Starts custodian's own Redis for queue tests on 127.0.50.2:16380 unless it already runs (the
# machine's Redis is never used). No persistence: tests use their own key prefixes.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

S=$DIR/redis-queue
mkdir -p "$S"
if ! alive "$S/redis.pid" "$(readlink -f /usr/bin/redis-server)"; then
    launch "$S/redis.log" /usr/bin/redis-server --bind 127.0.50.2 --port 16380 --dir "$S" \
        --save '' --appendonly no --protected-mode no --daemonize no
    echo $! >"$S/redis.pid"
fi
redis_ready() {
    [[ $(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.50.2/16380 && printf "PING\r\n" >&3 && head -n1 <&3' 2>/dev/null | tr -d '\r') == +PONG ]]
}
wait_for 15 redis_ready || die "redis-server on 127.0.50.2:16380 does not answer" "$S/redis.log"

cat <<ENV
CUSTODIAN_PEER_REDIS_QUEUE=127.0.50.2:16380
ENV
