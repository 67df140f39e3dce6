//! The little of Redis's RESP protocol the redis alerter needs: encode commands, read replies.

use crate::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Largest bulk reply read.
const MAX_BULK: usize = 1 << 20;

/// Deepest nesting of arrays followed: every level is a recursive poll, so a peer's `*1`
/// repeated must not overflow our stack (our commands get flat replies).
const MAX_DEPTH: usize = 8;

/// One reply; errors (`-ERR ...`) become [`Error::Rejected`] when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// A command as a RESP array of bulk strings.
pub(crate) fn encode(words: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply.
pub(crate) async fn read<R: AsyncBufRead + Unpin + Send>(io: &mut R) -> Result<Reply, Error> {
    read_nested(io, 0).await
}

/// Reads one reply, `depth` arrays deep.
async fn read_nested<R: AsyncBufRead + Unpin + Send>(
    io: &mut R,
    depth: usize,
) -> Result<Reply, Error> {
    let line = read_line(io).await?;
    // Split after the first character, not byte: a peer's line may open with any UTF-8.
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    let num = || {
        rest.parse::<i64>()
            .map_err(|_| Error::Rejected(format!("bad RESP line {line:?}")))
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_string())),
        "-" => Err(Error::Rejected(rest.to_string())),
        ":" => Ok(Reply::Int(num()?)),
        "$" => read_bulk(io, num()?).await,
        "*" if depth >= MAX_DEPTH => Err(Error::Rejected("replies nested too deep".into())),
        "*" => {
            let mut items = Vec::new();
            for _ in 0..num()?.max(0) {
                items.push(Box::pin(read_nested(io, depth + 1)).await?);
            }
            Ok(Reply::Array(items))
        }
        _ => Err(Error::Rejected(format!("bad RESP line {line:?}"))),
    }
}

async fn read_bulk<R: AsyncBufRead + Unpin + Send>(io: &mut R, len: i64) -> Result<Reply, Error> {
    let Ok(len) = usize::try_from(len) else {
        return Ok(Reply::Bulk(None));
    };
    if len > MAX_BULK {
        return Err(Error::Rejected(format!("bulk reply of {len} bytes")));
    }
    let mut buf = vec![0; len + 2];
    io.read_exact(&mut buf).await?;
    buf.truncate(len);
    Ok(Reply::Bulk(Some(buf)))
}

async fn read_line<R: AsyncBufRead + Unpin>(io: &mut R) -> Result<String, Error> {
    let mut line = String::new();
    let n = io.take(64 * 1024).read_line(&mut line).await?;
    if n == 0 {
        return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_of_every_kind_are_read() {
        let mut input: &[u8] = b"+OK\r\n:3\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n+x\r\n-ERR no\r\n";
        assert_eq!(
            read(&mut input).await.ok(),
            Some(Reply::Simple("OK".into()))
        );
        assert_eq!(read(&mut input).await.ok(), Some(Reply::Int(3)));
        assert_eq!(
            read(&mut input).await.ok(),
            Some(Reply::Bulk(Some(b"abc".to_vec())))
        );
        assert_eq!(read(&mut input).await.ok(), Some(Reply::Bulk(None)));
        let arr = Reply::Array(vec![Reply::Int(1), Reply::Simple("x".into())]);
        assert_eq!(read(&mut input).await.ok(), Some(arr));
        assert!(matches!(read(&mut input).await, Err(Error::Rejected(m)) if m == "ERR no"));
        assert_eq!(
            encode(&["GET".into(), "k".into()]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }

    #[tokio::test]
    async fn deep_nesting_is_refused() {
        let deep = b"*1\r\n".repeat(100_000);
        let e = read(&mut deep.as_slice()).await.expect_err("too deep");
        assert!(matches!(e, Error::Rejected(m) if m == "replies nested too deep"));
        let nested = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        assert!(read(&mut nested.as_slice()).await.is_ok());
        // A line opening with a multi-byte character is refused, not split inside it.
        let e = read(&mut "ع1\r\n".as_bytes()).await.expect_err("bad type");
        assert!(matches!(e, Error::Rejected(m) if m.starts_with("bad RESP line")));
    }

    /// Random and mutated replies, read back to back as the alerter reads them: never a
    /// panic, and every reply bounded by the bytes it came from.
    #[test]
    fn fuzzed_replies_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"*3\r\n$7\r\nmessage\r\n$6\r\nalerts\r\n:1\r\n",
            b"+OK\r\n:3\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n",
            b"*2\r\n*1\r\n$2\r\nhi\r\n-ERR no\r\n",
        ];
        let mut replies = 0;
        custodian_testpeers::fuzz::inputs(0x6380, &seeds, |input| {
            replies += crate::fuzzing::resp_replies(input);
        });
        assert!(replies > 1000, "{replies}");
    }
}
