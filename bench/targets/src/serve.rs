//! The target server: wildcard listeners on a few ports, each accepted connection served by the
//! kind its destination address names (`kinds`). Single-threaded; inside a private network
//! namespace so nothing listens on a real interface.

use crate::kinds::{kind_of, Kind, HTTP_BODY, PORTS, SSH_BANNER, TCP_BANNER};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let (vals, rest) = crate::flags(args, &["--ready"])?;
    let netns = rest.iter().any(|a| a == "--netns");
    let mut ports = Vec::new();
    for p in rest.iter().filter(|a| *a != "--netns") {
        ports.push(p.parse::<u16>().map_err(|_| format!("bad port {p}"))?);
    }
    if ports.is_empty() {
        ports.extend(PORTS);
    }
    if netns {
        enter_private_netns()?;
    }
    // Never serve on a real interface: the wildcard listeners must only see loopback.
    let others =
        non_loopback_interfaces().map_err(|e| format!("reading /proc/self/net/dev: {e}"))?;
    if !others.is_empty() {
        return Err(format!(
            "interfaces other than lo exist ({}); run with --netns or inside `unshare -n`",
            others.join(", ")
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for port in ports {
            listeners.push(listen(port).map_err(|e| format!("listen on port {port}: {e}"))?);
        }
        for l in listeners {
            tokio::spawn(accept_loop(l));
        }
        if let Some(path) = &vals[0] {
            std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| e.to_string())?;
        }
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// A new network namespace with only `lo`, brought up, and sysctls for a connection storm.
fn enter_private_netns() -> Result<(), String> {
    // SAFETY: unshare takes flags only; the runtime is not built yet, so this thread is the
    // process and every thread spawned later inherits the namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {} (needs root)",
            io::Error::last_os_error()
        ));
    }
    let ok = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("ip link set lo up: {e}"))?;
    if !ok.success() {
        return Err("ip link set lo up failed".into());
    }
    // Per-namespace sysctls; failures only cost speed, so they are warnings.
    for (path, value) in [
        ("/proc/sys/net/core/somaxconn", "65535"),
        ("/proc/sys/net/ipv4/tcp_max_syn_backlog", "65535"),
        ("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535"),
        ("/proc/sys/net/ipv4/tcp_tw_reuse", "1"),
    ] {
        if let Err(e) = std::fs::write(path, value) {
            eprintln!("custodian-bench serve: warning: {path}: {e}");
        }
    }
    Ok(())
}

fn non_loopback_interfaces() -> io::Result<Vec<String>> {
    let dev = std::fs::read_to_string("/proc/self/net/dev")?;
    Ok(dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .filter(|n| n != "lo")
        .collect())
}

fn listen(port: u16) -> io::Result<TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))?;
    sock.listen(65535)
}

async fn accept_loop(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                eprintln!("custodian-bench serve: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let kind = match stream.local_addr() {
            Ok(SocketAddr::V4(a)) => kind_of(*a.ip()),
            _ => None,
        };
        match kind {
            // Cheapest kinds are done inline: no task at all.
            None | Some(Kind::Close) => drop(stream),
            Some(Kind::Reset) => {
                // Deprecated because a non-zero linger blocks on drop; zero resets at once.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                drop(stream);
            }
            Some(kind) => {
                tokio::spawn(serve_one(stream, kind));
            }
        }
    }
}

async fn serve_one(mut s: TcpStream, kind: Kind) {
    let _ = match kind {
        Kind::Ssh => greet_then_drain(&mut s, SSH_BANNER).await,
        Kind::Banner => greet_then_drain(&mut s, TCP_BANNER).await,
        Kind::Smtp => dialogue(&mut s, "220 bench.invalid ESMTP\r\n", smtp).await,
        Kind::Pop3 => dialogue(&mut s, "+OK POP3 bench ready\r\n", pop3).await,
        Kind::Imap => dialogue(&mut s, "* OK IMAP4rev1 bench ready\r\n", imap).await,
        Kind::Ftp => dialogue(&mut s, "220 FTP bench ready\r\n", ftp).await,
        Kind::Http => http(&mut s, HTTP_BODY).await,
        Kind::HttpWrong => http(&mut s, "something else\n").await,
        Kind::Hung => drain(&mut s).await,
        Kind::Drip => drip(&mut s).await,
        Kind::Close | Kind::Reset => Ok(()),
    };
}

async fn greet_then_drain(s: &mut TcpStream, banner: &str) -> io::Result<()> {
    s.write_all(banner.as_bytes()).await?;
    drain(s).await
}

/// Reads until the peer closes (or 64 KiB), never answering.
async fn drain(s: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 512];
    let mut total = 0;
    while total < 65536 {
        match s.read(&mut buf).await? {
            0 => break,
            n => total += n,
        }
    }
    Ok(())
}

async fn drip(s: &mut TcpStream) -> io::Result<()> {
    for b in SSH_BANNER.bytes().cycle() {
        s.write_all(&[b]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The reply to one command line, and whether the server closes after it.
type Answer = fn(&str) -> (String, bool);

/// Greets, then answers each line until the answer says to close or the peer closes.
async fn dialogue(s: &mut TcpStream, greeting: &str, answer: Answer) -> io::Result<()> {
    s.write_all(greeting.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..pos]).trim().to_string();
            buf.drain(..=pos);
            let (reply, last) = answer(&line);
            s.write_all(reply.as_bytes()).await?;
            if last {
                return Ok(());
            }
        }
        if buf.len() > 8192 {
            return Ok(());
        }
    }
}

fn verb(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

fn smtp(line: &str) -> (String, bool) {
    match verb(line).as_str() {
        "EHLO" => ("250-bench.invalid\r\n250 PIPELINING\r\n".into(), false),
        "HELO" => ("250 bench.invalid\r\n".into(), false),
        "QUIT" => ("221 bye\r\n".into(), true),
        "DATA" => ("554 no thanks\r\n".into(), false),
        _ => ("250 ok\r\n".into(), false),
    }
}

fn pop3(line: &str) -> (String, bool) {
    match verb(line).as_str() {
        "QUIT" => ("+OK bye\r\n".into(), true),
        "CAPA" => ("+OK\r\nUSER\r\n.\r\n".into(), false),
        _ => ("-ERR no\r\n".into(), false),
    }
}

fn imap(line: &str) -> (String, bool) {
    let mut words = line.split_whitespace();
    let tag = words.next().unwrap_or("*");
    match words.next().unwrap_or("").to_ascii_uppercase().as_str() {
        "LOGOUT" => (format!("* BYE bye\r\n{tag} OK LOGOUT done\r\n"), true),
        "CAPABILITY" => (
            format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
            false,
        ),
        "NOOP" => (format!("{tag} OK done\r\n"), false),
        _ => (format!("{tag} NO no\r\n"), false),
    }
}

fn ftp(line: &str) -> (String, bool) {
    match verb(line).as_str() {
        "QUIT" => ("221 bye\r\n".into(), true),
        _ => ("530 not logged in\r\n".into(), false),
    }
}

/// Reads the request head, answers one fixed HTTP/1.1 200 and closes.
async fn http(s: &mut TcpStream, body: &str) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(reply.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogues_close_on_their_quit_verbs() {
        assert_eq!(smtp("quit"), ("221 bye\r\n".to_string(), true));
        assert!(!smtp("EHLO x").1 && smtp("EHLO x").0.starts_with("250-"));
        assert_eq!(imap("a2 LOGOUT").0, "* BYE bye\r\na2 OK LOGOUT done\r\n");
        assert!(pop3("QUIT").1 && ftp("QUIT").1 && !ftp("USER x").1);
    }
}
