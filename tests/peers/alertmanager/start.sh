#!/usr/bin/env bash
# Starts Prometheus Alertmanager on 127.0.60.3:19093 (storage in the state dir, clustering off)
# unless it runs.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

A=$DIR/alertmanager
mkdir -p "$A/data"
cp "$PEERS_ROOT/alertmanager/alertmanager.yml" "$A/alertmanager.yml"
if ! alive "$A/alertmanager.pid" /usr/bin/prometheus-alertmanager; then
    launch "$A/alertmanager.log" /usr/bin/prometheus-alertmanager \
        --config.file="$A/alertmanager.yml" --storage.path="$A/data" \
        --web.listen-address=127.0.60.3:19093 --cluster.listen-address=
    echo $! >"$A/alertmanager.pid"
fi
am_ready() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.60.3/19093 &&
        printf "GET /-/ready HTTP/1.0\r\n\r\n" >&3 && head -n1 <&3' 2>/dev/null | grep -q ' 200'
}
wait_for 20 am_ready || die "alertmanager on 127.0.60.3:19093 is not ready" "$A/alertmanager.log"

cat <<ENV
CUSTODIAN_PEER_ALERTMANAGER=127.0.60.3:19093
ENV
