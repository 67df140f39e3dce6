#!/usr/bin/env bash
# Starts a private slapd on 127.0.30.4 (ldap 10389, ldaps 10636) unless it already runs: the
# directory dc=custodian,dc=test with one entry, cn=probe, which is also the bind user. The
# ldaps certificate ($T/slapd.pem) is signed by the test CA (tls_ca in lib.sh).
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

S=$DIR/slapd
mkdir -p "$S/data"
tls_ca
if ! fresh "$T/slapd.pem" $((30 * 86400)); then tls_leaf slapd 365 "$PEERS_ROOT/slapd/leaf.ext"; fi
# A new CA or certificate only takes effect after a restart.
[ "$RENEWED" = 0 ] || stop_pid "$S/slapd.pid" /usr/sbin/slapd
render "$PEERS_ROOT/slapd/slapd.conf" "$S/slapd.conf"

if [ ! -f "$S/data/data.mdb" ]; then
    slapadd -f "$S/slapd.conf" -l "$PEERS_ROOT/slapd/base.ldif" >"$S/slapadd.log" 2>&1 ||
        die "slapadd" "$S/slapadd.log"
fi
if ! alive "$S/slapd.pid" /usr/sbin/slapd; then
    launch "$S/slapd.log" /usr/sbin/slapd -d 0 -f "$S/slapd.conf" \
        -h "ldap://127.0.30.4:10389/ ldaps://127.0.30.4:10636/"
fi
found() {
    LDAPTLS_CACERT=$T/ca.pem timeout 3 ldapsearch -x -LLL -H "$1" -b dc=custodian,dc=test \
        '(uid=probe)' dn 2>/dev/null | grep -q '^dn: cn=probe'
}
wait_for 15 found ldap://127.0.30.4:10389 || die "slapd on 127.0.30.4:10389" "$S/slapd.log"
wait_for 5 found ldaps://127.0.30.4:10636 || die "slapd ldaps on 127.0.30.4:10636" "$S/slapd.log"

cat <<ENV
CUSTODIAN_PEER_LDAP=127.0.30.4:10389
CUSTODIAN_PEER_LDAPS=127.0.30.4:10636
CUSTODIAN_PEER_LDAP_BASE=dc=custodian,dc=test
CUSTODIAN_PEER_LDAP_USER=cn=probe,dc=custodian,dc=test
CUSTODIAN_PEER_LDAP_PASSWORD=probe-pw
ENV
