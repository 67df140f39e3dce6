#!/usr/bin/env bash
# Starts the mailsink Postfix on 127.0.60.1:2526 (delivers @custodian.test mail into a Maildir
# the tests read) unless it runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

P=$DIR/mailsink
mkdir -p "$P/etc" "$P/queue" "$P/data" "$P/mail"
render "$PEERS_ROOT/mailsink/main.cf" "$P/etc/main.cf.new"
sed -i "s|@UID@|$(id -u postfix)|; s|@GID@|$(id -g postfix)|" "$P/etc/main.cf.new"
mv "$P/etc/main.cf.new" "$P/etc/main.cf"
render "$PEERS_ROOT/mailsink/master.cf" "$P/etc/master.cf"
chown postfix "$P/data" "$P/mail"

if ! alive "$P/queue/pid/master.pid" /usr/lib/postfix/sbin/master; then
    # `postfix check` prints its fatals only to a tty; start-fg alone would exit 1 silently.
    script -qec "postfix -c '$P/etc' check" /dev/null >>"$P/postfix.log" 2>&1 </dev/null ||
        die "postfix check" "$P/postfix.log"
    launch "$P/postfix.log" postfix -c "$P/etc" start-fg
fi
smtp_ready() { [[ $(read_line 127.0.60.1 2526) == 220\ * ]]; }
wait_for 20 smtp_ready || die "mailsink postfix on 127.0.60.1:2526 gives no 220 greeting" "$P/postfix.log"

# The relay and the Maildir (new/ holds one file per delivered message).
cat <<ENV
CUSTODIAN_PEER_MAILSINK=127.0.60.1:2526
CUSTODIAN_PEER_MAILSINK_MAILDIR=$P/mail/inbox
ENV
