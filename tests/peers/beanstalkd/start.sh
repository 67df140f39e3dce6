#!/usr/bin/env bash
# Starts the test beanstalkd on 127.0.50.1:11310 (binlog in the state dir) unless it already runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

S=$DIR/beanstalkd
mkdir -p "$S/binlog"
if ! alive "$S/beanstalkd.pid" /usr/bin/beanstalkd; then
    launch "$S/beanstalkd.log" /usr/bin/beanstalkd -l 127.0.50.1 -p 11310 -b "$S/binlog"
    echo $! >"$S/beanstalkd.pid"
fi
beanstalk_ready() {
    [[ $(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.50.1/11310 && printf "stats\r\n" >&3 && head -n1 <&3' 2>/dev/null) == OK* ]]
}
wait_for 15 beanstalk_ready || die "beanstalkd on 127.0.50.1:11310 does not answer" "$S/beanstalkd.log"

cat <<ENV
CUSTODIAN_PEER_BEANSTALK=127.0.50.1:11310
ENV
