//! The floor client: only the wire work of each check (connect; read the banner, or send a fixed
//! request and read the reply; close) on a single-threaded runtime, with a fixed number of
//! workers pulling targets from one list. What custodian costs above this is its own overhead.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Read the first line; it must start with `arg`.
    Banner,
    /// A `220` greeting, then EHLO and QUIT pipelined and the reply read to the end.
    Smtp,
    /// GET /, the reply read to the end: a 200 containing `arg`.
    Http,
}

struct Target {
    action: Action,
    addr: SocketAddr,
    expect_pass: bool,
    arg: String,
}

/// Parses the TSV written by `gen-checks`: action, address, port, pass|fail, argument.
fn parse(text: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            return Err(format!("line {}: expected 5 tab-separated fields", i + 1));
        }
        let action = match f[0] {
            "banner" => Action::Banner,
            "smtp" => Action::Smtp,
            "http" => Action::Http,
            other => return Err(format!("line {}: unknown action {other}", i + 1)),
        };
        let addr = format!("{}:{}", f[1], f[2])
            .parse()
            .map_err(|_| format!("line {}: bad address", i + 1))?;
        out.push(Target {
            action,
            addr,
            expect_pass: f[3] == "pass",
            arg: f[4].to_string(),
        });
    }
    Ok(out)
}

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let (vals, rest) = crate::flags(args, &["--concurrency", "--timeout"])?;
    let concurrency: usize = crate::parse_or(&vals[0], 5000, "--concurrency")?;
    let timeout = Duration::from_secs_f64(crate::parse_or(&vals[1], 5.0, "--timeout")?);
    let [path] = rest.as_slice() else {
        return Err("usage: floor [--concurrency N] [--timeout S] TSV".into());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let targets = Rc::new(parse(&text)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let next = Rc::new(Cell::new(0usize));
    let passed = Rc::new(Cell::new(0usize));
    let correct = Rc::new(Cell::new(0usize));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut workers = Vec::new();
        for _ in 0..concurrency.clamp(1, targets.len().max(1)) {
            let (targets, next, passed, correct) = (
                targets.clone(),
                next.clone(),
                passed.clone(),
                correct.clone(),
            );
            workers.push(tokio::task::spawn_local(async move {
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let i = next.get();
                    let Some(t) = targets.get(i) else { break };
                    next.set(i + 1);
                    let ok = tokio::time::timeout(timeout, probe(t, &mut buf))
                        .await
                        .unwrap_or(false);
                    passed.set(passed.get() + usize::from(ok));
                    correct.set(correct.get() + usize::from(ok == t.expect_pass));
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    });
    let n = targets.len();
    println!(
        "floor: targets {n} passed {} failed {} correct {} of {n}",
        passed.get(),
        n - passed.get(),
        correct.get()
    );
    Ok(())
}

async fn probe(t: &Target, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let Ok(mut s) = TcpStream::connect(t.addr).await else {
        return false;
    };
    match t.action {
        Action::Banner => read_line(&mut s, buf).await && buf.starts_with(t.arg.as_bytes()),
        Action::Smtp => {
            if !read_line(&mut s, buf).await || !buf.starts_with(b"220") {
                return false;
            }
            buf.clear();
            s.write_all(b"EHLO floor.invalid\r\nQUIT\r\n").await.is_ok()
                && read_to_end(&mut s, buf).await
                && buf.starts_with(b"250")
        }
        Action::Http => {
            let req = format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                t.addr.ip()
            );
            s.write_all(req.as_bytes()).await.is_ok()
                && read_to_end(&mut s, buf).await
                && buf.starts_with(b"HTTP/1.1 200")
                && buf
                    .windows(t.arg.len().max(1))
                    .any(|w| w == t.arg.as_bytes())
        }
    }
}

/// Reads until a newline arrives (true) or the peer closes/errs first (false).
async fn read_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 1024];
    while !buf.contains(&b'\n') {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 4096 {
            return false;
        }
    }
    true
}

/// Reads until the peer closes (up to 64 KiB); false on an error.
async fn read_to_end(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => return true,
            Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 65536 {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_generated_list_and_rejects_junk() {
        let t =
            parse("http\t127.16.0.1\t80\tpass\tok\nbanner\t127.20.0.1\t22\tfail\tSSH-\n").unwrap();
        assert_eq!(t.len(), 2);
        assert!(t[0].action == Action::Http && t[0].expect_pass);
        assert!(!t[1].expect_pass && t[1].addr.port() == 22);
        assert!(parse("ping\t127.0.0.1\t1\tpass\tx\n").is_err());
        assert!(parse("banner\t127.0.0.1\n").is_err());
    }
}
