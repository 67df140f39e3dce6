#!/usr/bin/env bash
# Starts custodian's real test daemons (sshd, nginx, unbound, postfix), each on its own 127.x
# address, installing their Debian packages first if needed. Idempotent and safe to run
# concurrently: a second call finds them running and only re-checks that each answers.
# Prints KEY=VALUE lines (also written to $DIR/env); progress and failures go to stderr.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/lib.sh"

# Every peer is a folder with `packages` (Debian packages it needs), `start.sh` (starts it
# unless running, waits until it answers, prints its KEY=VALUE lines) and `stop.sh`.
mapfile -t SERVICES < <(cd "$PEERS_ROOT" && for d in */start.sh; do dirname "$d"; done)
mapfile -t PACKAGES < <(cd "$PEERS_ROOT" && cat ./*/packages | sort -u)

mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock -w 900 9 || die "could not lock $DIR/lock within 15 minutes"

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            echo "$p"
    done
}

install_packages() {
    local missing created=0
    mapfile -t missing < <(missing_packages)
    [ "${#missing[@]}" -gt 0 ] || return 0
    log "installing ${missing[*]} (log: $DIR/apt.log)"
    # Packages must not start their system-wide instances.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -q -y -o DPkg::Lock::Timeout=600)
    { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${missing[@]}"; } \
        >>"$DIR/apt.log" 2>&1 </dev/null 9>&- || die "apt-get install ${missing[*]}" "$DIR/apt.log"
    [ "$created" = 0 ] || rm -f /usr/sbin/policy-rc.d
}

install_packages
for svc in "${SERVICES[@]}"; do
    "$PEERS_ROOT/$svc/start.sh"
done >"$DIR/env.new"
mv "$DIR/env.new" "$DIR/env"
cat "$DIR/env"
