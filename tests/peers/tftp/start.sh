#!/usr/bin/env bash
# Starts the test tftpd-hpa on 127.0.40.3:10069 (UDP, read-only, chrooted to its files) unless it
# runs. Files: hello.txt (one line), empty.txt (zero bytes).
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

T=$DIR/tftp
mkdir -p "$T/root"
printf 'custodian-tftp-ok\n' >"$T/root/hello.txt"
: >"$T/root/empty.txt"
chmod -R a+rX "$T"

if ! alive "$T/tftpd.pid" /usr/sbin/in.tftpd; then
    launch "$T/tftpd.log" "$PEERS_ROOT/isolate.sh" -- \
        /usr/sbin/in.tftpd -L -v -a 127.0.40.3:10069 -s -u tftp "$T/root"
    echo $! >"$T/tftpd.pid"
fi
# tftp-hpa exits 0 even on errors: compare what it fetched.
tftp_ready() {
    rm -f "$T/ready.txt"
    timeout 3 tftp 127.0.40.3 10069 -c get hello.txt "$T/ready.txt" >/dev/null 2>&1
    [ "$(cat "$T/ready.txt" 2>/dev/null)" = custodian-tftp-ok ]
}
wait_for 15 tftp_ready || die "tftpd on 127.0.40.3:10069 does not serve hello.txt" "$T/tftpd.log"

cat <<ENV
CUSTODIAN_PEER_TFTP=127.0.40.3:10069
ENV
