#!/usr/bin/env bash
# Starts the test VNC server (TigerVNC's Xtigervnc, display :47, no authentication) on
# 127.0.40.5:15900 unless it runs. Greeting probes close before authenticating, which TigerVNC
# blacklists after 5 times: the blacklist is turned off.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

V=$DIR/vnc
DISPLAY_NO=47
mkdir -p "$V"

if ! alive "$V/xvnc.pid" /usr/bin/Xtigervnc; then
    # A lock left by a killed server would make the new one refuse the display.
    lock=/tmp/.X$DISPLAY_NO-lock
    if [ -f "$lock" ] && ! kill -0 "$(tr -dc 0-9 <"$lock")" 2>/dev/null; then
        rm -f "$lock" "/tmp/.X11-unix/X$DISPLAY_NO"
    fi
    launch "$V/xvnc.log" "$PEERS_ROOT/isolate.sh" -- /usr/bin/Xtigervnc ":$DISPLAY_NO" \
        -rfbport 15900 -interface 127.0.40.5 -SecurityTypes None -nolisten tcp \
        -BlacklistThreshold=1000000 -BlacklistTimeout=0
    echo $! >"$V/xvnc.pid"
fi
vnc_ready() { [[ $(read_line 127.0.40.5 15900) == "RFB 003."* ]]; }
wait_for 20 vnc_ready || die "Xtigervnc on 127.0.40.5:15900 sends no RFB greeting" "$V/xvnc.log"

cat <<ENV
CUSTODIAN_PEER_VNC=127.0.40.5:15900
ENV
