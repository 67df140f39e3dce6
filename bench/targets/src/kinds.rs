//! The address plan: the second octet of a 127.K.x.y destination selects the target's behaviour,
//! so any number of targets of a kind share the few wildcard listeners.

use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Ssh,
    Smtp,
    Pop3,
    Imap,
    Ftp,
    /// HTTP/1.1 200 with [`HTTP_BODY`].
    Http,
    /// HTTP/1.1 200 with another body (a content check must fail).
    HttpWrong,
    /// A generic one-line banner ([`TCP_BANNER`]), then waits for the client to close.
    Banner,
    /// Accepts and closes at once.
    Close,
    /// Accepts and never answers.
    Hung,
    /// Sends an SSH banner one byte a second.
    Drip,
    /// Accepts and resets (SO_LINGER 0). A refused connect is a port nobody listens on.
    Reset,
}

pub(crate) const KINDS: [(u8, Kind); 12] = [
    (11, Kind::Ssh),
    (12, Kind::Smtp),
    (13, Kind::Pop3),
    (14, Kind::Imap),
    (15, Kind::Ftp),
    (16, Kind::Http),
    (17, Kind::HttpWrong),
    (18, Kind::Banner),
    (19, Kind::Close),
    (20, Kind::Hung),
    (21, Kind::Drip),
    (22, Kind::Reset),
];

pub(crate) const HTTP_BODY: &str = "custodian-bench-ok\n";
pub(crate) const TCP_BANNER: &str = "200 bench banner ready\r\n";
pub(crate) const SSH_BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 bench\r\n";
/// Ports the server listens on by default (ftp, ssh, smtp, http, pop3, imap, generic tcp).
pub(crate) const PORTS: [u16; 7] = [21, 22, 25, 80, 110, 143, 7000];
/// Nothing listens here: connecting is refused.
pub(crate) const REFUSED_PORT: u16 = 9;

pub(crate) fn kind_of(addr: Ipv4Addr) -> Option<Kind> {
    let o = addr.octets();
    if o[0] != 127 {
        return None;
    }
    KINDS
        .iter()
        .find(|(k, _)| *k == o[1])
        .map(|(_, kind)| *kind)
}

/// The `n`th address of a kind: 127.K.(n / 250).(n % 250 + 1), 64,000 per kind.
pub(crate) fn addr(kind: Kind, n: usize) -> Ipv4Addr {
    let k = KINDS
        .iter()
        .find(|(_, x)| *x == kind)
        .map_or(0, |(k, _)| *k);
    Ipv4Addr::new(127, k, (n / 250 % 256) as u8, (n % 250 + 1) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_back_to_their_kind() {
        for (_, kind) in KINDS {
            for n in [0, 249, 250, 12_499, 63_999] {
                assert_eq!(kind_of(addr(kind, n)), Some(kind), "{kind:?} {n}");
            }
        }
        assert_eq!(addr(Kind::Hung, 250), Ipv4Addr::new(127, 20, 1, 1));
        assert_eq!(kind_of(Ipv4Addr::new(127, 0, 0, 1)), None);
    }
}
