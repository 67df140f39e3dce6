#!/usr/bin/env bash
# Starts custodian's real test daemons (sshd, nginx, unbound, postfix), each on its own 127.x
# address, installing their Debian packages first if needed. Idempotent and safe to run
# concurrently: a second call finds them running and only re-checks that each answers.
# Prints KEY=VALUE lines (also written to $DIR/env); progress and failures go to stderr.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/lib.sh"

PACKAGES=(openssh-server nginx unbound postfix bind9-dnsutils openssl)

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
for svc in ssh nginx dns smtp; do
    "$PEERS_ROOT/$svc/start.sh"
done

cat >"$DIR/env.new" <<ENV
CUSTODIAN_PEER_SSH=127.0.10.1:2222
CUSTODIAN_PEER_HTTP=127.0.10.2:8080
CUSTODIAN_PEER_HTTPS=127.0.10.2:8443
CUSTODIAN_PEER_HTTPS_EXPIRING=127.0.10.2:8444
CUSTODIAN_PEER_CA=$DIR/tls/ca.pem
CUSTODIAN_PEER_DNS=127.0.10.3:5353
CUSTODIAN_PEER_SMTP=127.0.10.4:2525
ENV
mv "$DIR/env.new" "$DIR/env"
cat "$DIR/env"
