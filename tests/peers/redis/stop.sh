#!/usr/bin/env bash
# Stops both test Redis servers by their pid files; safe when they are not running.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

stop_pid "$DIR/redis/auth.pid" /usr/bin/redis-server
stop_pid "$DIR/redis/open.pid" /usr/bin/redis-server
