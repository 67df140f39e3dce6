#!/usr/bin/env bash
# Stops the test daemons that up.sh started, by their pid files. Safe when none runs. Fails,
# naming them, when any daemon survives: a pid file under $DIR still naming a live process, or
# a process whose command line names a file under $DIR.
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

# leftovers: one line per surviving daemon. Some rename themselves (redis shows only its
# address), hence the pid files as well as the command lines.
leftovers() {
    local f pid
    while IFS= read -r -d '' f; do
        pid=$(head -n1 "$f" 2>/dev/null | tr -dc 0-9)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) (pid file $f)"
        fi
    done < <(find "$DIR" -name '*.pid' -type f -print0 2>/dev/null)
    pgrep -a -f -- "$DIR/" || true
}

left=$(leftovers | sort -u)
if [ -n "$left" ]; then
    log "FAILED: daemons still running after their stop scripts:"
    echo "$left" >&2
    exit 1
fi
log "stopped; no daemon left"
