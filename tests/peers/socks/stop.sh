#!/usr/bin/env bash
# Stops this folder's microsocks by their pid files; safe when they are not running.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

for name in open auth; do
    stop_pid "$DIR/socks/$name.pid" /usr/bin/microsocks
done
