#!/usr/bin/env bash
# Not a daemon: makes sure `promtool` is installed (packages) and says where it is, so the
# /metrics tests check serve's exposition text with Prometheus' own linter.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

PROMTOOL=$(command -v promtool) || die "promtool is not installed (package prometheus)"
cat <<ENV
CUSTODIAN_PEER_PROMTOOL=$PROMTOOL
ENV
