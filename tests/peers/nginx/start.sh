#!/usr/bin/env bash
# Starts the test nginx on 127.0.10.2 (http 8080, https 8443 and 8444) unless it already runs.
# Makes the test CA (lib.sh) and both server certificates first, renewing any close to expiry.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

N=$DIR/nginx
mkdir -p "$N/tmp" "$N/www"

# `if` rather than `||` so that set -e still stops on an openssl failure inside.
tls_ca
if ! fresh "$T/valid.pem" $((30 * 86400)); then tls_leaf valid 365 "$PEERS_ROOT/nginx/leaf.ext"; fi
# Tests rely on "expires within 14 days" but "not within 2 days": keep it more than 2.5 days out.
if ! fresh "$T/expiring.pem" $((60 * 3600)); then
    tls_leaf expiring 3 "$PEERS_ROOT/nginx/leaf.ext"
fi

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
