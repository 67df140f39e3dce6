#!/usr/bin/env bash
# isolate.sh [SRC:DST ...] -- CMD...: runs CMD in a private mount namespace whose
# /etc/resolv.conf names only 127.0.0.1, so the daemon's own lookups (reverse DNS of clients,
# its host name) never leave this machine; each SRC:DST is bind-mounted first (for daemons
# with fixed system paths). It ends by exec'ing CMD, so the caller's $! is the daemon's pid.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/lib.sh"

if [ "${1:-}" != --inside ]; then
    exec unshare --mount --propagation private "$0" --inside "$@"
fi
shift
printf 'nameserver 127.0.0.1\n' >"$DIR/resolv.conf"
mount --bind "$DIR/resolv.conf" /etc/resolv.conf
while [ "$1" != -- ]; do
    mount --bind "${1%%:*}" "${1#*:}"
    shift
done
shift
exec "$@"
