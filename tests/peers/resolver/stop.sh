#!/usr/bin/env bash
# Stops this folder's unbounds by their pid files; safe when they are not running.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

for name in auth open refuse; do
    stop_pid "$DIR/resolver/$name.pid" /usr/sbin/unbound
done
