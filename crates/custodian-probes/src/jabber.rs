//! `jabber` (alias `xmpp`): the server answers our XMPP stream header with its own
//! `<stream:stream …>` (RFC 6120 §4.2).
//!
//! Syntax: `HOST must run jabber [on PORT].` Default port 5222. The header we send is addressed
//! `to=` the target as written (the XMPP domain; an IP literal works too: servers that do not
//! host it still open their stream before the `host-unknown` error). We keep our side open
//! while waiting, since servers such as Prosody close a half-closed stream without answering,
//! and end with `</stream:stream>`. The detail names the server's `from` domain.
//! A reply carrying a DTD or any markup declaration (`<!DOCTYPE`, `<!ENTITY`...) fails: RFC
//! 6120 §11.1 forbids them, and an entity-expansion bomb rides on them.
//! Down reasons: connection refused / timed out connecting; timed out waiting for the stream
//! header; `reply is not an XMPP stream header: "…"` (connection closed first); `reply carries
//! a DTD declaration (<!ENTITY), which XMPP forbids (RFC 6120 §11.1)`; no stream header within
//! 8192 bytes; binary garbage.
//! Example: `chat.example.org must run jabber otherwise 'chat down'.`

use crate::dialog::Dialog;
use crate::{net, Ctx};
use custodian_core::{Outcome, ProbeSpec, TargetKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "jabber",
    aliases: &["xmpp"],
    target: TargetKind::Host,
    default_port: Some(5222),
    port_required: false,
    takes_port: true,
    params: &[],
    summary: "the server answers an XMPP stream header with its own",
    example: "127.0.0.1 must run jabber on 5222 otherwise 'chat down'.",
    check: None,
    scan: None,
};

/// Most bytes we read looking for the server's stream header.
const MAX_HEADER: usize = 8 * 1024;

/// The start tag we look for in the reply.
const STREAM_TAG: &str = "<stream:stream";

/// The markup declarations a DTD is made of (XML 1.0 §2.8), upper-cased.
const DTD_MARKS: &[&str] = &[
    "<!DOCTYPE",
    "<!ENTITY",
    "<!ELEMENT",
    "<!ATTLIST",
    "<!NOTATION",
];

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    Outcome::from_result(run(cx).await)
}

async fn run(cx: &Ctx) -> Result<String, String> {
    let mut s = net::connect(cx).await?;
    let ours = stream_header(&cx.job.target);
    net::within(cx, "sending the stream header", async {
        s.write_all(ours.as_bytes())
            .await
            .map_err(|e| format!("sending the stream header: {}", net::io_reason(&e)))
    })
    .await?;
    let what = "waiting for the stream header";
    let header = net::within(cx, what, read_header(&mut s)).await?;
    let mut d = Dialog::new(s);
    if d.send(cx, "</stream:stream>").await.is_ok() {
        d.close(cx).await;
    }
    Ok(match attribute(&header, "from") {
        Some(from) => format!("XMPP stream from {}", net::clip(&from)),
        None => "XMPP stream opened".into(),
    })
}

/// Our opening header for a client-to-server stream to `domain`.
fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        escape(domain)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// Reads until the server's stream start tag is complete; returns that tag.
async fn read_header(s: &mut TcpStream) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("{} while waiting for the stream header", net::io_reason(&e)))?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(tag) = find_header(&buf)? {
            return Ok(tag);
        }
        if n == 0 {
            let text = String::from_utf8_lossy(&buf);
            return Err(format!(
                "reply is not an XMPP stream header: {:?}",
                net::clip(text.trim())
            ));
        }
    }
}

/// The complete `<stream:stream …>` start tag in `buf`, `None` while more bytes are needed.
fn find_header(buf: &[u8]) -> Result<Option<String>, String> {
    let window = &buf[..buf.len().min(MAX_HEADER)];
    let text = net::text(
        &window
            .iter()
            .map(|&b| if b.is_ascii_whitespace() { b' ' } else { b })
            .collect::<Vec<_>>(),
    )?;
    if let Some(mark) = dtd_mark(&text) {
        return Err(format!(
            "reply carries a DTD declaration ({mark}), which XMPP forbids (RFC 6120 §11.1)"
        ));
    }
    // XML opens with `<` (after an optional byte-order mark): anything else, such as another
    // protocol's greeting, is judged at once instead of waiting for the deadline.
    let opening = text.trim_start_matches(['\u{feff}', ' ']);
    if opening.chars().next().is_some_and(|c| c != '<') {
        return Err(format!(
            "reply is not an XMPP stream header: {:?}",
            net::clip(text.trim())
        ));
    }
    if let Some(start) = text.find(STREAM_TAG) {
        if let Some(len) = text[start..].find('>') {
            return Ok(Some(text[start..=start + len].to_string()));
        }
    }
    if buf.len() >= MAX_HEADER {
        return Err(format!("no XMPP stream header within {MAX_HEADER} bytes"));
    }
    Ok(None)
}

/// The first DTD declaration in `text`, if any (in any case: a lower-case one is no better).
fn dtd_mark(text: &str) -> Option<&'static str> {
    let upper = text.to_ascii_uppercase();
    DTD_MARKS.iter().copied().find(|m| upper.contains(m))
}

/// The value of attribute `name` in a start tag, quoted with `'` or `"`.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!(" {name}="))? + name.len() + 2;
    let quote = tag[at..]
        .chars()
        .next()
        .filter(|q| *q == '\'' || *q == '"')?;
    let rest = &tag[at + 1..];
    Some(rest[..rest.find(quote)?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    const PROSODY: &str =
        "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
         xml:lang='en' id='0e1c' from='chat.example' version='1.0' xmlns='jabber:client'>\
         <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";

    async fn run_against(a: SocketAddr, secs: f64) -> Outcome {
        check(&cx(Job::new("jabber", "127.0.0.1", Some(a.port())), secs)).await
    }

    /// An XMPP server that, like Prosody, answers only once our header is complete and closes
    /// at once if we half-close first. Records everything it heard.
    async fn server(reply: &'static str) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let a = serve(move |mut s| {
            let log = log.clone();
            async move {
                let mut chunk = [0u8; 1024];
                let mut answered = false;
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    let ready = {
                        let mut got = log.lock().expect("lock");
                        got.extend_from_slice(&chunk[..n]);
                        !answered && got.ends_with(b"version='1.0'>")
                    };
                    if ready {
                        answered = true;
                        let _ = s.write_all(reply.as_bytes()).await;
                    }
                }
            }
        })
        .await;
        (a, heard)
    }

    #[test]
    fn header_parsing() {
        let h = find_header(PROSODY.as_bytes())
            .expect("text")
            .expect("complete");
        assert!(h.starts_with("<stream:stream ") && h.ends_with("'jabber:client'>"));
        assert_eq!(attribute(&h, "from"), Some("chat.example".into()));
        assert_eq!(
            attribute("<stream:stream from=\"a.b\">", "from"),
            Some("a.b".into())
        );
        assert_eq!(attribute("<stream:stream id='x'>", "from"), None);
        assert_eq!(
            find_header(b"<?xml version='1.0'?><stream:stream id="),
            Ok(None)
        );
        assert_eq!(escape("a'<b>&\""), "a&apos;&lt;b&gt;&amp;&quot;");
        assert!(stream_header("127.0.0.1").contains(" to='127.0.0.1' "));
        assert!(SPEC.is_named("xmpp"));
    }

    #[tokio::test]
    async fn stream_header_passes_and_we_close_the_stream() {
        let (a, heard) = server(PROSODY).await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::Up {
                detail: Some("XMPP stream from chat.example".into())
            }
        );
        let heard = String::from_utf8(heard.lock().expect("lock").clone()).expect("utf8");
        assert_eq!(
            heard,
            format!("{}</stream:stream>\r\n", stream_header("127.0.0.1"))
        );
    }

    #[tokio::test]
    async fn wrong_reply_fails() {
        let a = serve(|mut s| async move {
            let mut req = [0u8; 512];
            let _ = s.read(&mut req).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        })
        .await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down("reply is not an XMPP stream header: \"HTTP/1.1 400 Bad Request\"")
        );
    }

    #[tokio::test]
    async fn other_protocols_fail_at_once() {
        // An rsync daemon greets and then waits for our version line, keeping the connection.
        let a = says(b"@RSYNCD: 31.0 sha512 sha256\n").await;
        let t = Instant::now();
        let out = run_against(a, 5.0).await;
        assert_eq!(
            out,
            Outcome::down("reply is not an XMPP stream header: \"@RSYNCD: 31.0 sha512 sha256\"")
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(
            find_header("\u{feff} <?xml version='1.0'?>".as_bytes()),
            Ok(None)
        );
    }

    /// The "billion laughs": ten entities, each ten of the one before, inside a DOCTYPE.
    fn laughs() -> String {
        let mut dtd =
            String::from("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY lol0 'lol'>");
        for i in 1..10 {
            let refs = format!("&lol{};", i - 1).repeat(10);
            dtd.push_str(&format!("<!ENTITY lol{i} '{refs}'>"));
        }
        dtd + "]><stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='&lol9;' version='1.0'>"
    }

    #[tokio::test]
    async fn an_entity_expansion_bomb_fails() {
        let bomb: &'static str = Box::leak(laughs().into_boxed_str());
        let (a, _) = server(bomb).await;
        let out = run_against(a, 2.0).await;
        assert_eq!(
            out,
            Outcome::down(
                "reply carries a DTD declaration (<!DOCTYPE), which XMPP forbids (RFC 6120 §11.1)"
            )
        );
    }

    #[test]
    fn every_dtd_declaration_is_refused() {
        let header = "<stream:stream from='x' version='1.0'>";
        for (decl, mark) in [
            ("<!ENTITY x 'y'>", "<!ENTITY"),
            ("<!doctype stream>", "<!DOCTYPE"),
            ("<!ELEMENT a ANY>", "<!ELEMENT"),
            ("<!ATTLIST a b CDATA #IMPLIED>", "<!ATTLIST"),
            ("<!NOTATION n SYSTEM 'x'>", "<!NOTATION"),
        ] {
            let reply = format!("<?xml version='1.0'?>{decl}{header}");
            let e = find_header(reply.as_bytes()).expect_err(decl);
            assert!(e.contains(&format!("({mark})")), "{e}");
        }
        assert!(find_header(format!("<?xml version='1.0'?>{header}").as_bytes()).is_ok());
    }

    #[tokio::test]
    async fn flood_is_bounded() {
        let t = Instant::now();
        let a = flood(b"<a>").await;
        let out = run_against(a, 10.0).await;
        assert_eq!(
            out,
            Outcome::down("no XMPP stream header within 8192 bytes")
        );
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
