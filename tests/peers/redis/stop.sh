#!/usr/bin/env bash
# Stops the test Redis servers by their pid files; safe when they are not running.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

# /usr/bin/redis-server is a symlink: /proc/PID/exe names its target.
EXE=$(readlink -f /usr/bin/redis-server)
for name in auth open tls sock; do
    stop_pid "$DIR/redis/$name.pid" "$EXE"
done
