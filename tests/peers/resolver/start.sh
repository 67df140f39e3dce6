#!/usr/bin/env bash
# Starts the openresolver test unbounds unless they run: the authority of probe.custodian.test
# (127.0.70.4:5353), an open resolver stubbed to it (127.0.70.5:5353) and a refusing one
# (127.0.70.6:5353). Nothing is forwarded anywhere else.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

D=$DIR/resolver
mkdir -p "$D"
for name in auth open refuse; do
    render "$PEERS_ROOT/resolver/$name.conf" "$D/$name.conf"
    unbound-checkconf "$D/$name.conf" >>"$D/unbound.log" 2>&1 || die "unbound $name config" "$D/unbound.log"
    alive "$D/$name.pid" /usr/sbin/unbound || launch "$D/$name.log" /usr/sbin/unbound -d -c "$D/$name.conf"
done
ask() { dig +short +time=1 +tries=1 @"$1" -p 5353 "$2" A; }
resolver_ready() {
    [ "$(ask 127.0.70.4 x.probe.custodian.test)" = 127.0.70.99 ] &&
        [ "$(ask 127.0.70.5 ready.probe.custodian.test)" = 127.0.70.99 ] &&
        dig +time=1 +tries=1 @127.0.70.6 -p 5353 y.probe.custodian.test A | grep -q 'status: REFUSED'
}
wait_for 15 resolver_ready || die "the openresolver unbounds do not answer" "$D"/*.log

cat <<ENV
CUSTODIAN_PEER_RESOLVER_AUTH=127.0.70.4:5353
CUSTODIAN_PEER_RESOLVER_OPEN=127.0.70.5:5353
CUSTODIAN_PEER_RESOLVER_REFUSING=127.0.70.6:5353
ENV
