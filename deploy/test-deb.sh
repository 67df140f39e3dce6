#!/usr/bin/env bash
# Package test (CI, after tests/run.sh): builds the Debian package with deploy/build-deb.sh,
# installs it with apt on this machine, checks what an operator relies on (binary, man pages,
# completions, conffiles, units that systemd accepts, shipped examples that `check --strict`
# accepts), then purges it and checks that nothing is left. Needs root and apt. Every check
# runs; the script ends with `package: N passed, N failed` and exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export PATH="$HOME/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
started=$SECONDS

say() { printf 'test-deb: %s\n' "$*"; }
die() { printf 'test-deb: FAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (apt-get install, dpkg)"

# --- tools -----------------------------------------------------------------------------------
if ! command -v cargo-deb >/dev/null; then
    say "installing cargo-deb (once; it stays in ~/.cargo/bin)"
    # Its own temporary target dir: the workspace's cache holds only the workspace's builds.
    env -u CARGO_TARGET_DIR cargo install cargo-deb --locked --version 3.8.0
fi
# man -w needs man-db; systemd-analyze comes with systemd (it verifies units without systemd
# running as PID 1).
missing=()
command -v man >/dev/null || missing+=(man-db)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- dpkg path excludes ----------------------------------------------------------------------
# Slim and container images tell dpkg to drop man pages and docs (path-exclude in
# /etc/dpkg/dpkg.cfg.d/). Such a machine would install the package without its man pages and
# examples and the checks below would fail for a reason that is not the package's. The test
# install re-includes the package's own paths on the command line (later options win) and
# leaves the machine's configuration as it is.
dpkg_opts=()
excludes=$(grep -Hs '^[[:space:]]*path-exclude' /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/* || true)
if [ -n "$excludes" ]; then
    say "NOTE: dpkg on this machine drops files by path-exclude; overriding it for this install:"
    printf '  %s\n' "$excludes"
    for p in '/usr/share/man/man1/custodian*' '/usr/share/doc/custodian/*' \
        '/usr/share/bash-completion/*' '/usr/share/zsh/*' '/usr/share/fish/*'; do
        dpkg_opts+=(-o "DPkg::Options::=--path-include=$p")
    done
fi

# --- build -----------------------------------------------------------------------------------
if dpkg-query -W -f='${Status}' custodian 2>/dev/null | grep -q 'installed'; then
    say "a custodian package is installed already; purging it first"
    apt-get purge -y -qq custodian >/dev/null
fi
t0=$SECONDS
deb=$(deploy/build-deb.sh)
deb=$(realpath "$deb")
[ -f "$deb" ] || die "build-deb.sh printed '$deb', which is no file"
build_secs=$((SECONDS - t0))
say "built $deb in ${build_secs}s"

# --- install ---------------------------------------------------------------------------------
purge_on_exit() { apt-get purge -y -qq custodian >/dev/null 2>&1 || true; }
trap purge_on_exit EXIT
install_log=$(mktemp)
apt-get install -y -qq --no-install-recommends "${dpkg_opts[@]}" "$deb" >"$install_log" 2>&1 \
    || { cat "$install_log"; die "apt-get install $deb"; }
cat "$install_log"

# --- checks ----------------------------------------------------------------------------------
passed=0
failed=0
# check NAME CMD...: runs CMD with its output shown; counts a pass or a loud failure.
check() {
    local name=$1
    shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        say "ok: $name"
    else
        failed=$((failed + 1))
        printf 'test-deb: FAILED: %s\n%s\n' "$name" "$out" >&2
    fi
}
# expect_silent NAME CMD...: like check, and any output at all is a failure too.
expect_silent() {
    local name=$1
    shift
    check "$name" sh -c '"$@" >"$0" 2>&1 && ! [ -s "$0" ] || { cat "$0"; exit 1; }' \
        "$(mktemp)" "$@"
}

# A maintainer script that fails half-way or runs a stray word as a command (it happened: a
# comment with cargo-deb's marker in it) prints "custodian.postinst: ...", and dpkg may still
# call the install a success.
check "maintainer scripts ran without complaint" sh -c \
    "! grep -E 'custodian\.(preinst|postinst|prerm|postrm)' '$install_log'"
version=$(dpkg-query -W -f='${Version}' custodian)
version=${version%-*}
check "/usr/bin/custodian is the one on PATH" test "$(command -v custodian)" = /usr/bin/custodian
check "custodian --version says $version" sh -c \
    "custodian --version | grep -qxF 'custodian $version'"
check "man -w custodian" man -w custodian
check "man -w custodian-worker" man -w custodian-worker
# Every page in the package is where man looks for it (a dropped page would fail here).
pages=$(dpkg -L custodian | grep '^/usr/share/man/man1/.*\.1\.gz$' || true)
check "the package has man pages" test -n "$pages"
for p in $pages; do
    name=$(basename "$p" .1.gz)
    check "man -w $name" man -w "$name"
done
for f in /usr/share/bash-completion/completions/custodian /usr/share/zsh/vendor-completions/_custodian \
    /usr/share/fish/vendor_completions.d/custodian.fish; do
    check "completion $f" test -s "$f"
done
conffiles=$(dpkg-query -W -f='${Conffiles}' custodian)
for f in /etc/custodian/custodian.toml /etc/custodian/tests/local.cfg; do
    check "conffile $f" sh -c "printf '%s\n' '$conffiles' | grep -q ' $f '"
done

units=$(dpkg -L custodian | grep -E '/systemd/system/[^/]+\.(service|timer)$' || true)
check "the package has systemd units" test -n "$units"
for u in $units; do
    # Any output is a finding: systemd prints warnings without failing.
    expect_silent "systemd-analyze verify $(basename "$u")" systemd-analyze verify "$u"
done
for want in custodian-worker.service custodian-enqueue.service custodian-enqueue.timer \
    custodian-serve.service custodian-run.service custodian-run.timer; do
    check "unit $want is installed" sh -c "printf '%s\n' '$units' | grep -q '/$want\$'"
done
# Installed disabled: nothing starts until the operator says so.
check "no unit is enabled" sh -c \
    "! find /etc/systemd/system -name 'custodian*' | grep -q ."

shopt -s nullglob
examples=(/usr/share/doc/custodian/examples/*.cfg)
check "the package has example test files" test ${#examples[@]} -gt 0
for f in "${examples[@]}" /etc/custodian/tests/*; do
    check "custodian check --strict $f" custodian check --strict "$f"
done
check "custodian check with /etc/custodian/custodian.toml" \
    custodian check --strict --settings /etc/custodian/custodian.toml /etc/custodian/tests/local.cfg
for s in /usr/share/doc/custodian/examples/*.toml; do
    check "settings example $s" \
        custodian check --strict --settings "$s" /etc/custodian/tests/local.cfg
done
shopt -u nullglob

deb_size=$(stat -c %s "$deb")
bin_size=$(stat -c %s /usr/bin/custodian)

# --- purge -----------------------------------------------------------------------------------
# What a unit would have left, laid out as systemd does for a DynamicUser (the real directory
# under private/, a symlink beside it), unless this machine has real ones: purge removes them.
made_state=
if [ ! -e /var/lib/custodian ] && [ ! -e /var/lib/private/custodian ]; then
    mkdir -p /var/lib/private/custodian
    echo '{}' >/var/lib/private/custodian/state.json
    ln -s private/custodian /var/lib/custodian
    made_state=1
else
    say "NOTE: /var/lib/custodian exists already (a run as root?); purge will remove it too"
fi
trap - EXIT
purge_log=$(mktemp)
check "apt-get purge custodian" sh -c "apt-get purge -y -qq custodian >'$purge_log' 2>&1 || { cat '$purge_log'; exit 1; }"
check "maintainer scripts ran without complaint on purge" sh -c \
    "! grep -E 'custodian\.(preinst|postinst|prerm|postrm)' '$purge_log'"
if [ -n "$made_state" ]; then
    check "purge removed the state directory" \
        sh -c '! [ -e /var/lib/custodian ] && ! [ -L /var/lib/custodian ] && ! [ -e /var/lib/private/custodian ]'
fi
check "/usr/bin/custodian is gone" test ! -e /usr/bin/custodian
check "/etc/custodian is gone" test ! -e /etc/custodian
check "the units are gone" sh -c "! ls /lib/systemd/system/custodian* /usr/lib/systemd/system/custodian* 2>/dev/null | grep -q ."
check "dpkg no longer knows custodian" sh -c "! dpkg-query -W -f='\${Status}' custodian 2>/dev/null | grep -q installed"

say "package $(basename "$deb"): $deb_size bytes (.deb), /usr/bin/custodian $bin_size bytes;" \
    "build ${build_secs}s, whole test $((SECONDS - started))s"
echo "package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
