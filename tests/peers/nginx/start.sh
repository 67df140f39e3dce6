#!/usr/bin/env bash
# Starts the test nginx on 127.0.10.2 (http 8080, https 8443 and 8444) unless it already runs.
# Makes the test CA and both server certificates first, renewing any that is close to expiry.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

N=$DIR/nginx
T=$DIR/tls
mkdir -p "$N/tmp" "$N/www" "$T"

# fresh FILE SECONDS: whether the certificate exists and is still valid SECONDS from now.
fresh() { [ -f "$1" ] && openssl x509 -in "$1" -noout -checkend "$2" >/dev/null; }

make_ca() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$T/ca.key" -subj "/CN=custodian test CA" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$T/ca.pem.new"
    mv "$T/ca.pem.new" "$T/ca.pem"
    rm -f "$T/valid.pem" "$T/expiring.pem"
}

# make_leaf NAME DAYS: a server certificate for 127.0.10.2/localhost signed by the test CA.
make_leaf() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$1.key" 2>/dev/null
    openssl req -new -key "$T/$1.key" -subj "/CN=localhost" -out "$T/$1.csr"
    openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
        -days "$2" -extfile "$PEERS_ROOT/nginx/leaf.ext" -out "$T/$1.pem.new" 2>/dev/null
    mv "$T/$1.pem.new" "$T/$1.pem"
    RENEWED=1
}

RENEWED=0
# `if` rather than `||` so that set -e still stops on an openssl failure inside.
if ! fresh "$T/ca.pem" $((400 * 86400)); then make_ca; fi
if ! fresh "$T/valid.pem" $((30 * 86400)); then make_leaf valid 365; fi
# Tests rely on "expires within 14 days" but "not within 2 days": keep it more than 2.5 days out.
if ! fresh "$T/expiring.pem" $((60 * 3600)); then make_leaf expiring 3; fi
chmod 644 "$T"/*.pem

render "$PEERS_ROOT/nginx/nginx.conf" "$N/nginx.conf"
render "$PEERS_ROOT/nginx/site.conf" "$N/site.conf"
cp "$PEERS_ROOT/nginx/index.html" "$N/www/index.html"
[ "$(stat -c %s "$N/www/big" 2>/dev/null)" = 2097152 ] || head -c 2097152 /dev/urandom >"$N/www/big"
chmod -R a+rX "$N/www"

if alive "$N/nginx.pid" /usr/sbin/nginx; then
    # A renewed certificate only takes effect after a reload.
    [ "$RENEWED" = 0 ] || kill -HUP "$(cat "$N/nginx.pid")"
else
    # shellcheck disable=SC2094 # nginx -t reads only its config
    /usr/sbin/nginx -t -q -e "$N/error.log" -c "$N/nginx.conf" 2>>"$N/error.log" \
        || die "nginx config" "$N/error.log"
    launch "$N/error.log" /usr/sbin/nginx -e "$N/error.log" -c "$N/nginx.conf" -g 'daemon off;'
fi

http_ready() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.10.2/8080 &&
        printf "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
        grep -q custodian-ok
}
wait_for 15 http_ready || die "nginx on 127.0.10.2:8080 does not serve its page" "$N/error.log"
wait_for 5 tcp_ready 127.0.10.2 8443 || die "nginx https on 127.0.10.2:8443" "$N/error.log"
wait_for 5 tcp_ready 127.0.10.2 8444 || die "nginx https on 127.0.10.2:8444" "$N/error.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_HTTP=127.0.10.2:8080
CUSTODIAN_PEER_HTTPS=127.0.10.2:8443
CUSTODIAN_PEER_HTTPS_EXPIRING=127.0.10.2:8444
CUSTODIAN_PEER_CA=$DIR/tls/ca.pem
ENV
