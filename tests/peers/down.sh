#!/usr/bin/env bash
# Stops the test daemons that up.sh started, by their pid files. Safe when none runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/lib.sh"

[ -d "$DIR" ] || exit 0
exec 9>"$DIR/lock"
flock -w 900 9 || die "could not lock $DIR/lock within 15 minutes"

for stop in "$PEERS_ROOT"/*/stop.sh; do
    "$stop"
done
rm -f "$DIR/env"
log "stopped"
