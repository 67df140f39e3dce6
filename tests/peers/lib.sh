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
alive() {
    local pid
    pid=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$2" ]
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
