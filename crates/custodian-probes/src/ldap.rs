//! `ldap`: the server accepts a bind (anonymous, or simple with `with username`/`with
//! password`); with `with base` or `with filter` a search must also find at least one entry.
//! `ldaps` runs the same conversation inside TLS.
//!
//! Syntax: `HOST must run ldap [on PORT] [with username 'BIND DN' with password 'P']
//! [with base 'DN'] [with filter '(FILTER)'].` Default port 389. The search asks for at most
//! one entry and no attributes, under `base` (subtree; without a base: the root DSE) with
//! `filter` (default `(objectClass=*)`). Requests are encoded and filters parsed by the
//! `ldap3` crate; the I/O is ours, one message of at most 64 KiB at a time.
//! `custodian check` refuses a `with filter` that is not an RFC 4515 filter (unbalanced
//! parentheses, a bad escape...) and a `with base` that is not an RFC 4514 DN; the filter is
//! parsed once per job into the form sent.
//! Down reasons: connection refused / timed out connecting;
//! `bind refused: invalidCredentials (49) "…"`; `search failed: noSuchObject (32) "…"`;
//! `search found no entry`; `not an LDAP server: …` (garbage, a message
//! over 64 KiB, a malformed message, a reply to another request); `LDAP reply nested deeper
//! than 32 levels` (replies are decoded by our bounded decoder, `ber.rs`); `server ended the
//! session: …` (a notice of disconnection); timed out or closed while waiting.
//! Example: `dir1 must run ldap with base 'dc=example,dc=com' with filter '(uid=probe)'.`

use crate::ber;
use crate::net;
use crate::tls::{self, Stream, Verify};
use crate::Ctx;
use custodian_core::{Invalid, Kind, Outcome, ParamSpec, ProbeSpec, TargetKind, Value};
use ldap3::asn1::{
    ASNTag, Boolean, Enumerated, Integer, OctetString, Sequence, StructureTag, Tag, TagClass, PL,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The options of `ldap`, shared with `ldaps`.
pub(crate) const USERNAME_PARAM: ParamSpec = ParamSpec::new(
    "with username {username}",
    "bind as this DN (simple bind; default anonymous)",
);
pub(crate) const PASSWORD_PARAM: ParamSpec = ParamSpec::new(
    "with password {password}",
    "the bind password (masked in all output)",
);
pub(crate) const BASE_PARAM: ParamSpec = ParamSpec::new(
    "with base {base}",
    "search under this DN; at least one entry must match",
)
.kinds(&[Kind::Parse(base)]);
pub(crate) const FILTER_PARAM: ParamSpec = ParamSpec::new(
    "with filter {filter}",
    "the search filter (RFC 4515; default (objectClass=*))",
)
.kinds(&[Kind::Parse(filter)]);

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "ldap",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(389),
    port_required: false,
    takes_port: true,
    params: &[USERNAME_PARAM, PASSWORD_PARAM, BASE_PARAM, FILTER_PARAM],
    summary: "the server accepts a bind (and a search under `with base` finds an entry)",
    example: "127.0.0.1 must run ldap on 389 with base 'dc=example,dc=com' with filter \
              '(objectClass=*)' otherwise 'directory down'.",
    check: None,
    scan: None,
};

/// The largest message we read; with no attributes asked for, replies are tiny.
const MAX_MESSAGE: usize = 64 * 1024;

/// Most messages we read for one search (entries, references, then the final result).
const MAX_SEARCH_MESSAGES: usize = 16;

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    run(cx, false).await
}

/// The whole check, over TLS from the first byte when `tls` (ldaps).
pub(crate) async fn run(cx: &Ctx, tls: bool) -> Outcome {
    match session(cx, tls).await {
        Ok(detail) => Outcome::Up {
            detail: Some(detail),
        },
        Err(reason) => Outcome::down(cx.job.scrub(&reason)),
    }
}

async fn session(cx: &Ctx, tls: bool) -> Result<String, String> {
    let tcp = net::connect(cx).await?;
    let stream: Stream = if tls {
        Box::new(tls::handshake(cx, tcp, Verify::of(cx)).await?)
    } else {
        Box::new(tcp)
    };
    let mut conn = Conn { stream, next_id: 1 };
    let dn = cx.params.text("username").unwrap_or("");
    let pw = cx.params.text("password").unwrap_or("");
    let op = conn
        .call(cx, bind_request(dn, pw), "the bind response")
        .await?;
    result(op, 1).map_err(|e| format!("bind refused: {e}"))?;
    let mut detail = if dn.is_empty() {
        "anonymous bind".to_string()
    } else {
        format!("bound as {dn}")
    };
    if cx.params.get("base").is_some() || cx.params.get("filter").is_some() {
        let found = search(cx, &mut conn).await?;
        detail.push_str(&format!("; found {}", net::clip(&found)));
    }
    conn.unbind(cx).await;
    Ok(detail)
}

/// Runs the search and returns the DN of the first entry found.
async fn search(cx: &Ctx, conn: &mut Conn) -> Result<String, String> {
    let base = cx.params.text("base").unwrap_or("");
    let request = match cx.params.parsed::<Filter>("filter") {
        Some(f) => search_request(base, f.0.clone()),
        None => search_request(base, any_entry()),
    };
    let id = conn.send(cx, request).await?;
    let mut first = None;
    for _ in 0..MAX_SEARCH_MESSAGES {
        let op = conn.recv(cx, id, "the search results").await?;
        match op.id {
            4 if first.is_none() => first = Some(entry_dn(op)),
            5 => {
                result(op, 5).map_err(|e| format!("search failed: {e}"))?;
                return first.ok_or_else(|| "search found no entry".into());
            }
            _ => {}
        }
    }
    Err(format!(
        "not an LDAP server: more than {MAX_SEARCH_MESSAGES} search replies"
    ))
}

/// One LDAP conversation: numbered requests out, bounded messages in.
struct Conn {
    stream: Stream,
    next_id: i64,
}

impl Conn {
    /// Sends `op` and returns the protocol op of the reply to it.
    async fn call(&mut self, cx: &Ctx, op: Tag, what: &str) -> Result<StructureTag, String> {
        let id = self.send(cx, op).await?;
        self.recv(cx, id, what).await
    }

    async fn send(&mut self, cx: &Ctx, op: Tag) -> Result<i64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = encode(id, op)?;
        net::within(cx, "sending a request", async {
            self.stream
                .write_all(&bytes)
                .await
                .map_err(|e| format!("sending a request: {}", net::io_reason(&e)))
        })
        .await?;
        Ok(id)
    }

    /// Reads one message, which must answer request `id`, and returns its protocol op.
    async fn recv(&mut self, cx: &Ctx, id: i64, what: &str) -> Result<StructureTag, String> {
        let frame = net::within(cx, &format!("waiting for {what}"), async {
            read_frame(&mut self.stream)
                .await
                .map_err(|e| format!("{e} while waiting for {what}"))
        })
        .await?;
        let (got, op) = parse_message(&frame)?;
        if got == 0 {
            // An unsolicited notification: the server is closing this session.
            let why = result(op, 24).err().unwrap_or_default();
            return Err(format!("server ended the session: {why}"));
        }
        if got != id {
            return Err(format!(
                "not an LDAP server: reply to request {got}, expected {id}"
            ));
        }
        Ok(op)
    }

    /// Best effort: an unbind lets the server log a clean close; the verdict is already made.
    async fn unbind(mut self, cx: &Ctx) {
        let op = Tag::Null(ldap3::asn1::Null {
            id: 2,
            class: TagClass::Application,
            inner: (),
        });
        let _ = self.send(cx, op).await;
        let _ = tokio::time::timeout_at(cx.deadline, self.stream.shutdown()).await;
    }
}

/// Reads one BER-framed message (`0x30`, definite length) of at most [`MAX_MESSAGE`] bytes.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, String> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head)
        .await
        .map_err(|e| net::io_reason(&e))?;
    if head[0] != 0x30 {
        return Err(format!(
            "not an LDAP server: message starts with 0x{:02x}",
            head[0]
        ));
    }
    let mut frame = head.to_vec();
    let len = match head[1] {
        n @ 0..=0x7f => usize::from(n),
        n @ 0x81..=0x84 => {
            let mut bytes = vec![0u8; usize::from(n & 0x7f)];
            r.read_exact(&mut bytes)
                .await
                .map_err(|e| net::io_reason(&e))?;
            frame.extend(&bytes);
            bytes
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b))
        }
        n => return Err(format!("not an LDAP server: bad length byte 0x{n:02x}")),
    };
    if len > MAX_MESSAGE {
        return Err(format!(
            "not an LDAP server: message of {len} bytes, more than {MAX_MESSAGE}"
        ));
    }
    let start = frame.len();
    frame.resize(start + len, 0);
    r.read_exact(&mut frame[start..])
        .await
        .map_err(|e| net::io_reason(&e))?;
    Ok(frame)
}

/// Splits an LDAPMessage into its message id and protocol op. The frame comes from the peer,
/// so it is decoded by our bounded [`ber::decode`], never by `ldap3`'s recursive `parse_tag`
/// (a reply nested thousands deep would overflow the worker's stack and abort the process).
fn parse_message(frame: &[u8]) -> Result<(i64, StructureTag), String> {
    let tag = ber::decode(frame).map_err(|e| match e {
        ber::Error::TooDeep => format!("LDAP reply {e}"),
        e => format!("not an LDAP server: malformed message ({e})"),
    })?;
    let bad = || "not an LDAP server: malformed message".to_string();
    let mut parts = tag.expect_constructed().ok_or_else(bad)?.into_iter();
    let id = parts
        .next()
        .and_then(|t| t.expect_primitive())
        .ok_or_else(bad)?;
    let op = parts
        .next()
        .filter(|t| t.class == TagClass::Application)
        .ok_or_else(bad)?;
    Ok((int(&id), op))
}

/// The DN of a SearchResultEntry.
fn entry_dn(op: StructureTag) -> String {
    let dn = op
        .expect_constructed()
        .and_then(|p| p.into_iter().next())
        .and_then(|t| t.expect_primitive());
    String::from_utf8_lossy(&dn.unwrap_or_default()).into_owned()
}

/// Judges an LDAPResult in op `[APPLICATION expect]`; the error names the result code and
/// quotes the server's diagnostic message.
fn result(op: StructureTag, expect: u64) -> Result<(), String> {
    if op.id != expect {
        return Err(format!("not an LDAP server: unexpected reply op {}", op.id));
    }
    let parts = op.expect_constructed().unwrap_or_default();
    let field = |i: usize| match parts.get(i).map(|t| &t.payload) {
        Some(PL::P(b)) => Some(b.clone()),
        _ => None,
    };
    let code = field(0)
        .map(|b| int(&b))
        .ok_or("not an LDAP server: result without a code")?;
    // sizeLimitExceeded: there was more than the one entry we asked for, which is fine.
    if code == 0 || (code == 4 && expect == 5) {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&field(2).unwrap_or_default()).into_owned();
    Err(format!(
        "{} ({code}) {:?}",
        code_name(code),
        net::clip(&message)
    ))
}

/// A big-endian two's-complement integer (message ids, result codes).
fn int(bytes: &[u8]) -> i64 {
    let first = bytes
        .first()
        .map_or(0, |b| if b & 0x80 != 0 { -1 } else { 0 });
    bytes
        .iter()
        .take(8)
        .fold(first, |acc, b| acc << 8 | i64::from(*b))
}

fn code_name(code: i64) -> &'static str {
    match code {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "error",
    }
}

fn octets(s: &str) -> Tag {
    Tag::OctetString(OctetString {
        inner: s.as_bytes().to_vec(),
        ..Default::default()
    })
}

fn integer(n: i64) -> Tag {
    Tag::Integer(Integer {
        inner: n,
        ..Default::default()
    })
}

/// BindRequest: version 3, simple authentication (empty DN and password: anonymous).
fn bind_request(dn: &str, password: &str) -> Tag {
    Tag::Sequence(Sequence {
        id: 0,
        class: TagClass::Application,
        inner: vec![
            integer(3),
            octets(dn),
            Tag::OctetString(OctetString {
                id: 0,
                class: TagClass::Context,
                inner: password.as_bytes().to_vec(),
            }),
        ],
    })
}

/// A search filter parsed from `with filter`, in the form the request carries.
#[derive(Debug, Clone)]
struct Filter(Tag);

/// `with filter`: an RFC 4515 filter, parsed once (by `ldap3`, which also takes a bare
/// `attr=value` without the outer parentheses).
fn filter(text: &str) -> Result<Value, Invalid> {
    match ldap3::parse_filter(text) {
        Ok(tag) => Ok(Value::parsed(Filter(tag))),
        Err(()) => Err(
            Invalid::new(format!("`{text}` is not a valid LDAP filter (RFC 4515)"))
                .hint(filter_hint(text)),
        ),
    }
}

/// What is most likely wrong with a filter the parser refused.
fn filter_hint(text: &str) -> String {
    let (open, close) = (text.matches('(').count(), text.matches(')').count());
    if open != close {
        return format!(
            "its parentheses do not balance ({open} `(`, {close} `)`); write e.g. `(&(objectClass=person)(uid=probe))`"
        );
    }
    "write e.g. `(uid=probe)` or `(&(objectClass=person)(uid=probe))`; in values write `*`, `(`, `)` and `\\` as \\2a, \\28, \\29 and \\5c".into()
}

/// The default filter, `(objectClass=*)`: every entry.
fn any_entry() -> Tag {
    Tag::OctetString(OctetString {
        id: 7,
        class: TagClass::Context,
        inner: b"objectClass".to_vec(),
    })
}

/// `with base`: a distinguished name (RFC 4514), or empty for the root DSE. Sent as written.
fn base(text: &str) -> Result<Value, Invalid> {
    match dn_problem(text) {
        None => Ok(Value::Text(text.to_string())),
        Some(why) => Err(Invalid::new(format!("`{text}` is not a valid DN: {why}"))
            .hint("write a DN such as `dc=example,dc=com` or `ou=people,dc=example,dc=com`")),
    }
}

/// Why `dn` is not an RFC 4514 DN, if it is not. Separators may be `,` or `;` with spaces
/// around them (RFC 2253 §4, as servers accept), values may hold escapes `\X` or `\HH`.
fn dn_problem(dn: &str) -> Option<String> {
    if dn.trim().is_empty() {
        return None;
    }
    for rdn in split_unescaped(dn, &[',', ';']) {
        for ava in split_unescaped(rdn, &['+']) {
            let Some((attr, value)) = ava.split_once('=') else {
                return Some(format!("`{}` has no `=`", ava.trim()));
            };
            let attr = attr.trim();
            let descr = attr.starts_with(|c: char| c.is_ascii_alphabetic())
                && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            let oid = !attr.is_empty()
                && attr
                    .split('.')
                    .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !descr && !oid {
                return Some(format!("`{attr}` is not an attribute type"));
            }
            if let Some(why) = value_problem(value.trim()) {
                return Some(format!("the value of `{attr}` {why}"));
            }
        }
    }
    None
}

/// Splits at unescaped `seps` (a backslash escapes the next character).
fn split_unescaped<'a>(s: &'a str, seps: &[char]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if seps.contains(&c) => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Why an attribute value is malformed: empty, a bad escape, a special character unescaped,
/// or a `#` hex form with odd or non-hex digits.
fn value_problem(v: &str) -> Option<String> {
    if v.is_empty() {
        return Some("is empty".into());
    }
    if let Some(hex) = v.strip_prefix('#') {
        let ok =
            !hex.is_empty() && hex.len() % 2 == 0 && hex.chars().all(|c| c.is_ascii_hexdigit());
        return (!ok).then(|| "is not a valid #hex value".into());
    }
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(h) if h.is_ascii_hexdigit() => {
                    if !chars.next().is_some_and(|l| l.is_ascii_hexdigit()) {
                        return Some("has a `\\` escape that is not two hex digits".into());
                    }
                }
                Some(' ' | '"' | '#' | '+' | ',' | ';' | '<' | '=' | '>' | '\\') => {}
                _ => return Some("has a `\\` that escapes nothing special".into()),
            },
            '"' | '<' | '>' | '\0' => {
                return Some(format!("holds {c:?}, which must be escaped with `\\`"))
            }
            _ => {}
        }
    }
    None
}

/// SearchRequest for one entry, no attributes: subtree under `base`, or the root DSE itself.
fn search_request(base: &str, filter: Tag) -> Tag {
    let scope = if base.is_empty() { 0 } else { 2 };
    let enumerated = |n| {
        Tag::Enumerated(Enumerated {
            inner: n,
            ..Default::default()
        })
    };
    Tag::Sequence(Sequence {
        id: 3,
        class: TagClass::Application,
        inner: vec![
            octets(base),
            enumerated(scope),
            enumerated(0),
            integer(1),
            integer(0),
            Tag::Boolean(Boolean {
                inner: true,
                ..Default::default()
            }),
            filter,
            Tag::Sequence(Sequence {
                inner: vec![octets("1.1")],
                ..Default::default()
            }),
        ],
    })
}

/// An LDAPMessage with id `id` around `op`, as bytes.
fn encode(id: i64, op: Tag) -> Result<Vec<u8>, String> {
    let message = Tag::Sequence(Sequence {
        inner: vec![integer(id), op],
        ..Default::default()
    });
    let mut buf = bytes::BytesMut::new();
    ldap3::asn1::write::encode_into(&mut buf, message.into_structure())
        .map_err(|e| format!("cannot encode the request: {e}"))?;
    Ok(buf.to_vec())
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-process LDAP server for tests: one bind DN and password, one entry.

    use super::*;
    use crate::net::testutil::serve;
    use std::net::SocketAddr;
    use tokio::io::AsyncWrite;

    pub(crate) const USER: &str = "cn=probe,dc=custodian,dc=test";
    pub(crate) const PASS: &str = "s3cret";
    pub(crate) const BASE: &str = "dc=custodian,dc=test";

    /// Plain LDAP on 127.0.0.1.
    pub(crate) async fn plain() -> SocketAddr {
        serve(|s| async move { talk(s).await }).await
    }

    /// Talks to one client over any stream (TLS tests wrap it first).
    pub(crate) async fn talk<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
        while let Ok(frame) = read_frame(&mut s).await {
            let Ok((id, op)) = parse_message(&frame) else {
                return;
            };
            for reply in answer(op) {
                let bytes = encode(id, reply).expect("encode");
                if s.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Levels of the hostile reply: about as deep as one message of [`MAX_MESSAGE`] allows
    /// with definite lengths (4 bytes a level), deep enough to overflow a recursive parser.
    pub(crate) const DEEP: usize = 16_000;

    /// A hostile server: answers the first request with SEQUENCEs nested [`DEEP`] levels,
    /// then keeps the connection open until the client leaves, so that the verdict comes
    /// from that reply and not from a close.
    pub(crate) async fn hostile<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
        if read_frame(&mut s).await.is_ok() {
            let frame = crate::ber::tests::nested(DEEP);
            assert!(frame.len() <= MAX_MESSAGE, "{} bytes", frame.len());
            let _ = s.write_all(&frame).await;
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }

    fn res(op: u64, code: i64, msg: &str) -> Tag {
        Tag::Sequence(Sequence {
            id: op,
            class: TagClass::Application,
            inner: vec![
                Tag::Enumerated(Enumerated {
                    inner: code,
                    ..Default::default()
                }),
                octets(""),
                octets(msg),
            ],
        })
    }

    fn answer(op: StructureTag) -> Vec<Tag> {
        let id = op.id;
        let parts = op.expect_constructed().unwrap_or_default();
        let text = |i: usize| {
            parts
                .get(i)
                .cloned()
                .and_then(|t| t.expect_primitive())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        match id {
            0 => {
                let (dn, pw) = (text(1).unwrap_or_default(), text(2).unwrap_or_default());
                if dn.is_empty() || (dn == USER && pw == PASS) {
                    vec![res(1, 0, "")]
                } else {
                    vec![res(1, 49, "")]
                }
            }
            3 if text(0).as_deref() == Some(BASE) => {
                // The one entry matches exactly the filter (uid=probe).
                let wanted = ldap3::parse_filter("(uid=probe)").map(|f| f.into_structure());
                let hit = parts.get(6) == wanted.ok().as_ref();
                let entry = Tag::Sequence(Sequence {
                    id: 4,
                    class: TagClass::Application,
                    inner: vec![octets(USER), Tag::Sequence(Sequence::default())],
                });
                if hit {
                    vec![entry, res(5, 0, "")]
                } else {
                    vec![res(5, 0, "")]
                }
            }
            3 => vec![res(5, 32, "")],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    fn job(port: u16, opts: &[(&str, &str)]) -> Job {
        let mut j = Job::new("ldap", "127.0.0.1", Some(port));
        for (k, v) in opts {
            j.options.insert(k.to_string(), (*v).into());
        }
        j
    }

    async fn run_against(a: SocketAddr, opts: &[(&str, &str)]) -> Outcome {
        check(&cx(job(a.port(), opts), 2.0)).await
    }

    #[test]
    fn messages_round_trip() {
        let bytes = encode(7, bind_request("cn=a", "pw")).expect("encode");
        assert_eq!(bytes[0], 0x30);
        let (id, op) = parse_message(&bytes).expect("parse");
        assert_eq!((id, op.id, op.class), (7, 0, TagClass::Application));
    }

    #[test]
    fn integers_and_results() {
        assert_eq!(int(&[0x01, 0x00]), 256);
        assert_eq!(int(&[0xff]), -1);
        let refused = fake_result(1, 49, "bad");
        assert_eq!(
            result(refused, 1),
            Err("invalidCredentials (49) \"bad\"".into())
        );
        assert_eq!(result(fake_result(5, 4, ""), 5), Ok(()));
    }

    fn fake_result(op: u64, code: i64, msg: &str) -> StructureTag {
        let bytes = encode(
            1,
            Tag::Sequence(Sequence {
                id: op,
                class: TagClass::Application,
                inner: vec![
                    Tag::Enumerated(Enumerated {
                        inner: code,
                        ..Default::default()
                    }),
                    octets(""),
                    octets(msg),
                ],
            }),
        )
        .expect("encode");
        parse_message(&bytes).expect("parse").1
    }

    #[test]
    fn filters_are_parsed_once_or_refused() {
        for good in [
            "(objectClass=*)",
            "(uid=probe)",
            "(&(objectClass=person)(|(uid=a)(uid=b)))",
            "(!(cn=x))",
            "(cn=a\\2ab*)",
            "uid=probe",
        ] {
            assert!(filter(good).is_ok(), "{good}");
        }
        let e = filter("(objectClass=*").expect_err("unbalanced");
        assert_eq!(
            e.msg,
            "`(objectClass=*` is not a valid LDAP filter (RFC 4515)"
        );
        assert!(
            e.hint
                .as_deref()
                .is_some_and(|h| h.starts_with("its parentheses do not balance (1 `(`, 0 `)`)")),
            "{e:?}"
        );
        for bad in ["(uid=", "(&(uid=a)", "uid=a)", "(cn=a\\zz)", "", "(=x)"] {
            assert!(filter(bad).is_err(), "{bad}");
        }
        let Ok(Value::Parsed(v)) = filter("(objectClass=*)") else {
            panic!("not parsed")
        };
        let parsed = &v.downcast_ref::<Filter>().expect("Filter").0;
        assert_eq!(
            *parsed,
            any_entry(),
            "the default is the parsed (objectClass=*)"
        );
    }

    #[test]
    fn bases_must_be_dns() {
        for good in [
            "",
            "dc=example,dc=com",
            "ou=people, dc=example, dc=com",
            "cn=Smith\\, John+uid=js,dc=example;dc=com",
            "1.3.6.1.4.1.1466.0=#04024869,dc=x",
            "cn=a\\2cb,dc=x",
            "cn=a=b,dc=x",
        ] {
            assert!(base(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("example.com", "`example.com` has no `=`"),
            ("dc=example,,dc=com", "`` has no `=`"),
            ("dc=,dc=com", "the value of `dc` is empty"),
            ("1dc=x", "`1dc` is not an attribute type"),
            (
                "cn=a\\zz",
                "the value of `cn` has a `\\` that escapes nothing special",
            ),
            (
                "cn=a\\2",
                "the value of `cn` has a `\\` escape that is not two hex digits",
            ),
            (
                "cn=<x>",
                "the value of `cn` holds '<', which must be escaped with `\\`",
            ),
            ("cn=#abc", "the value of `cn` is not a valid #hex value"),
        ] {
            let e = base(bad).expect_err(bad);
            assert_eq!(e.msg, format!("`{bad}` is not a valid DN: {why}"));
        }
        let e = crate::prepare(&job(389, &[("filter", "(uid=")])).expect_err("bad filter");
        assert!(e.msg.starts_with("option `filter`: "), "{}", e.msg);
    }

    #[tokio::test]
    async fn anonymous_bind_passes() {
        let a = fake::plain().await;
        assert_eq!(
            run_against(a, &[]).await,
            Outcome::Up {
                detail: Some("anonymous bind".into())
            }
        );
    }

    #[tokio::test]
    async fn bind_and_search() {
        let a = fake::plain().await;
        let opts = [
            ("username", fake::USER),
            ("password", fake::PASS),
            ("base", fake::BASE),
            ("filter", "(uid=probe)"),
        ];
        let out = run_against(a, &opts).await;
        let detail = format!("bound as {}; found {}", fake::USER, fake::USER);
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some(detail)
            }
        );
    }

    #[tokio::test]
    async fn wrong_password_is_refused() {
        let a = fake::plain().await;
        let out = run_against(a, &[("username", fake::USER), ("password", "hunter2")]).await;
        assert_eq!(
            out,
            Outcome::down("bind refused: invalidCredentials (49) \"\"")
        );
    }

    #[tokio::test]
    async fn missing_entry_and_missing_base() {
        let a = fake::plain().await;
        let out = run_against(a, &[("base", fake::BASE), ("filter", "(uid=nobody)")]).await;
        assert_eq!(out, Outcome::down("search found no entry"));
        let out = run_against(a, &[("base", "dc=other")]).await;
        assert_eq!(out, Outcome::down("search failed: noSuchObject (32) \"\""));
    }

    #[tokio::test]
    async fn garbage_is_not_ldap() {
        let a = says(b"220 mail ESMTP\r\n").await;
        let out = run_against(a, &[]).await;
        assert_eq!(
            out,
            Outcome::down(
                "not an LDAP server: message starts with 0x32 while waiting for the bind response"
            )
        );
    }

    #[tokio::test]
    async fn oversized_message_is_refused_unread() {
        let a = flood(b"\x30\x84\x7f\xff\xff\xff").await;
        let out = run_against(a, &[]).await;
        assert_eq!(out, Outcome::down(format!(
            "not an LDAP server: message of 2147483647 bytes, more than {MAX_MESSAGE} while waiting for the bind response"
        )));
    }

    #[tokio::test]
    async fn deeply_nested_reply_is_down_not_a_crash() {
        let a = serve(fake::hostile).await;
        let t = Instant::now();
        let out = check(&cx(job(a.port(), &[]), 2.0)).await;
        assert_eq!(
            out,
            Outcome::down("LDAP reply nested deeper than 32 levels")
        );
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn malformed_reply_names_the_fault() {
        // A bind response whose result code claims 127 bytes inside a 5-byte op.
        let a = says(b"\x30\x0a\x02\x01\x01\x61\x05\x0a\x7f\x00\x04\x00").await;
        let out = run_against(a, &[]).await;
        let why = "not an LDAP server: malformed message (an element of 127 bytes where \
                   only 3 remain in its enclosing element)";
        assert_eq!(out, Outcome::down(why));
    }

    #[tokio::test]
    async fn notice_of_disconnection_is_reported() {
        let notice = Tag::Sequence(Sequence {
            id: 24,
            class: TagClass::Application,
            inner: vec![
                Tag::Enumerated(Enumerated {
                    inner: 52,
                    ..Default::default()
                }),
                octets(""),
                octets("shutting down"),
            ],
        });
        let bytes: &'static [u8] = encode(0, notice).expect("encode").leak();
        let a = says(bytes).await;
        let out = run_against(a, &[]).await;
        let why = "server ended the session: unavailable (52) \"shutting down\"";
        assert_eq!(out, Outcome::down(why));
    }

    #[tokio::test]
    async fn half_closed_server() {
        let a = serve(|mut s| async move {
            let _ = s.write_all(b"\x30\x0c\x02\x01").await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let out = run_against(a, &[]).await;
        assert_eq!(
            out,
            Outcome::down("connection closed by peer while waiting for the bind response")
        );
    }
}
