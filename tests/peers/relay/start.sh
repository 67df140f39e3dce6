#!/usr/bin/env bash
# Starts the openrelay test Postfix (127.0.70.1-3:2525, all mail discarded) unless it runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

P=$DIR/relay
mkdir -p "$P/etc" "$P/queue" "$P/data"
render "$PEERS_ROOT/relay/main.cf" "$P/etc/main.cf"
render "$PEERS_ROOT/relay/master.cf" "$P/etc/master.cf"
chown postfix "$P/data"

if ! alive "$P/queue/pid/master.pid" /usr/lib/postfix/sbin/master; then
    # `postfix check` prints its fatals only to a tty; start-fg alone would exit 1 silently.
    script -qec "postfix -c '$P/etc' check" /dev/null >>"$P/postfix.log" 2>&1 </dev/null ||
        die "postfix check" "$P/postfix.log"
    launch "$P/postfix.log" postfix -c "$P/etc" start-fg
fi
relay_ready() {
    local ip
    for ip in 127.0.70.1 127.0.70.2 127.0.70.3; do
        [[ $(read_line $ip 2525) == 220\ * ]] || return 1
    done
}
wait_for 20 relay_ready || die "relay postfix on 127.0.70.1-3:2525 gives no 220 greeting" "$P/postfix.log"

cat <<ENV
CUSTODIAN_PEER_RELAY_OPEN=127.0.70.1:2525
CUSTODIAN_PEER_RELAY_CLOSED=127.0.70.2:2525
CUSTODIAN_PEER_RELAY_NODATA=127.0.70.3:2525
ENV
