#!/usr/bin/env bash
# Starts the test fingerd on 127.0.40.6:10079 unless it runs: socat accepts and hands each
# connection to a fresh in.fingerd as its stdin/stdout, as inetd would.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

F=$DIR/finger
mkdir -p "$F"

if ! alive "$F/socat.pid" /usr/bin/socat; then
    launch "$F/fingerd.log" "$PEERS_ROOT/isolate.sh" -- /usr/bin/socat \
        TCP-LISTEN:10079,bind=127.0.40.6,fork,reuseaddr EXEC:/usr/sbin/in.fingerd,nofork,su=nobody
    echo $! >"$F/socat.pid"
fi
finger_ready() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.40.6/10079; printf "root\r\n" >&3; cat <&3' 2>/dev/null |
        grep -q 'Login: root'
}
wait_for 15 finger_ready || die "fingerd on 127.0.40.6:10079 does not answer for root" "$F/fingerd.log"

cat <<ENV
CUSTODIAN_PEER_FINGER=127.0.40.6:10079
ENV
