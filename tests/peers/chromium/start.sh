#!/usr/bin/env bash
# Not a daemon: makes sure headless Chromium and its WebDriver are installed (packages) and says
# where they are; the browser test starts chromedriver itself, on loopback, per test.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

CHROMIUM=$(command -v chromium) || die "chromium is not installed (package chromium)"
CHROMEDRIVER=$(command -v chromedriver) || die "chromedriver is not installed (package chromium-driver)"
cat <<ENV
CUSTODIAN_PEER_CHROMIUM=$CHROMIUM
CUSTODIAN_PEER_CHROMEDRIVER=$CHROMEDRIVER
ENV
