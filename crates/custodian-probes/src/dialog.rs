//! Send/expect engine for banner protocols (ssh, smtp, and later imap, pop3, ftp): a pure,
//! bounded line splitter and numeric-reply parser, and a thin async driver over any byte stream.
//!
//! Dialogs run over a [`Stream`] (plain or TLS): [`Dialog::open`] connects with or without
//! implicit TLS, and [`Dialog::starttls`] upgrades the same socket in place. Every wait ends at
//! the attempt's deadline and every buffer is bounded, so a hostile server costs at most the
//! deadline and a few KiB.

use crate::net::{self, MAX_LINE};
use crate::tls::{self, Stream, Verify};
use crate::Ctx;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Most lines one numeric reply may have (a real EHLO reply has about a dozen).
pub(crate) const MAX_REPLY_LINES: usize = 100;

/// Most bytes one numeric reply may have, all lines together.
pub(crate) const MAX_REPLY_BYTES: usize = 32 * 1024;

/// Most bytes one read takes from the socket.
const READ_CHUNK: usize = 4096;

/// The smallest room a read is given: a greeting or reply line fits, so most dialogs never
/// grow their buffer.
const MIN_READ: usize = 512;

/// An incomplete line this long is judged for binary garbage before its end arrives.
const GARBAGE_PEEK: usize = 16;

/// How long `close` waits for the server to finish, so it logs a clean disconnect.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Most bytes `close` drains from a server that keeps talking after we said goodbye.
const CLOSE_DRAIN: usize = 64 * 1024;

/// A complete numeric reply (`250-first` … `250 last`): its code and its lines as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    /// Each line as the server wrote it, code included, line ending removed.
    pub(crate) lines: Vec<String>,
}

impl Reply {
    /// The reply as one text, lines joined with `\n` (for banner regexes).
    pub(crate) fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The reply quoted and shortened, for failure reasons.
    pub(crate) fn quoted(&self) -> String {
        format!("{:?}", net::clip(&self.text()))
    }

    /// Passes when the reply has `code`; otherwise the reason quotes it, naming it `what`.
    pub(crate) fn expect(&self, code: u16, what: &str) -> Result<(), String> {
        if self.code == code {
            Ok(())
        } else {
            Err(format!("{what} is not {code}: {}", self.quoted()))
        }
    }
}

/// Splits one reply line into its code and whether it ends the reply (`NNN ` or bare `NNN`)
/// rather than continuing it (`NNN-`).
pub(crate) fn parse_reply_line(line: &str) -> Result<(u16, bool), String> {
    let b = line.as_bytes();
    let digits = b.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
    let last = match b.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(malformed(line)),
    };
    match digits {
        Some(d) if (b'1'..=b'5').contains(&d[0]) => {
            let code = d.iter().fold(0u16, |n, c| n * 10 + u16::from(c - b'0'));
            Ok((code, last))
        }
        _ => Err(malformed(line)),
    }
}

fn malformed(line: &str) -> String {
    format!("malformed reply line {:?}", net::clip(line))
}

/// Collects reply lines until the last one, within [`MAX_REPLY_LINES`] and [`MAX_REPLY_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct ReplyParser {
    lines: Vec<String>,
    bytes: usize,
}

impl ReplyParser {
    /// Takes the next line; returns the reply when this line ends it.
    pub(crate) fn push(&mut self, line: String) -> Result<Option<Reply>, String> {
        let (code, last) = parse_reply_line(&line)?;
        if let Some(first) = self.lines.first() {
            if !first.starts_with(&line[..3]) {
                return Err(format!(
                    "reply code changed within one reply: {:?} then {:?}",
                    net::clip(first),
                    net::clip(&line)
                ));
            }
        }
        self.bytes += line.len();
        self.lines.push(line);
        if last {
            self.bytes = 0;
            let lines = std::mem::take(&mut self.lines);
            return Ok(Some(Reply { code, lines }));
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(format!("reply longer than {MAX_REPLY_LINES} lines"));
        }
        if self.bytes > MAX_REPLY_BYTES {
            return Err(format!("reply longer than {MAX_REPLY_BYTES} bytes"));
        }
        Ok(None)
    }
}

/// Bytes received but not yet taken as lines; holds at most one line plus one read.
#[derive(Debug, Default)]
pub(crate) struct LineBuf {
    buf: Vec<u8>,
}

impl LineBuf {
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads what `r` has straight into the buffer's free room, which grows only as lines
    /// need (the buffer holds at most one line plus one read): no chunk of the worst case's
    /// size sits in every dialog.
    pub(crate) async fn read_from<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> std::io::Result<usize> {
        self.buf
            .reserve(READ_CHUNK.min(self.buf.len().max(MIN_READ)));
        r.read_buf(&mut self.buf).await
    }

    /// The next complete line of at most `max` bytes, without its ending; `Ok(None)` when
    /// more bytes are needed. Over-long lines and binary garbage are errors, found as early
    /// as the bytes allow.
    pub(crate) fn next_line(&mut self, max: usize) -> Result<Option<String>, String> {
        let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > max {
                return Err(format!("line longer than {max} bytes"));
            }
            if self.buf.len() >= GARBAGE_PEEK {
                net::text(&self.buf)?;
            }
            return Ok(None);
        };
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > max {
            return Err(format!("line longer than {max} bytes"));
        }
        net::text(&line).map(Some)
    }
}

/// One conversation with a server: lines and replies in, commands out.
pub(crate) struct Dialog<S> {
    stream: S,
    pending: LineBuf,
}

impl Dialog<Stream> {
    /// Connects to the address under test; with `implicit_tls` the TLS handshake (verified as
    /// the job's options say) comes before any protocol byte.
    pub(crate) async fn open(cx: &Ctx, implicit_tls: bool) -> Result<Self, String> {
        let tcp = net::connect(cx).await?;
        if !implicit_tls {
            return Ok(Dialog::new(Box::new(tcp)));
        }
        // Boxed, as in `starttls`: a handshake's state is kilobytes, needed only while it runs.
        let tls = Box::pin(tls::handshake(cx, tcp, Verify::of(cx))).await?;
        Ok(Dialog::new(Box::new(tls)))
    }

    /// Switches this conversation to TLS after the server agreed to STARTTLS (or STLS).
    /// Anything the server sent past its agreement would count as protected later although
    /// it came in clear text (the STARTTLS injection of CVE-2011-0411), so it is an error.
    /// After a failure the dialog is over: later commands go nowhere.
    pub(crate) async fn starttls(&mut self, cx: &Ctx, verify: Verify) -> Result<(), String> {
        if !self.pending.is_empty() {
            return Err("the server sent data after agreeing to start TLS \
                        (possible STARTTLS injection)"
                .into());
        }
        // A stand-in while the handshake owns the socket: reads end, writes vanish.
        let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::empty()));
        // Boxed: held inline, the handshake's kilobytes of state would be part of every
        // dialog's future, most of which never start TLS (issue 13).
        let tls = Box::pin(tls::handshake(cx, plain, verify)).await?;
        self.stream = Box::new(tls);
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Dialog<S> {
    pub(crate) fn new(stream: S) -> Self {
        Dialog {
            stream,
            pending: LineBuf::default(),
        }
    }

    /// Reads one text line; `what` names what we wait for ("the greeting") in reasons.
    pub(crate) async fn line(&mut self, cx: &Ctx, what: &str) -> Result<String, String> {
        net::within(cx, &format!("waiting for {what}"), self.read_line(what)).await
    }

    /// Reads one complete numeric reply, single- or multi-line.
    pub(crate) async fn reply(&mut self, cx: &Ctx, what: &str) -> Result<Reply, String> {
        net::within(cx, &format!("waiting for {what}"), async {
            let mut parser = ReplyParser::default();
            loop {
                let line = self.read_line(what).await?;
                if let Some(reply) = parser.push(line)? {
                    return Ok(reply);
                }
            }
        })
        .await
    }

    /// Sends `line` and CRLF. Reasons name only the command word, never its arguments
    /// (which may one day hold credentials).
    pub(crate) async fn send(&mut self, cx: &Ctx, line: &str) -> Result<(), String> {
        let verb = line.split(' ').next().unwrap_or(line);
        self.send_as(cx, line, verb).await
    }

    /// Sends `line` and CRLF; reasons call it `verb` (for lines that are all secret, such as
    /// the base64 credentials of AUTH LOGIN).
    pub(crate) async fn send_as(&mut self, cx: &Ctx, line: &str, verb: &str) -> Result<(), String> {
        let data = format!("{line}\r\n");
        net::within(cx, &format!("sending {verb}"), async {
            self.stream
                .write_all(data.as_bytes())
                .await
                .map_err(|e| format!("sending {verb}: {}", net::io_reason(&e)))
        })
        .await
    }

    /// Ends the conversation politely: closes our side, then reads (and drops) what the server
    /// still sends until it closes too, for at most a second and never past the deadline.
    /// Nothing here can fail the check: the verdict is already made.
    pub(crate) async fn close(mut self, cx: &Ctx) {
        let until = cx.deadline.min(Instant::now() + CLOSE_GRACE);
        let _ = tokio::time::timeout_at(until, async {
            let _ = self.stream.shutdown().await;
            // Small: it sits in every dialog's future, and a server rarely says more.
            let mut chunk = [0u8; 512];
            let mut drained = 0;
            while drained < CLOSE_DRAIN {
                match self.stream.read(&mut chunk).await {
                    Ok(n) if n > 0 => drained += n,
                    _ => break,
                }
            }
        })
        .await;
    }

    async fn read_line(&mut self, what: &str) -> Result<String, String> {
        loop {
            if let Some(line) = self.pending.next_line(MAX_LINE)? {
                return Ok(line);
            }
            self.fill(what).await?;
        }
    }

    async fn fill(&mut self, what: &str) -> Result<(), String> {
        let n = self
            .pending
            .read_from(&mut self.stream)
            .await
            .map_err(|e| format!("{} while waiting for {what}", net::io_reason(&e)))?;
        if n == 0 {
            return Err(format!(
                "connection closed by peer while waiting for {what}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn parse_all(lines: &[&str]) -> Result<Option<Reply>, String> {
        let mut p = ReplyParser::default();
        let mut out = None;
        for l in lines {
            out = p.push(l.to_string())?;
        }
        Ok(out)
    }

    #[test]
    fn reply_lines_split_into_code_and_end() {
        assert_eq!(parse_reply_line("250-PIPELINING"), Ok((250, false)));
        assert_eq!(parse_reply_line("250 OK"), Ok((250, true)));
        assert_eq!(parse_reply_line("220"), Ok((220, true)));
        assert_eq!(
            parse_reply_line("SSH-2.0-x"),
            Err("malformed reply line \"SSH-2.0-x\"".into())
        );
        assert_eq!(
            parse_reply_line("25"),
            Err("malformed reply line \"25\"".into())
        );
        assert_eq!(
            parse_reply_line("250:x"),
            Err("malformed reply line \"250:x\"".into())
        );
        assert_eq!(
            parse_reply_line("650 x"),
            Err("malformed reply line \"650 x\"".into())
        );
    }

    #[test]
    fn multi_line_reply_ends_at_the_space_line() {
        let r = parse_all(&["250-mail.example", "250-SIZE 1000", "250 HELP"]);
        let r = r.expect("parses").expect("complete");
        assert_eq!(r.code, 250);
        assert_eq!(r.text(), "250-mail.example\n250-SIZE 1000\n250 HELP");
        assert_eq!(parse_all(&["250-a", "250-b"]), Ok(None));
    }

    #[test]
    fn expect_quotes_unexpected_replies() {
        let r = parse_all(&["554-no", "554 go away"])
            .expect("parses")
            .expect("complete");
        assert_eq!(r.expect(554, "greeting"), Ok(()));
        assert_eq!(
            r.expect(220, "greeting"),
            Err("greeting is not 220: \"554-no\\n554 go away\"".into())
        );
    }

    #[test]
    fn code_change_inside_a_reply_is_rejected() {
        assert_eq!(
            parse_all(&["250-a", "550 b"]),
            Err("reply code changed within one reply: \"250-a\" then \"550 b\"".into())
        );
    }

    #[test]
    fn endless_continuations_are_cut_off() {
        let mut p = ReplyParser::default();
        let mut result = Ok(None);
        for _ in 0..10_000 {
            result = p.push("220-more".into());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(format!("reply longer than {MAX_REPLY_LINES} lines"))
        );
        let long = format!("220-{}", "x".repeat(MAX_LINE - 4));
        let mut p = ReplyParser::default();
        assert_eq!(p.push(long.clone()), Ok(None));
        let mut r = Ok(None);
        for _ in 0..5 {
            r = p.push(long.clone());
        }
        assert_eq!(r, Err(format!("reply longer than {MAX_REPLY_BYTES} bytes")));
    }

    #[test]
    fn line_buffer_splits_crlf_and_lf() {
        let mut b = LineBuf::default();
        b.extend(b"one\r\ntwo\nthr");
        assert_eq!(b.next_line(100), Ok(Some("one".into())));
        assert_eq!(b.next_line(100), Ok(Some("two".into())));
        assert_eq!(b.next_line(100), Ok(None));
        b.extend(b"ee\r\n");
        assert_eq!(b.next_line(100), Ok(Some("three".into())));
    }

    #[test]
    fn line_buffer_bounds_and_garbage() {
        let mut b = LineBuf::default();
        b.extend(&[b'a'; 11]);
        assert_eq!(b.next_line(10), Err("line longer than 10 bytes".into()));
        let mut b = LineBuf::default();
        b.extend(b"0123456789A\r\n");
        assert_eq!(b.next_line(10), Err("line longer than 10 bytes".into()));
        let mut b = LineBuf::default();
        b.extend(&[0u8, 1, 2, 3, 0xff, 0xfe, 0x10, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            b.next_line(100),
            Err("binary garbage instead of a text reply (16 bytes)".into())
        );
    }

    fn local_cx(port: u16, secs: f64) -> Ctx {
        cx(Job::new("smtp", "127.0.0.1", Some(port)), secs)
    }

    async fn dialog_to(port: u16, secs: f64) -> (Ctx, Dialog<tokio::net::TcpStream>) {
        let cx = local_cx(port, secs);
        let stream = net::connect(&cx).await.expect("connect");
        (cx, Dialog::new(stream))
    }

    #[tokio::test]
    async fn reads_a_reply_split_across_packets() {
        let a = serve(|mut s| async move {
            for part in [&b"220-mail.exa"[..], b"mple\r\n220", b" ready\r\n"] {
                let _ = s.write_all(part).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let (cx, mut d) = dialog_to(a.port(), 2.0).await;
        let r = d.reply(&cx, "the greeting").await.expect("reply");
        assert_eq!(r.lines, vec!["220-mail.example", "220 ready"]);
    }

    #[tokio::test]
    async fn sends_commands_with_crlf() {
        let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let tx = std::sync::Mutex::new(Some(tx));
        let a = serve(move |mut s| {
            let tx = tx.lock().expect("lock").take();
            async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                if let Some(tx) = tx {
                    let _ = tx.send(got);
                }
            }
        })
        .await;
        let (cx, mut d) = dialog_to(a.port(), 2.0).await;
        d.send(&cx, "EHLO custodian.invalid").await.expect("send");
        d.close(&cx).await;
        assert_eq!(rx.await.expect("received"), b"EHLO custodian.invalid\r\n");
    }

    #[tokio::test]
    async fn flood_of_continuations_stops_bounded() {
        let a = flood(b"220-more and more\r\n").await;
        let (cx, mut d) = dialog_to(a.port(), 5.0).await;
        let r = d.reply(&cx, "the greeting").await;
        assert_eq!(r, Err(format!("reply longer than {MAX_REPLY_LINES} lines")));
    }

    #[tokio::test]
    async fn hung_and_closed_servers_give_clear_reasons() {
        let a = silent().await;
        let (cx, mut d) = dialog_to(a.port(), 0.3).await;
        let r = d.reply(&cx, "the greeting").await;
        assert_eq!(r, Err("timed out waiting for the greeting".into()));
        let a = serve(|s| async move { drop(s) }).await;
        let (cx, mut d) = dialog_to(a.port(), 2.0).await;
        let r = d.line(&cx, "the greeting").await;
        assert_eq!(
            r,
            Err("connection closed by peer while waiting for the greeting".into())
        );
    }

    #[tokio::test]
    async fn close_does_not_outlive_the_deadline() {
        let a = silent().await;
        let (cx, d) = dialog_to(a.port(), 0.1).await;
        let t = std::time::Instant::now();
        d.close(&cx).await;
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "bounded by the deadline, not CLOSE_GRACE"
        );
    }

    /// Random and mutated server talk, fed in uneven pieces as reads deliver it: never a panic,
    /// lines within their limit, and replies within their line count.
    #[test]
    fn fuzzed_replies_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"220-mail.example ESMTP\r\n220-more text\r\n220 ready\r\n",
            b"250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\n",
            b"530 Login incorrect.\r\n421 bye\r\n",
        ];
        let mut replies = 0;
        custodian_testpeers::fuzz::inputs(0x220, &seeds, |input| {
            let (mut buf, mut parser) = (LineBuf::default(), ReplyParser::default());
            for piece in input.chunks(1 + input.len() % 7) {
                buf.extend(piece);
                while let Ok(Some(line)) = buf.next_line(64) {
                    // 64 bytes read; a stray invalid byte becomes a 3-byte U+FFFD.
                    assert!(line.len() <= 3 * 64);
                    match parser.push(line) {
                        Ok(Some(r)) => {
                            replies += 1;
                            assert!(!r.lines.is_empty() && r.lines.len() <= MAX_REPLY_LINES);
                            assert!((100..600).contains(&r.code));
                        }
                        Ok(None) => {}
                        Err(why) => assert!(why.chars().count() < 300, "{why}"),
                    }
                }
            }
        });
        assert!(replies > 0);
    }
}
