#!/usr/bin/env bash
# Starts the test OpenSSH server on 127.0.10.1:2222 unless it already runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

S=$DIR/ssh
mkdir -p "$S" /run/sshd
for t in ed25519 rsa; do
    [ -f "$S/ssh_host_${t}_key" ] || ssh-keygen -q -t "$t" -N '' -f "$S/ssh_host_${t}_key"
done
render "$PEERS_ROOT/ssh/sshd_config" "$S/sshd_config"

if ! alive "$S/sshd.pid" /usr/sbin/sshd; then
    /usr/sbin/sshd -t -f "$S/sshd_config" 2>>"$S/sshd.log" || die "sshd config" "$S/sshd.log"
    launch "$S/sshd.log" /usr/sbin/sshd -D -f "$S/sshd_config" -E "$S/sshd.log"
fi
ssh_ready() { [[ $(read_line 127.0.10.1 2222) == SSH-2.0-* ]]; }
wait_for 15 ssh_ready || die "sshd on 127.0.10.1:2222 gives no SSH banner" "$S/sshd.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_SSH=127.0.10.1:2222
ENV
