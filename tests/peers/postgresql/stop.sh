#!/usr/bin/env bash
# Stops this test daemon by its pid file; safe when it is not running.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
[ -n "$BIN" ] || exit 0
stop_pid "$DIR/postgresql/data/postmaster.pid" "$BIN/postgres"
