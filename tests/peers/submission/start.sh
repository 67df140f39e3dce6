#!/usr/bin/env bash
# Starts the submission test Postfix on 127.0.20.2 (submission 10587 with STARTTLS and AUTH,
# smtps 10465) unless it runs. AUTH goes through the Dovecot peer, started first; the
# certificate is Dovecot's (its SANs include 127.0.20.2).
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

"$PEERS_ROOT/dovecot/start.sh" >/dev/null

P=$DIR/submission
mkdir -p "$P/etc" "$P/queue" "$P/data"
render "$PEERS_ROOT/submission/main.cf" "$P/etc/main.cf"
render "$PEERS_ROOT/submission/master.cf" "$P/etc/master.cf"
chown postfix "$P/data"

pidfile=$P/queue/pid/master.pid
if alive "$pidfile" /usr/lib/postfix/sbin/master; then
    # Dovecot's start.sh may have renewed the shared certificate; Postfix reads it per process,
    # but its tlsmgr caches sessions: a reload is cheap and always safe.
    postfix -c "$P/etc" reload >>"$P/postfix.log" 2>&1 || true
else
    # `postfix check` prints its fatals only to a tty; start-fg alone would exit 1 silently.
    script -qec "postfix -c '$P/etc' check" /dev/null >>"$P/postfix.log" 2>&1 </dev/null ||
        die "postfix check" "$P/postfix.log"
    launch "$P/postfix.log" postfix -c "$P/etc" start-fg
fi
ready() { [[ $(read_line 127.0.20.2 10587) == 220\ * ]]; }
wait_for 20 ready || die "postfix on 127.0.20.2:10587 gives no 220 greeting" "$P/postfix.log"
wait_for 5 tcp_ready 127.0.20.2 10465 || die "postfix smtps on 127.0.20.2:10465" "$P/postfix.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_SUBMISSION=127.0.20.2:10587
CUSTODIAN_PEER_SMTPS=127.0.20.2:10465
ENV
