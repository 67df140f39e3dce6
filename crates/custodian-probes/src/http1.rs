//! One HTTP/1.1 exchange for the `http` and `https` probes: a request written on a fresh
//! connection, the response head parsed with httparse, the body framed by Content-Length,
//! chunked coding or the connection's end, gzip decoded, every part bounded in size.
//!
//! Spoken by hand rather than through reqwest (issue 13): a check sends one request per
//! connection and reads one response, and reqwest's client, pool and hyper's connection task
//! held about 31 KB per check in flight and most of an http check's CPU. Here a check holds
//! its request and a read buffer that starts at 1 KiB. The limits are hyper's (head size,
//! header count), so a server that passed before still passes.

use crate::net;
use crate::tls::Stream;
use std::io::Write;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head (status line and headers): hyper's default buffer limit.
const MAX_HEAD: usize = 8192 + 4096 * 100;

/// Most header fields in one response head: hyper's default.
const MAX_HEADERS: usize = 100;

/// First read buffer; it doubles while a head or a chunk line needs more, up to [`READ_MAX`].
const READ_START: usize = 1024;

/// Most bytes asked of the socket in one read once the buffer has grown.
const READ_MAX: usize = 16 * 1024;

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// The parts of a response head the probes use.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// The first `Location` header, when it is visible ASCII.
    pub(crate) location: Option<String>,
    framing: Framing,
    gzip: bool,
}

/// A response whose head has been read; the body is still on the connection (a socket, or
/// the fuzz targets' bytes).
pub(crate) struct Response<S = Stream> {
    pub(crate) head: Head,
    conn: Conn<S>,
}

/// The connection with the bytes read but not yet used.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
}

impl<S: AsyncRead + Unpin> Conn<S> {
    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes after the unread ones; 0 at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let spare = self.buf.capacity() - self.buf.len();
        if spare < READ_START {
            let grow = self.buf.capacity().clamp(READ_START, READ_MAX);
            self.buf.reserve_exact(grow);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// Writes `request` (head and body, as built by the caller) and reads the final response's
/// head, skipping interim 1xx answers. `head_request` says the request was HEAD, whose
/// response has no body whatever its headers say.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    head_request: bool,
) -> Result<Response<S>, String> {
    let sent = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    sent.await
        .map_err(|e| format!("sending the request: {}", net::io_reason(&e)))?;
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(READ_START),
        pos: 0,
    };
    loop {
        let head = read_head(&mut conn, head_request).await?;
        // 101 ends HTTP on this connection: it is the answer to judge, as hyper treats it.
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        return Ok(Response { head, conn });
    }
}

/// Reads and parses one response head. A head is parsed when its end may have arrived, or
/// when the unread bytes have doubled since the last try (so garbage fails at once, not at
/// the timeout); a server feeding it a byte at a time still costs linear, not quadratic, work.
async fn read_head<S: AsyncRead + Unpin>(
    conn: &mut Conn<S>,
    head_request: bool,
) -> Result<Head, String> {
    let mut searched: usize = 0;
    let mut tried: usize = 0;
    loop {
        let data = conn.unread();
        let from = searched.saturating_sub(3);
        if !data.is_empty() && (data.len() >= tried * 2 || has_head_end(&data[from..])) {
            tried = data.len();
            if let Some((len, head)) = parse_head(data, head_request)? {
                conn.consume(len);
                return Ok(head);
            }
        }
        searched = data.len();
        if searched > MAX_HEAD {
            return Err("bad HTTP reply: message head is too large".into());
        }
        match conn.fill().await {
            Ok(0) => {
                return Err("bad HTTP reply: connection closed before message completed".into())
            }
            Ok(_) => {}
            Err(e) => return Err(format!("bad HTTP reply: {}", net::io_reason(&e))),
        }
    }
}

/// Whether `data` holds the blank line that ends a head (`\n\r\n` or a bare `\n\n`).
fn has_head_end(data: &[u8]) -> bool {
    data.windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && data.get(i + 2) == Some(&b'\n')))
}

/// Parses a complete head at the start of `data`: its length and meaning; `None` when more
/// bytes are needed.
fn parse_head(data: &[u8], head_request: bool) -> Result<Option<(usize, Head)>, String> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP reply: {}", parse_error(e))),
    };
    let status = resp.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err("bad HTTP reply: invalid HTTP status-code parsed".into());
    }
    let mut location = None;
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut gzip = false;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("location") {
            if location.is_none() {
                location = visible(h.value).map(str::to_string);
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if length.is_some_and(|l| l != n) {
                return Err("bad HTTP reply: invalid content-length parsed".into());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides: chunked must come last to frame the body.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("content-encoding") {
            gzip = h.value.trim_ascii().eq_ignore_ascii_case(b"gzip");
        }
    }
    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            // A transfer coding without chunked last: the body runs to the end (RFC 9112 6.3).
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    let head = Head {
        status,
        location,
        framing,
        gzip,
    };
    Ok(Some((len, head)))
}

/// hyper's wording of a parse failure, which reasons have always used.
fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::Status => "invalid HTTP status-code parsed",
        httparse::Error::Version => "invalid HTTP version parsed",
        httparse::Error::TooManyHeaders => "message head is too large",
        _ => "invalid HTTP header parsed",
    }
}

/// A header value as text, when it is visible ASCII (as `HeaderValue::to_str` requires).
fn visible(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (32..127).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

fn content_length(value: &[u8]) -> Result<u64, String> {
    let digits = value.trim_ascii();
    let bad = || "bad HTTP reply: invalid content-length parsed".to_string();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

impl<S: AsyncRead + Unpin> Response<S> {
    /// Reads at most `cap` bytes of the (decoded) body; the flag says whether it went on past
    /// the cap. Errors are worded for "reading the body: …".
    pub(crate) async fn body(mut self, cap: usize) -> Result<(Vec<u8>, bool), String> {
        let mut sink = Sink::new(self.head.gzip, cap);
        match self.head.framing {
            Framing::Empty => {}
            Framing::Length(n) => self.conn.copy(n, &mut sink).await?,
            Framing::Close => self.conn.copy(u64::MAX, &mut sink).await?,
            Framing::Chunked => self.conn.chunked(&mut sink).await?,
        }
        sink.finish()
    }
}

impl<S: AsyncRead + Unpin> Conn<S> {
    /// Copies up to `n` body bytes (`u64::MAX`: to the end of the stream) into `sink`, or
    /// until the sink is full. A short body is an error unless it runs to the end.
    async fn copy(&mut self, mut n: u64, sink: &mut Sink) -> Result<(), String> {
        let to_end = n == u64::MAX;
        loop {
            let take = self
                .unread()
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            if take > 0 {
                sink.push(&self.buf[self.pos..self.pos + take])?;
                self.consume(take);
                n -= take as u64;
                if sink.full() {
                    return Ok(());
                }
            }
            if n == 0 {
                return Ok(());
            }
            match self.fill().await {
                Ok(0) if to_end => return Ok(()),
                Ok(0) => return Err("end of file before message length reached".into()),
                Ok(_) => {}
                Err(e) => return Err(net::io_reason(&e)),
            }
        }
    }

    /// Decodes a chunked body into `sink`, or until the sink is full.
    async fn chunked(&mut self, sink: &mut Sink) -> Result<(), String> {
        loop {
            let line = self.line().await?;
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailer fields until the blank line; their content is of no use here.
                let mut trailers = 0;
                while !self.line().await?.is_empty() {
                    trailers += 1;
                    if trailers > MAX_HEADERS {
                        return Err("too many trailer fields".into());
                    }
                }
                return Ok(());
            }
            self.copy(size, sink).await?;
            if sink.full() {
                return Ok(());
            }
            if !self.line().await?.is_empty() {
                return Err("invalid chunk end".into());
            }
        }
    }

    /// One CRLF-ended line of a chunked body, without its ending.
    async fn line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(end) = self.unread().iter().position(|&b| b == b'\n') {
                let mut line = self.unread()[..end].to_vec();
                self.consume(end + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.unread().len() > MAX_CHUNK_LINE {
                return Err("invalid chunk size line: too long".into());
            }
            match self.fill().await {
                Ok(0) => return Err("end of file in a chunked body".into()),
                Ok(_) => {}
                Err(e) => return Err(net::io_reason(&e)),
            }
        }
    }
}

/// The size of a chunk from its line (hex digits, then optional `;extensions`).
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let hex = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let bad = || "invalid chunk size line".to_string();
    if hex.is_empty() || hex.len() > 15 {
        return Err(bad());
    }
    std::str::from_utf8(hex)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(bad)
}

/// Where body bytes go: kept as they are, or gunzipped first.
enum Sink {
    Plain(Capped),
    Gzip {
        decoder: Box<flate2::write::MultiGzDecoder<Capped>>,
        /// Compressed bytes fed so far.
        fed: usize,
    },
}

impl Sink {
    fn new(gzip: bool, cap: usize) -> Self {
        if gzip {
            Sink::Gzip {
                decoder: Box::new(flate2::write::MultiGzDecoder::new(Capped::new(cap))),
                fed: 0,
            }
        } else {
            Sink::Plain(Capped::new(cap))
        }
    }

    /// Whether the decoded body went past the cap: reading more would change nothing.
    fn full(&self) -> bool {
        match self {
            Sink::Plain(c) => c.over,
            Sink::Gzip { decoder, .. } => decoder.get_ref().over,
        }
    }

    /// Takes body bytes as sent.
    fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Sink::Plain(c) => c.keep(bytes),
            Sink::Gzip { decoder, fed } => {
                *fed += bytes.len();
                decoder
                    .write_all(bytes)
                    .map_err(|e| format!("bad gzip body: {e}"))?;
            }
        }
        Ok(())
    }

    /// The decoded body and whether it went on past the cap. A gzip stream that the body's
    /// end left unfinished is an error; one cut at the cap is not.
    fn finish(self) -> Result<(Vec<u8>, bool), String> {
        match self {
            Sink::Plain(c) => Ok((c.out, c.over)),
            Sink::Gzip { mut decoder, fed } => {
                if !decoder.get_ref().over && fed > 0 {
                    decoder
                        .try_finish()
                        .map_err(|e| format!("bad gzip body: {e}"))?;
                }
                let c = decoder.get_mut();
                Ok((std::mem::take(&mut c.out), c.over))
            }
        }
    }
}

/// A body buffer that keeps at most `cap` bytes and remembers whether more came.
struct Capped {
    out: Vec<u8>,
    cap: usize,
    over: bool,
}

impl Capped {
    fn new(cap: usize) -> Self {
        Capped {
            out: Vec::new(),
            cap,
            over: false,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = self.cap - self.out.len();
        self.out.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.over |= bytes.len() > room;
    }
}

impl Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.keep(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
