#!/usr/bin/env bash
# Starts the test Dovecot on 127.0.20.1 (imap 10143, imaps 10993, pop3 10110, pop3s 10995) unless
# it already runs. User `probe`, password `probe-secret`; certificate from the test CA (lib.sh)
# for 127.0.20.1 and 127.0.20.2 (the submission peer shares it), renewed a month before expiry.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

V=$DIR/dovecot
mkdir -p "$V/run" "$V/state" "$V/home/probe"
chown nobody:nogroup "$V/home/probe"

tls_ca
if ! fresh "$T/mail.pem" $((30 * 86400)); then tls_leaf mail 365 "$PEERS_ROOT/dovecot/leaf.ext"; fi
render "$PEERS_ROOT/dovecot/dovecot.conf" "$V/dovecot.conf"
echo 'probe:{PLAIN}probe-secret' >"$V/users"
chmod 644 "$V/users"

if alive "$V/run/master.pid" /usr/sbin/dovecot; then
    # A renewed certificate only takes effect after a reload.
    [ "$RENEWED" = 0 ] || kill -HUP "$(cat "$V/run/master.pid")"
else
    /usr/sbin/dovecot -c "$V/dovecot.conf" -n >/dev/null 2>>"$V/dovecot.log" ||
        die "dovecot config" "$V/dovecot.log"
    launch "$V/dovecot.log" /usr/sbin/dovecot -F -c "$V/dovecot.conf"
fi

# The first greeting can be "Waiting for authentication process..."; wait for "ready.".
imap_ready() { [[ $(read_line 127.0.20.1 10143) == *ready.* ]]; }
pop3_ready() { [[ $(read_line 127.0.20.1 10110) == +OK*ready.* ]]; }
wait_for 20 imap_ready || die "dovecot imap on 127.0.20.1:10143 is not ready" "$V/dovecot.log"
wait_for 10 pop3_ready || die "dovecot pop3 on 127.0.20.1:10110 is not ready" "$V/dovecot.log"
wait_for 5 tcp_ready 127.0.20.1 10993 || die "dovecot imaps on 127.0.20.1:10993" "$V/dovecot.log"
wait_for 5 tcp_ready 127.0.20.1 10995 || die "dovecot pop3s on 127.0.20.1:10995" "$V/dovecot.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_IMAP=127.0.20.1:10143
CUSTODIAN_PEER_IMAPS=127.0.20.1:10993
CUSTODIAN_PEER_POP3=127.0.20.1:10110
CUSTODIAN_PEER_POP3S=127.0.20.1:10995
CUSTODIAN_PEER_MAIL_USER=probe
CUSTODIAN_PEER_MAIL_PASSWORD=probe-secret
ENV
