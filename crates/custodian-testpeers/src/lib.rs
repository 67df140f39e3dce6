//! Test support: the real daemons of `tests/peers/` (sshd, nginx, unbound, postfix on 127.0.10.x).
//!
//! [`peers`] runs `tests/peers/up.sh` once per process (the script itself is idempotent and
//! locked, so parallel test binaries share one set of daemons) and parses the `KEY=VALUE` lines
//! it prints. A failing script panics with its output: these tests never skip. [`fuzz`] feeds our
//! decoders seeded random and mutated inputs.

pub mod fuzz;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The running peers' settings, as printed by `tests/peers/up.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    vars: BTreeMap<String, String>,
}

/// Starts the peers on first call in this process (runs `tests/peers/up.sh`) and returns them.
///
/// Panics with the script's output if it fails.
pub fn peers() -> &'static Peers {
    static PEERS: OnceLock<Peers> = OnceLock::new();
    PEERS.get_or_init(start)
}

/// Where the start script lives, found from this crate's own directory.
fn up_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/up.sh")
}

fn start() -> Peers {
    let script = up_script();
    // stdin closed so apt or a daemon can never wait on the test harness.
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        panic!(
            "{} failed ({}):\n{stdout}{stderr}",
            script.display(),
            out.status
        );
    }
    Peers::parse(&stdout)
}

impl Peers {
    /// Reads `KEY=VALUE` lines; other lines are ignored.
    pub fn parse(text: &str) -> Peers {
        let vars = text
            .lines()
            .filter_map(|line| line.trim().split_once('='))
            .filter(|(k, _)| k.starts_with("CUSTODIAN_PEER_"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Peers { vars }
    }

    /// A setting by its full name (`CUSTODIAN_PEER_SSH`) or its short one (`ssh`).
    ///
    /// Panics if the peers don't define it: a test asking for it cannot run without it.
    pub fn get(&self, key: &str) -> &str {
        let long = format!("CUSTODIAN_PEER_{}", key.to_ascii_uppercase());
        self.vars
            .get(key)
            .or_else(|| self.vars.get(&long))
            .unwrap_or_else(|| panic!("no peer setting {key}; known: {:?}", self.keys()))
    }

    /// A setting that is an `ip:port` address, e.g. `addr("smtp")`.
    pub fn addr(&self, key: &str) -> SocketAddr {
        let value = self.get(key);
        value
            .parse()
            .unwrap_or_else(|e| panic!("peer setting {key}={value} is not ip:port: {e}"))
    }

    /// Every setting's full name.
    pub fn keys(&self) -> Vec<&str> {
        self.vars.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    use std::time::Duration;

    const SAMPLE: &str = "peers: starting\nCUSTODIAN_PEER_SSH=127.0.10.1:2222\n\
                          CUSTODIAN_PEER_CA=/tmp/x/ca.pem\nOTHER=1\n";

    #[test]
    fn parse_keeps_only_peer_lines() {
        let p = Peers::parse(SAMPLE);
        assert_eq!(p.keys(), ["CUSTODIAN_PEER_CA", "CUSTODIAN_PEER_SSH"]);
        assert_eq!(p.get("CUSTODIAN_PEER_CA"), "/tmp/x/ca.pem");
    }

    #[test]
    fn short_names_and_addresses() {
        let p = Peers::parse(SAMPLE);
        assert_eq!(p.get("ca"), "/tmp/x/ca.pem");
        let addr: SocketAddr = "127.0.10.1:2222".parse().unwrap();
        assert_eq!(p.addr("ssh"), addr);
    }

    #[test]
    #[should_panic(expected = "no peer setting smtp")]
    fn missing_setting_panics() {
        Peers::parse(SAMPLE).get("smtp");
    }

    #[test]
    #[should_panic(expected = "is not ip:port")]
    fn non_address_panics() {
        Peers::parse(SAMPLE).addr("ca");
    }

    /// The real thing: the script runs, every service is named, and sshd greets.
    #[test]
    fn real_peers_answer() {
        let p = peers();
        for k in ["SSH", "HTTP", "HTTPS", "HTTPS_EXPIRING", "DNS", "SMTP"] {
            assert!(p.addr(k).ip().is_loopback(), "{k} is not on loopback");
        }
        assert!(std::fs::metadata(p.get("ca")).is_ok(), "CA file missing");
        let conn = TcpStream::connect_timeout(&p.addr("ssh"), Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut banner = String::new();
        BufReader::new(conn).read_line(&mut banner).unwrap();
        assert!(banner.starts_with("SSH-2.0-"), "banner: {banner}");
    }
}
