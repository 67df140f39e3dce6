#!/usr/bin/env bash
# Starts the test vsftpd on 127.0.20.3:10021 unless it runs. Anonymous users see welcome.txt
# (contains "custodian-ftp-ok"); the local user `custodianftp` (password `ftp-secret`, a system
# account made here, login shell for PAM's pam_shells) sees private.txt in its home.
set -euo pipefail
# shellcheck source=tests/peers/lib.sh
source "$(dirname "$0")/../lib.sh"

F=$DIR/ftp
FTP_USER=custodianftp
mkdir -p "$F/anon" "$F/empty" "$F/home"
echo "custodian-ftp-ok: anonymous download works" >"$F/anon/welcome.txt"
chmod 755 "$F" "$F/anon" "$F/empty"
chmod 644 "$F/anon/welcome.txt"
if ! id "$FTP_USER" >/dev/null 2>&1; then
    useradd --system --home-dir "$F/home" --no-create-home --shell /bin/bash "$FTP_USER"
fi
# The home may move with $DIR; keep the account pointing at this one.
[ "$(getent passwd "$FTP_USER" | cut -d: -f6)" = "$F/home" ] || usermod --home "$F/home" "$FTP_USER"
echo "$FTP_USER:ftp-secret" | chpasswd
echo "custodian-ftp-private: local user download works" >"$F/home/private.txt"
chown -R "$FTP_USER" "$F/home"
render "$PEERS_ROOT/ftp/vsftpd.conf" "$F/vsftpd.conf"

if ! alive "$F/vsftpd.pid" /usr/sbin/vsftpd; then
    launch "$F/vsftpd.out" /usr/sbin/vsftpd "$F/vsftpd.conf"
    echo $! >"$F/vsftpd.pid"
fi
ready() { [[ $(read_line 127.0.20.3 10021) == 220\ * ]]; }
wait_for 15 ready || die "vsftpd on 127.0.20.3:10021 gives no 220 greeting" "$F/vsftpd.out" "$F/vsftpd.log"

# The addresses the tests read.
cat <<ENV
CUSTODIAN_PEER_FTP=127.0.20.3:10021
CUSTODIAN_PEER_FTP_USER=$FTP_USER
CUSTODIAN_PEER_FTP_PASSWORD=ftp-secret
ENV
