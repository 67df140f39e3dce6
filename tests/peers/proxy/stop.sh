#!/usr/bin/env bash
# Stops this folder's tinyproxies by their pid files; safe when they are not running.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

for name in open deny; do
    stop_pid "$DIR/proxy/$name.pid" /usr/bin/tinyproxy
done
