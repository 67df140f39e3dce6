//! A minimal Redis (RESP2) client: encode commands, read replies, pipeline.

use custodian_core::queue::QueueError;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// Longest any single exchange with the broker may take before the connection counts as dead.
const IO_LIMIT: Duration = Duration::from_secs(10);

/// Largest bulk reply we accept (a job body is a few hundred bytes).
const MAX_BULK: usize = 64 * 1024 * 1024;

/// Longest reply line (status, error or length) we read: real ones are short, and a broker
/// that never sends a newline must not fill our memory.
const MAX_LINE: u64 = 64 * 1024;

/// Deepest nesting of arrays we follow (stream replies nest four deep): every level is a
/// recursive poll, so a peer's `*1` repeated must not overflow our stack.
const MAX_DEPTH: usize = 16;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Error(String),
}

impl Value {
    pub(crate) fn int(&self) -> Result<i64, QueueError> {
        match self {
            Value::Int(n) => Ok(*n),
            Value::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| protocol("a number", self)),
            _ => Err(protocol("a number", self)),
        }
    }

    pub(crate) fn ok(self) -> Result<Value, QueueError> {
        match self {
            Value::Error(e) => Err(classify(e)),
            v => Ok(v),
        }
    }
}

/// Sorts an error reply: a refusal that retrying cannot cure (credentials, a database that
/// does not exist, permissions), a passing state worth waiting out (loading, a busy script,
/// a replica catching up), or anything else (a protocol error).
pub(crate) fn classify(e: String) -> QueueError {
    let upper = e.to_ascii_uppercase();
    let code = upper.split_whitespace().next().unwrap_or_default();
    let refused = matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM")
        || [
            "ERR INVALID PASSWORD",
            "ERR DB INDEX IS OUT OF RANGE",
            "ERR INVALID DB INDEX",
            "ERR CLIENT SENT AUTH, BUT NO PASSWORD IS SET",
            "ERR AUTH <PASSWORD> CALLED WITHOUT ANY PASSWORD CONFIGURED",
            "ERR SELECT IS NOT ALLOWED IN CLUSTER MODE",
            "ERR UNKNOWN COMMAND",
        ]
        .iter()
        .any(|p| upper.starts_with(p));
    if refused {
        QueueError::Refused(e)
    } else if matches!(
        code,
        "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY"
    ) {
        QueueError::Unavailable(e)
    } else {
        QueueError::Protocol(e)
    }
}

pub(crate) fn protocol(want: &str, got: &Value) -> QueueError {
    QueueError::Protocol(format!("expected {want}, got {got:?}"))
}

/// One connection.
pub(crate) struct Conn {
    io: BufStream<TcpStream>,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl Conn {
    pub(crate) async fn connect(addr: &str) -> Result<Conn, QueueError> {
        let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
            .await
            .map_err(|_| unavailable(format!("connecting to {addr} timed out")))?
            .map_err(|e| unavailable(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            io: BufStream::new(stream),
        })
    }

    /// Sends every command, then reads one reply per command.
    pub(crate) async fn pipeline(
        &mut self,
        cmds: &[Vec<Vec<u8>>],
    ) -> Result<Vec<Value>, QueueError> {
        let work = async {
            for cmd in cmds {
                self.io.write_all(&encode(cmd)).await?;
            }
            self.io.flush().await?;
            let mut out = Vec::with_capacity(cmds.len());
            for _ in cmds {
                out.push(read(&mut self.io, 0).await?);
            }
            Ok::<_, std::io::Error>(out)
        };
        match tokio::time::timeout(IO_LIMIT, work).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(unavailable("the broker stopped answering")),
        }
    }

    pub(crate) async fn call(&mut self, cmd: Vec<Vec<u8>>) -> Result<Value, QueueError> {
        let mut replies = self.pipeline(&[cmd]).await?;
        replies.pop().ok_or_else(|| unavailable("no reply"))?.ok()
    }
}

/// Builds a command from its words.
pub(crate) fn cmd<I, W>(words: I) -> Vec<Vec<u8>>
where
    I: IntoIterator<Item = W>,
    W: AsRef<[u8]>,
{
    words.into_iter().map(|w| w.as_ref().to_vec()).collect()
}

fn encode(cmd: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", cmd.len()).into_bytes();
    for w in cmd {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

type Reply<'a> = Pin<Box<dyn Future<Output = std::io::Result<Value>> + Send + 'a>>;

/// Reads one reply, `depth` arrays deep (crate-visible for the fuzz target, which includes
/// this file).
pub(crate) fn read<R: AsyncBufRead + Unpin + Send>(io: &mut R, depth: usize) -> Reply<'_> {
    Box::pin(async move {
        let mut line = Vec::new();
        let n = (&mut *io)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(bad("connection closed"));
        }
        if n as u64 == MAX_LINE && line.last() != Some(&b'\n') {
            return Err(bad("reply line too long"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        // Split after the first character, not byte: a peer's line may open with any UTF-8.
        let (kind, rest) = text.split_at(text.chars().next().map_or(0, char::len_utf8));
        let num = || rest.parse::<i64>().map_err(|_| bad("bad length"));
        match kind {
            "+" => Ok(Value::Bytes(rest.as_bytes().to_vec())),
            "-" => Ok(Value::Error(rest.to_string())),
            ":" => Ok(Value::Int(num()?)),
            "$" if num()? < 0 => Ok(Value::Nil),
            "$" => {
                let n = usize::try_from(num()?).map_err(|_| bad("bad length"))?;
                if n > MAX_BULK {
                    return Err(bad("reply too large"));
                }
                let mut buf = vec![0; n + 2];
                io.read_exact(&mut buf).await?;
                buf.truncate(n);
                Ok(Value::Bytes(buf))
            }
            "*" if num()? < 0 => Ok(Value::Nil),
            "*" if depth >= MAX_DEPTH => Err(bad("replies nested too deep")),
            "*" => {
                let mut items = Vec::new();
                for _ in 0..num()? {
                    items.push(read(io, depth + 1).await?);
                }
                Ok(Value::Array(items))
            }
            _ => Err(bad("unknown reply type")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&cmd(["GET", "k"])),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }

    #[test]
    fn refusals_are_told_from_passing_trouble() {
        let kind = |e: &str| match classify(e.into()) {
            QueueError::Refused(_) => "refused",
            QueueError::Unavailable(_) => "transient",
            _ => "protocol",
        };
        assert_eq!(kind("NOAUTH Authentication required."), "refused");
        assert_eq!(
            kind("WRONGPASS invalid username-password pair or user is disabled."),
            "refused"
        );
        assert_eq!(kind("ERR invalid password"), "refused");
        assert_eq!(kind("ERR DB index is out of range"), "refused");
        assert_eq!(kind("NOPERM this user has no permissions"), "refused");
        assert_eq!(
            kind("LOADING Redis is loading the dataset in memory"),
            "transient"
        );
        assert_eq!(kind("BUSY Redis is busy running a script"), "transient");
        assert_eq!(kind("ERR Error running script"), "protocol");
    }

    #[tokio::test]
    async fn replies_of_every_kind_are_read() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"*4\r\n:7\r\n$3\r\nabc\r\n$-1\r\n-ERR no\r\n")
                .await;
        });
        let mut c = Conn::connect(&addr).await.expect("connect");
        let v = c.call(cmd(["X"])).await.expect("reply");
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Int(7),
                Value::Bytes(b"abc".to_vec()),
                Value::Nil,
                Value::Error("ERR no".into())
            ])
        );
    }

    /// Bytes of payload in a reply, to bound it by what was read.
    fn size(v: &Value) -> usize {
        match v {
            Value::Nil | Value::Int(_) => 0,
            Value::Bytes(b) => b.len(),
            Value::Error(e) => e.len(),
            Value::Array(items) => items.len() + items.iter().map(size).sum::<usize>(),
        }
    }

    /// Random and mutated replies, read back to back as a pipeline reads them: never a panic,
    /// and every reply is bounded by the bytes it came from.
    #[tokio::test]
    async fn fuzzed_replies_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"*4\r\n:7\r\n$3\r\nabc\r\n$-1\r\n-ERR no\r\n",
            b"*1\r\n*2\r\n$5\r\njobs:\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\nbody\r\n$2\r\n{}\r\n",
            b"+OK\r\n:1\r\n$-1\r\n*-1\r\n",
        ];
        let mut values = 0;
        for input in custodian_testpeers::fuzz::collect(0x6379, &seeds) {
            let mut io = input.as_slice();
            while let Ok(v) = read(&mut io, 0).await {
                values += 1;
                // Invalid UTF-8 in a status line grows by at most 3 bytes a byte.
                assert!(size(&v) <= 3 * input.len(), "{v:?} from {input:?}");
            }
        }
        assert!(values > 0);
    }

    #[tokio::test]
    async fn deep_nesting_and_endless_lines_are_refused() {
        let deep = b"*1\r\n".repeat(100_000);
        let e = read(&mut deep.as_slice(), 0).await.expect_err("too deep");
        assert_eq!(e.to_string(), "replies nested too deep");
        let nested = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        assert!(read(&mut nested.as_slice(), 0).await.is_ok());
        let long = [b"+".as_slice(), &[b'a'; 100_000]].concat();
        let e = read(&mut long.as_slice(), 0).await.expect_err("too long");
        assert_eq!(e.to_string(), "reply line too long");
        assert_eq!(
            read(&mut b"+unterminated".as_slice(), 0)
                .await
                .expect("read"),
            Value::Bytes(b"unterminated".to_vec())
        );
    }
}
