#!/usr/bin/env bash
# Starts the test NNTP server (leafnode, run per connection by socat as inetd would) on
# 127.0.40.7:10119 unless it runs. leafnode's config and spool paths are fixed, so they are
# bind-mounted from the state dir inside the server's own mount namespace.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

N=$DIR/nntp
mkdir -p "$N/etc"
for d in leaf.node interesting.groups out.going failed.postings message.id temp.files; do
    mkdir -p "$N/spool/$d"
done
chown -R news:news "$N/spool"
cp "$PEERS_ROOT/nntp/config" "$N/etc/config"
chown root:news "$N/etc/config"
chmod 640 "$N/etc/config"

if ! alive "$N/socat.pid" /usr/bin/socat; then
    launch "$N/leafnode.log" "$PEERS_ROOT/isolate.sh" \
        "$N/etc:/etc/news/leafnode" "$N/spool:/var/spool/news" -- /usr/bin/socat \
        TCP-LISTEN:10119,bind=127.0.40.7,fork,reuseaddr EXEC:/usr/sbin/leafnode,nofork,su=news
    echo $! >"$N/socat.pid"
fi
nntp_ready() { [[ $(read_line 127.0.40.7 10119) == "200 Leafnode"* ]]; }
wait_for 15 nntp_ready || die "leafnode on 127.0.40.7:10119 gives no 200 greeting" "$N/leafnode.log"

cat <<ENV
CUSTODIAN_PEER_NNTP=127.0.40.7:10119
ENV
