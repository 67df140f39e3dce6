#!/usr/bin/env bash
# Starts the test unbound on 127.0.10.3:5353 (zone custodian.test only) unless it already runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

D=$DIR/dns
mkdir -p "$D"
render "$PEERS_ROOT/dns/unbound.conf" "$D/unbound.conf"

if ! alive "$D/unbound.pid" /usr/sbin/unbound; then
    unbound-checkconf "$D/unbound.conf" >>"$D/unbound.log" 2>&1 || die "unbound config" "$D/unbound.log"
    launch "$D/unbound.log" /usr/sbin/unbound -d -c "$D/unbound.conf"
fi
dns_ready() {
    [ "$(dig +short +time=1 +tries=1 @127.0.10.3 -p 5353 www.custodian.test AAAA)" = 2001:db8::10 ] &&
        [ "$(dig +short +tcp +time=1 +tries=1 @127.0.10.3 -p 5353 custodian.test MX)" = "10 mail.custodian.test." ]
}
wait_for 15 dns_ready || die "unbound on 127.0.10.3:5353 does not answer for custodian.test" "$D/unbound.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_DNS=127.0.10.3:5353
ENV
