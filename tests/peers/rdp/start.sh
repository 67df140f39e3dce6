#!/usr/bin/env bash
# Starts the test xrdp on 127.0.40.8:13389 unless it runs: it answers RDP connection requests
# (TLS with the snakeoil certificate); no session manager runs, so nobody can log in.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

X=$DIR/rdp
mkdir -p "$X"
# Debian's xrdp.ini with our address, log file and no forking or syslog.
sed -e 's|^port=3389$|port=tcp://127.0.40.8:13389|' -e 's|^fork=true$|fork=false|' \
    -e "s|^LogFile=xrdp.log\$|LogFile=$X/xrdp.log|" -e 's|^EnableSyslog=true$|EnableSyslog=false|' \
    -e 's|^certificate=$|certificate=/etc/xrdp/cert.pem|' -e 's|^key_file=$|key_file=/etc/xrdp/key.pem|' \
    /etc/xrdp/xrdp.ini >"$X/xrdp.ini"
grep -q '^port=tcp://127.0.40.8:13389$' "$X/xrdp.ini" || die "cannot set the port in $X/xrdp.ini"

if ! alive "$X/xrdp.pid" /usr/sbin/xrdp; then
    launch "$X/xrdp.out" "$PEERS_ROOT/isolate.sh" -- /usr/sbin/xrdp --nodaemon --config "$X/xrdp.ini"
    echo $! >"$X/xrdp.pid"
fi
# An X.224 Connection Request (TPKT) must get a Connection Confirm (code 0xd0).
rdp_ready() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.40.8/13389
        printf "\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00" >&3
        head -c 6 <&3' 2>/dev/null | od -An -tx1 | grep -q 'd0'
}
wait_for 20 rdp_ready || die "xrdp on 127.0.40.8:13389 sends no connection confirm" "$X/xrdp.log" "$X/xrdp.out"

cat <<ENV
CUSTODIAN_PEER_RDP=127.0.40.8:13389
ENV
