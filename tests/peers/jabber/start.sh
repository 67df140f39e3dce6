#!/usr/bin/env bash
# Starts the test Prosody (XMPP client port 127.0.40.2:15222, host custodian.test) unless it runs.
# Never `prosody --version` as root: that starts the system instance on [::]:5222.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

J=$DIR/jabber
mkdir -p "$J/data" "$J/certs"
render "$PEERS_ROOT/jabber/prosody.cfg.lua" "$J/prosody.cfg.lua"
chown -R prosody:prosody "$J"

if ! alive "$J/prosody.pid" /usr/bin/lua5.4; then
    rm -f "$J/prosody.pid"
    launch "$J/prosody.log" "$PEERS_ROOT/isolate.sh" -- \
        runuser -u prosody -- /usr/bin/prosody --config "$J/prosody.cfg.lua" -F
fi
# Prosody closes a half-closed stream without answering: keep our side open while reading.
xmpp_ready() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.40.2/15222
        printf "%s" "<?xml version='"'1.0'"'?><stream:stream to='"'custodian.test'"' xmlns='"'jabber:client'"' xmlns:stream='"'http://etherx.jabber.org/streams'"' version='"'1.0'"'>" >&3
        head -c 200 <&3' 2>/dev/null | grep -q "from='custodian.test'"
}
wait_for 20 xmpp_ready || die "prosody on 127.0.40.2:15222 opens no XMPP stream" "$J/prosody.log"

cat <<ENV
CUSTODIAN_PEER_JABBER=127.0.40.2:15222
ENV
