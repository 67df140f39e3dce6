#!/usr/bin/env bash
# Starts the test Postfix on 127.0.10.4:2525 (accepts, then discards, all mail) unless it runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

P=$DIR/smtp
mkdir -p "$P/etc" "$P/queue" "$P/data"
render "$PEERS_ROOT/smtp/main.cf" "$P/etc/main.cf"
render "$PEERS_ROOT/smtp/master.cf" "$P/etc/master.cf"
chown postfix "$P/data"

if ! alive "$P/queue/pid/master.pid" /usr/lib/postfix/sbin/master; then
    # `postfix check` prints its fatals only to a tty; start-fg alone would exit 1 silently.
    script -qec "postfix -c '$P/etc' check" /dev/null >>"$P/postfix.log" 2>&1 </dev/null ||
        die "postfix check" "$P/postfix.log"
    launch "$P/postfix.log" postfix -c "$P/etc" start-fg
fi
smtp_ready() { [[ $(read_line 127.0.10.4 2525) == 220\ * ]]; }
wait_for 20 smtp_ready || die "postfix on 127.0.10.4:2525 gives no 220 greeting" "$P/postfix.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_SMTP=127.0.10.4:2525
ENV
