#!/usr/bin/env bash
# Starts the openproxy test tinyproxies unless they run: open on 127.0.70.7:8888, denying
# 127.0.0.1 (403) on 127.0.70.8:8888.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

D=$DIR/proxy
mkdir -p "$D"
chown tinyproxy "$D"
for name in open deny; do
    render "$PEERS_ROOT/proxy/$name.conf" "$D/$name.conf"
    alive "$D/$name.pid" /usr/bin/tinyproxy || launch "$D/$name.out" /usr/bin/tinyproxy -d -c "$D/$name.conf"
done
proxy_ready() { tcp_ready 127.0.70.7 8888 && tcp_ready 127.0.70.8 8888; }
wait_for 15 proxy_ready || die "tinyproxy on 127.0.70.7/8:8888 does not listen" "$D"/*.log "$D"/*.out

cat <<ENV
CUSTODIAN_PEER_PROXY_OPEN=127.0.70.7:8888
CUSTODIAN_PEER_PROXY_DENYING=127.0.70.8:8888
ENV
