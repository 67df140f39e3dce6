# shellcheck shell=bash
# Shared helpers for tests/peers/*: sourced by up.sh, down.sh and each <svc>/start.sh.
# Everything here talks to loopback addresses only.

# shellcheck disable=SC2034 # used by the scripts that source this file
PEERS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${CUSTODIAN_PEERS_DIR:-/tmp/custodian-peers}
# Daemons drop to their own users (www-data, postfix) and must traverse the state dir.
umask 022

log() { echo "peers: $*" >&2; }

# die MSG [LOGFILE...]: print the message and the daemon logs, then fail.
die() {
    local msg=$1 f
    shift
    log "FAILED: $msg"
    for f in "$@"; do
        [ -f "$f" ] || continue
        echo "----- $f (last 60 lines) -----" >&2
        tail -n 60 "$f" >&2
    done
    exit 1
}

# render TEMPLATE OUT: copy a config template, filling @DIR@ with the state dir.
render() { sed "s|@DIR@|$DIR|g" "$1" >"$2"; }

# alive PIDFILE EXE: whether the pid file names a live process running EXE (guards pid reuse).
# Both sides are resolved: /proc/PID/exe names the real file, and EXE may be a symlink (Debian's
# /usr/bin/redis-server -> redis-check-rdb), which compared unresolved never matched.
alive() {
    local pid
    pid=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$2")" ]
}

# launch LOG CMD...: run CMD detached from our stdio and from the up.sh lock (fd 9), so a
# caller capturing our output (cargo tests) is not held open by the daemon.
launch() {
    local out=$1
    shift
    setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
}

# tcp_ready HOST PORT: whether a TCP connection succeeds.
tcp_ready() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# read_line HOST PORT: the first line the server sends after connect.
read_line() {
    timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2 && head -n1 <&3" 2>/dev/null | tr -d '\r'
}

# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds or time runs out.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}

gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_pid PIDFILE EXE: TERM the daemon named by the pid file, wait up to 10 s, then KILL.
stop_pid() {
    local pid
    alive "$1" "$2" || { rm -f "$1"; return 0; }
    pid=$(head -n1 "$1" | tr -dc 0-9)
    kill -TERM "$pid" 2>/dev/null
    wait_for 10 gone "$pid" || kill -KILL "$pid" 2>/dev/null
    rm -f "$1"
}

# ---- the test CA ($DIR/tls), shared by every TLS peer (CUSTODIAN_PEER_CA)
T=$DIR/tls
# Set to 1 by tls_ca/tls_leaf when they made something new (a running daemon must reload).
RENEWED=0

# fresh FILE SECONDS: whether the certificate exists and is still valid SECONDS from now.
fresh() { [ -f "$1" ] && openssl x509 -in "$1" -noout -checkend "$2" >/dev/null; }

# tls_ca: makes the test CA unless it is valid for 400 more days. A new CA invalidates every
# leaf, so they are removed and each peer's start.sh makes its own again.
tls_ca() {
    mkdir -p "$T"
    fresh "$T/ca.pem" $((400 * 86400)) && return 0
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$T/ca.key" -subj "/CN=custodian test CA" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$T/ca.pem.new"
    mv "$T/ca.pem.new" "$T/ca.pem"
    find "$T" -name '*.pem' ! -name ca.pem -delete
    chmod 644 "$T/ca.pem"
    RENEWED=1
}

# tls_leaf NAME DAYS EXTFILE: $T/NAME.pem and $T/NAME.key, a server certificate signed by the
# test CA with the extensions (SANs) in EXTFILE, valid DAYS days.
tls_leaf() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$1.key" 2>/dev/null
    openssl req -new -key "$T/$1.key" -subj "/CN=localhost" -out "$T/$1.csr"
    openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
        -days "$2" -extfile "$3" -out "$T/$1.pem.new" 2>/dev/null
    mv "$T/$1.pem.new" "$T/$1.pem"
    chmod 644 "$T/$1.pem"
    RENEWED=1
}
