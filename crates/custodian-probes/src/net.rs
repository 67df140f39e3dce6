//! Shared network plumbing for probes: connect and read under the attempt's deadline, with
//! every read bounded in size so a hostile server costs at most its deadline and a few KiB.

use crate::Ctx;
use std::future::Future;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// Longest greeting or reply line we read before calling the server broken.
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// Runs `fut` until the attempt's deadline; on expiry the error says what we were doing.
pub(crate) async fn within<T>(
    cx: &Ctx,
    what: &str,
    fut: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout_at(cx.deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out {what}")),
    }
}

/// The socket address under test: the resolved address and the job's port.
pub(crate) fn sockaddr(cx: &Ctx) -> Result<SocketAddr, String> {
    let ip = cx.addr.ok_or("no address to connect to")?;
    let port = cx.job.port.ok_or("no port to connect to")?;
    Ok(SocketAddr::new(ip, port))
}

/// Opens a TCP connection to the address under test.
pub(crate) async fn connect(cx: &Ctx) -> Result<TcpStream, String> {
    let addr = sockaddr(cx)?;
    within(cx, &format!("connecting to port {}", addr.port()), async {
        let stream = dial(cx, addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    })
    .await
}

/// Opens a TCP connection to `addr` (no deadline of its own: the caller's applies); a failure
/// reads "connect to port N: …" and, when it is ours, marks the attempt's fault.
pub(crate) async fn dial(cx: &Ctx, addr: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| failed(cx, &format!("connect to port {}", addr.port()), &e))
}

/// Whether `e` is our own side failing rather than the target: no descriptor, buffer or
/// memory for a socket, no local address or port, no permission (a raw socket, a local
/// firewall), no support for the address family. Refused, reset, timed out and unreachable
/// are the target's (or its network's) answer.
pub(crate) fn is_local(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), PermissionDenied | AddrNotAvailable | OutOfMemory)
        || matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EAFNOSUPPORT)
        )
}

/// The reason for an I/O error while doing `what`; when the failure is ours ([`is_local`])
/// it is also recorded as the attempt's fault, so the verdict becomes "unknown".
pub(crate) fn failed(cx: &Ctx, what: &str, e: &std::io::Error) -> String {
    let reason = format!("{what}: {}", io_reason(e));
    if is_local(e) {
        cx.fault(reason.clone());
    }
    reason
}

/// A short, stable description of an I/O error (no OS error numbers).
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by peer".into(),
        TimedOut => "timed out".into(),
        UnexpectedEof => "connection closed by peer".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
    }
}

/// Reads one line (up to `\n`) of at most `max` bytes, without the line ending.
/// EOF before any byte, an over-long line or binary garbage is an error. Reads as much as the
/// peer sent at once (bytes after the line are dropped: the caller reads nothing more), into
/// a buffer that starts small and grows only while no line end has come.
pub(crate) async fn read_line<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<String, String> {
    let mut buf = Vec::with_capacity(128);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(max + 1));
        }
        let seen = buf.len();
        let n = r.read_buf(&mut buf).await.map_err(|e| io_reason(&e))?;
        if n == 0 {
            if buf.is_empty() {
                return Err("connection closed by peer before sending anything".into());
            }
            break;
        }
        if let Some(end) = buf[seen..].iter().position(|&b| b == b'\n') {
            buf.truncate(seen + end);
            break;
        }
        if buf.len() > max {
            return Err(format!("line longer than {max} bytes"));
        }
    }
    if buf.len() > max {
        return Err(format!("line longer than {max} bytes"));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    text(&buf)
}

/// Decodes a protocol line, rejecting binary garbage with a clear reason.
pub(crate) fn text(bytes: &[u8]) -> Result<String, String> {
    let s = String::from_utf8_lossy(bytes);
    let bad = s
        .chars()
        .filter(|c| *c == '\u{fffd}' || (c.is_control() && *c != '\t'))
        .count();
    if bad > 0 && bad * 4 >= s.chars().count().max(1) {
        return Err(format!(
            "binary garbage instead of a text reply ({} bytes)",
            bytes.len()
        ));
    }
    Ok(s.into_owned())
}

/// Shortens text for error messages.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn our_own_socket_failures_are_local() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
            libc::EACCES,
            libc::EPERM,
            libc::EAFNOSUPPORT,
        ] {
            assert!(is_local(&Error::from_raw_os_error(errno)), "errno {errno}");
        }
        assert!(is_local(&Error::from(ErrorKind::PermissionDenied)));
    }

    #[test]
    fn the_targets_answers_are_not_local() {
        for errno in [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EPIPE,
        ] {
            assert!(!is_local(&Error::from_raw_os_error(errno)), "errno {errno}");
        }
        assert!(!is_local(&Error::from(ErrorKind::UnexpectedEof)));
    }

    #[tokio::test]
    async fn a_local_failure_faults_the_attempt_and_a_refusal_does_not() {
        let c = testutil::cx(custodian_core::Job::new("tcp", "127.0.0.1", Some(1)), 1.0);
        let why = failed(
            &c,
            "connect to port 1",
            &Error::from_raw_os_error(libc::ECONNREFUSED),
        );
        assert_eq!(why, "connect to port 1: connection refused");
        assert_eq!(c.faulted(), None);
        let why = failed(
            &c,
            "connect to port 1",
            &Error::from_raw_os_error(libc::EMFILE),
        );
        assert_eq!(c.faulted(), Some(why.as_str()));
        assert!(why.starts_with("connect to port 1: "), "{why}");
        let out = c.settle(custodian_core::Outcome::down(why));
        assert!(
            matches!(out, custodian_core::Outcome::Unknown { .. }),
            "{out:?}"
        );
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! In-process servers on 127.0.0.1:0 for probe tests.

    use crate::Ctx;
    use custodian_core::{Job, Outcome};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    pub(crate) const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A context for `job` against 127.0.0.1 with a deadline `secs` from now.
    pub(crate) fn cx(job: Job, secs: f64) -> Ctx {
        Ctx::new_in(
            crate::tls::testca::env(),
            Arc::new(job),
            Some(LOCAL),
            tokio::time::Instant::now() + Duration::from_secs_f64(secs),
        )
    }

    /// A server that runs `handler` for every connection; returns its address.
    pub(crate) async fn serve<F, Fut>(handler: F) -> SocketAddr
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((LOCAL, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(handler(s));
            }
        });
        addr
    }

    /// A server that writes `bytes` and then keeps reading until the client leaves.
    pub(crate) async fn says(bytes: &'static [u8]) -> SocketAddr {
        serve(move |mut s| async move {
            let _ = s.write_all(bytes).await;
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await
    }

    /// A server that accepts and never says anything.
    pub(crate) async fn silent() -> SocketAddr {
        serve(|s| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(s);
        })
        .await
    }

    /// A server that sends endless data (a flood), 64 KiB at a time.
    pub(crate) async fn flood(chunk: &'static [u8]) -> SocketAddr {
        serve(move |mut s| async move {
            let block = chunk.repeat(64 * 1024 / chunk.len().max(1));
            while s.write_all(&block).await.is_ok() {}
        })
        .await
    }

    /// A server that sends `bytes` one byte per `every`.
    pub(crate) async fn trickle(bytes: &'static [u8], every: Duration) -> SocketAddr {
        serve(move |mut s| async move {
            for b in bytes.iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
        })
        .await
    }

    /// What a scripted server heard: each line the client sent, line ending removed.
    pub(crate) type Heard = Arc<Mutex<Vec<String>>>;

    /// A line-protocol server: writes `greeting`, then for every line it hears logs it and
    /// writes `answer(line)`; `None` closes the connection. Returns its address and its log.
    pub(crate) async fn scripted(
        greeting: &'static str,
        answer: fn(&str) -> Option<&'static str>,
    ) -> (SocketAddr, Heard) {
        let heard = Heard::default();
        let log = heard.clone();
        let addr = serve(move |s| {
            let log = log.clone();
            async move {
                let (r, mut w) = s.into_split();
                let _ = w.write_all(greeting.as_bytes()).await;
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().expect("lock").push(line.clone());
                    let Some(reply) = answer(&line) else { break };
                    let _ = w.write_all(reply.as_bytes()).await;
                }
            }
        })
        .await;
        (addr, heard)
    }

    /// A copy of what a scripted server heard so far.
    pub(crate) fn heard(h: &Heard) -> Vec<String> {
        h.lock().expect("lock").clone()
    }

    /// A port whose accept queue is full, so a new connection hangs in the handshake (Linux
    /// drops the SYN). Keep the returned guard alive while the port is in use.
    pub(crate) async fn unanswered() -> (SocketAddr, (TcpListener, TcpStream)) {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind((LOCAL, 0).into()).expect("bind");
        let listener = sock.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let filler = TcpStream::connect(addr).await.expect("fill the queue");
        (addr, (listener, filler))
    }

    /// Whether `out` is Down with a reason containing `needle`.
    pub(crate) fn down_with(out: &Outcome, needle: &str) -> bool {
        matches!(out, Outcome::Down { reason } if reason.contains(needle))
    }

    /// What every TCP probe reports for a port where nothing listens.
    pub(crate) fn refused_on(port: u16) -> Outcome {
        Outcome::down(format!("connect to port {port}: connection refused"))
    }

    /// A port on 127.0.0.1 where nothing listens.
    pub(crate) async fn refused() -> SocketAddr {
        let l = TcpListener::bind((LOCAL, 0)).await.expect("bind");
        let a = l.local_addr().expect("addr");
        drop(l);
        a
    }
}
