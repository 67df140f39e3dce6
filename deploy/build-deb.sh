#!/usr/bin/env bash
# Builds the Debian package: a release build, then the man pages and shell completions the
# binary generates from its own CLI definition, then `cargo deb` around them. Prints the
# package path. Needs cargo-deb (`cargo install cargo-deb`). CI runs it through deploy/test-deb.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -p custodian
bin=$target/release/custodian
assets=$target/release/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man"
"$bin" manpages "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/custodian.bash"
"$bin" completions zsh >"$assets/_custodian"
"$bin" completions fish >"$assets/custodian.fish"
# --no-build: the binary above is the one the pages were generated from.
cargo deb -p custodian --no-build "$@" | tail -n1
