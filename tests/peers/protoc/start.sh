#!/usr/bin/env bash
# Not a daemon: makes sure `protoc` is installed (packages) and says where it is, so the mauve
# tests can decode packets independently of custodian's own decoder.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

PROTOC=$(command -v protoc) || die "protoc is not installed (package protobuf-compiler)"
cat <<ENV
CUSTODIAN_PEER_PROTOC=$PROTOC
ENV
