//! Helpers: run the built binary, write test files, tiny loopback servers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `custodian ARGS` in `dir` and captures everything.
pub(crate) fn custodian(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .current_dir(dir)
        .env_remove("CUSTODIAN_LOG")
        .output()
        .expect("run custodian");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temp dir holding `name` with `text`.
pub(crate) fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

/// A loopback server that greets every client with `greeting`; counts connections.
pub(crate) fn greeter(greeting: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(greeting.as_bytes());
            let mut buf = [0u8; 256];
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = s.read(&mut buf);
        }
    });
    (addr, count)
}

/// A loopback port with nothing listening.
pub(crate) fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
