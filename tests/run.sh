#!/usr/bin/env bash
# The project's full test command: starts the real test daemons (tests/peers, installing their
# Debian packages if needed), runs every workspace test with their addresses exported, and stops
# the daemons again whatever happened. Exits with cargo's status, or 1 if a daemon survived.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "run.sh: cargo not found" >&2; exit 127; }

export CUSTODIAN_PEERS_DIR=${CUSTODIAN_PEERS_DIR:-/tmp/custodian-peers}
# Stop the daemons whatever happened; one that survives (down.sh names it) fails the run.
stop_peers() {
    local status=$?
    tests/peers/down.sh || [ "$status" -ne 0 ] || status=1
    exit "$status"
}
trap stop_peers EXIT
trap 'exit 130' INT TERM

# up.sh prints its failure (with the daemon's log) on stderr; set -e stops us then.
peers_env=$(tests/peers/up.sh)
# Each KEY=VALUE line becomes an exported variable for the tests.
while IFS='=' read -r key value; do
    if [[ $key == CUSTODIAN_PEER_* ]]; then export "$key=$value"; fi
done <<<"$peers_env"
env | grep '^CUSTODIAN_PEER_' | sort

# Commands the tests run without a state_file setting keep their state (and enqueue's put
# memory) here, not in /var/lib/custodian of the machine running the tests as root.
STATE_DIRECTORY=$(mktemp -d)
export STATE_DIRECTORY

status=0
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --all-targets --no-fail-fast || status=$?
# --all-targets leaves out doc tests.
cargo test --workspace --doc || status=$?
exit "$status"
