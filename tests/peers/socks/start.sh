#!/usr/bin/env bash
# Starts the opensocks test microsocks unless they run: open on 127.0.70.9:11080, and with
# username/password authentication on 127.0.70.10:11080 (SOCKS5 only, as microsocks is).
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

D=$DIR/socks
mkdir -p "$D"
# microsocks writes no pid file: we keep the one launch leaves in $!.
start() {
    local name=$1
    shift
    alive "$D/$name.pid" /usr/bin/microsocks && return 0
    launch "$D/$name.log" /usr/bin/microsocks "$@"
    echo $! >"$D/$name.pid"
}
start open -i 127.0.70.9 -p 11080
start auth -i 127.0.70.10 -p 11080 -u probe -P socks-secret
socks_ready() { tcp_ready 127.0.70.9 11080 && tcp_ready 127.0.70.10 11080; }
wait_for 15 socks_ready || die "microsocks on 127.0.70.9/10:11080 does not listen" "$D"/*.log

cat <<ENV
CUSTODIAN_PEER_SOCKS_OPEN=127.0.70.9:11080
CUSTODIAN_PEER_SOCKS_AUTH=127.0.70.10:11080
ENV
