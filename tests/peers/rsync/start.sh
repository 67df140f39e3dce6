#!/usr/bin/env bash
# Starts the test rsync daemon on 127.0.40.1:10873 (module `pub`, read-only) unless it runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

R=$DIR/rsync
mkdir -p "$R/pub"
printf 'custodian-rsync-ok\n' >"$R/pub/hello.txt"
render "$PEERS_ROOT/rsync/rsyncd.conf" "$R/rsyncd.conf"

if ! alive "$R/rsyncd.pid" /usr/bin/rsync; then
    rm -f "$R/rsyncd.pid"
    launch "$R/rsyncd.log" "$PEERS_ROOT/isolate.sh" -- /usr/bin/rsync --daemon --no-detach \
        --config="$R/rsyncd.conf" --address=127.0.40.1 --port=10873
fi
rsync_ready() { timeout 3 rsync rsync://127.0.40.1:10873/ 2>/dev/null | grep -q '^pub'; }
wait_for 15 rsync_ready || die "rsync daemon on 127.0.40.1:10873 lists no module pub" "$R/rsyncd.log"

cat <<ENV
CUSTODIAN_PEER_RSYNC=127.0.40.1:10873
ENV
