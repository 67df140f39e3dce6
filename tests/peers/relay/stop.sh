#!/usr/bin/env bash
# Stops this test daemon by its pid file; safe when it is not running.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

stop_pid "$DIR/relay/queue/pid/master.pid" /usr/lib/postfix/sbin/master
