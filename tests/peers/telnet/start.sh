#!/usr/bin/env bash
# Starts the test telnetd (inetutils) on 127.0.40.4:10023 unless it runs: socat accepts and
# hands each connection to a fresh telnetd as its stdin/stdout, as inetd would.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

T=$DIR/telnet
mkdir -p "$T"

if ! alive "$T/socat.pid" /usr/bin/socat; then
    launch "$T/telnetd.log" "$PEERS_ROOT/isolate.sh" -- /usr/bin/socat \
        TCP-LISTEN:10023,bind=127.0.40.4,fork,reuseaddr EXEC:/usr/sbin/telnetd,nofork
    echo $! >"$T/socat.pid"
fi
# telnetd opens with IAC option negotiation (byte 255).
telnet_ready() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.40.4/10023; head -c 1 <&3' 2>/dev/null | od -An -tu1 | grep -q 255
}
wait_for 15 telnet_ready || die "telnetd on 127.0.40.4:10023 sends no option negotiation" "$T/telnetd.log"

cat <<ENV
CUSTODIAN_PEER_TELNET=127.0.40.4:10023
ENV
