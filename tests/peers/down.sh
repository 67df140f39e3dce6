#!/usr/bin/env bash
# Stops the test daemons that up.sh started, by their pid files. Safe when none runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/lib.sh"

[ -d "$DIR" ] || exit 0
exec 9>"$DIR/lock"
flock -w 900 9 || die "could not lock $DIR/lock within 15 minutes"

stop_pid "$DIR/ssh/sshd.pid" /usr/sbin/sshd
stop_pid "$DIR/nginx/nginx.pid" /usr/sbin/nginx
stop_pid "$DIR/dns/unbound.pid" /usr/sbin/unbound
stop_pid "$DIR/smtp/queue/pid/master.pid" /usr/lib/postfix/sbin/master
rm -f "$DIR/env"
log "stopped"
