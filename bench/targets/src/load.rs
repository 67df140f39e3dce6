//! A connection-rate client for the target server: workers connect to `close` (accept and
//! close) or `banner` targets, read to the end, and count completed connections per second.

use crate::kinds::{addr, Kind};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let names = [
        "--seconds",
        "--concurrency",
        "--kind",
        "--addrs",
        "--port",
        "--server-pid",
    ];
    let (vals, _) = crate::flags(args, &names)?;
    let seconds: f64 = crate::parse_or(&vals[0], 3.0, "--seconds")?;
    let concurrency: usize = crate::parse_or(&vals[1], 256, "--concurrency")?;
    let kind = match vals[2].as_deref().unwrap_or("close") {
        "close" => Kind::Close,
        "banner" => Kind::Banner,
        k => return Err(format!("unknown --kind {k} (close or banner)")),
    };
    let addrs: usize = crate::parse_or(&vals[3], 5000, "--addrs")?;
    let port: u16 = crate::parse_or(&vals[4], 7000, "--port")?;
    let server: Option<u32> = vals[5]
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|_| "bad --server-pid")?;
    let server_cpu0 = server.and_then(cpu_seconds);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let done = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut workers = Vec::new();
        for w in 0..concurrency {
            let (done, errors) = (done.clone(), errors.clone());
            workers.push(tokio::task::spawn_local(async move {
                let mut j = w;
                let mut chunk = [0u8; 256];
                while Instant::now() < end {
                    let to = SocketAddr::new(addr(kind, j % addrs.max(1)).into(), port);
                    j += concurrency;
                    match TcpStream::connect(to).await {
                        Ok(mut s) => {
                            // A banner target waits for us to close: stop at its line.
                            while let Ok(n) = s.read(&mut chunk).await {
                                if n == 0 || chunk[..n].contains(&b'\n') {
                                    break;
                                }
                            }
                            done.set(done.get() + 1);
                        }
                        Err(_) => errors.set(errors.get() + 1),
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "load: {} connections in {secs:.2} s = {:.0} connections/s ({} errors, {concurrency} in flight, kind {kind:?})",
        done.get(),
        done.get() as f64 / secs,
        errors.get()
    );
    if let (Some(pid), Some(before)) = (server, server_cpu0) {
        let used = cpu_seconds(pid).unwrap_or(before) - before;
        let per = used / done.get().max(1) as f64;
        println!(
            "server: {used:.2} s CPU = {:.1} us a connection, so one core serves {:.0} connections/s",
            per * 1e6,
            if per > 0.0 { 1.0 / per } else { f64::INFINITY }
        );
    }
    Ok(())
}

/// User + system CPU seconds of a process, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}
