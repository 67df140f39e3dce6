#!/usr/bin/env bash
# Starts the test unbound on 127.0.10.3:5353 (zone custodian.test only) unless it already runs;
# a running one rereads a changed config (SIGHUP).
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

D=$DIR/dns
mkdir -p "$D"
render "$PEERS_ROOT/dns/unbound.conf" "$D/unbound.conf.new"
unbound-checkconf "$D/unbound.conf.new" >>"$D/unbound.log" 2>&1 || die "unbound config" "$D/unbound.log"

if ! alive "$D/unbound.pid" /usr/sbin/unbound; then
    mv "$D/unbound.conf.new" "$D/unbound.conf"
    launch "$D/unbound.log" /usr/sbin/unbound -d -c "$D/unbound.conf"
elif ! cmp -s "$D/unbound.conf.new" "$D/unbound.conf"; then
    # The zone grew since this unbound started: SIGHUP rereads the config in place.
    mv "$D/unbound.conf.new" "$D/unbound.conf"
    kill -HUP "$(tr -dc 0-9 <"$D/unbound.pid")"
else
    rm -f "$D/unbound.conf.new"
fi
dns_ready() {
    [ "$(dig +short +time=1 +tries=1 @127.0.10.3 -p 5353 www.custodian.test AAAA)" = 2001:db8::10 ] &&
        [ "$(dig +short +tcp +time=1 +tries=1 @127.0.10.3 -p 5353 custodian.test MX)" = "10 mail.custodian.test." ] &&
        [ "$(dig +short +time=1 +tries=1 @127.0.10.3 -p 5353 2.0.0.127.bl.custodian.test A)" = 127.0.0.2 ] &&
        [ "$(dig +short +time=1 +tries=1 @127.0.10.3 -p 5353 mx-ok.custodian.test MX)" = "10 smtp.custodian.test." ]
}
wait_for 15 dns_ready || die "unbound on 127.0.10.3:5353 does not answer for custodian.test" "$D/unbound.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_DNS=127.0.10.3:5353
ENV
