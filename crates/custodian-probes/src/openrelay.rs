//! `openrelay`: whether an SMTP server relays mail from an outside sender to an outside
//! recipient. Meant for `must not run`: "up" means the server is an open relay.
//!
//! Syntax: `HOST must not run openrelay [on PORT] [with sender 'A@B'] [with recipient 'C@D']
//! [with data confirmation].` Default port 25. The recipient's domain should be one the
//! operator controls (the default, `relay-test@canary.custodian.invalid`, is a placeholder to
//! be configured). We read the greeting, say EHLO (HELO when EHLO gets a 5xx), then try
//! `MAIL FROM` + `RCPT TO` in the well-known address forms, with RSET between them: plain,
//! null sender, sender at the target's `[ip]`, percent hack, quoted local part (bare and at
//! `[ip]`), double-at, source route, bang path; we stop at the first accepted recipient
//! (250/251). With `with data confirmation` we then send only the `DATA` verb: 354 confirms
//! the relay and we drop the connection at once. **No message body is ever sent.**
//! Verdicts: open (recipient accepted; "confirmed" with DATA 354); closed: greeting refused,
//! every form refused (5xx), deferred (4xx, greylisting), authentication required (530),
//! throttled (421), "accepts any recipient but refuses DATA"; no-answer: timed out.
//! Every verdict quotes the dialogue and our source address.
//! Sender and recipient are plain addresses: no spaces, `<`, `>` or control characters (not
//! even in a quoted local part), so no option, flag or queued job can add a command line.
//! Example: `mail1 must not run openrelay with recipient 'probe@relaytest.example.net'.`

use crate::abuse::{self, Transcript};
use crate::dialog::Dialog;
use crate::{net, Ctx};
use custodian_core::outcome::escape_controls;
use custodian_core::{
    Finding, Invalid, Kind, Outcome, ParamSpec, ProbeSpec, ScanSpec, TargetKind, Value, Verdict,
};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tokio::net::TcpStream;

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "openrelay",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(25),
    port_required: false,
    takes_port: true,
    params: &[
        ParamSpec::new(
            "with sender {sender}",
            "the outside sender address (default relay-test@custodian.invalid)",
        )
        .kinds(&[Kind::Parse(parse_mailbox)]),
        ParamSpec::new(
            "with recipient {recipient}",
            "the outside recipient, in a domain you control (default: a placeholder)",
        )
        .kinds(&[Kind::Parse(parse_mailbox)]),
        ParamSpec::new(
            "with data confirmation",
            "after an accepted recipient send only the DATA verb; 354 confirms the relay",
        ),
    ],
    summary:
        "the SMTP server relays from an outside sender to an outside recipient (for `must not run`)",
    example: "127.0.0.1 must not run openrelay with recipient 'probe@relaytest.example.net' \
              otherwise 'open relay'.",
    check: None,
    scan: Some(ScanSpec {
        ports: &[25],
        conns: 1,
        flags: &[
            ("sender", "sender"),
            ("recipient", "recipient"),
            ("data-confirmation", "with_data_confirmation"),
        ],
    }),
};

const OUR_NAME: &str = "custodian.invalid";
/// The placeholder addresses' parts (`.invalid` never resolves, so nothing can be delivered).
const DEFAULT_LOCAL: &str = "relay-test";
const DEFAULT_SENDER_DOMAIN: &str = "custodian.invalid";
const DEFAULT_RECIPIENT_DOMAIN: &str = "canary.custodian.invalid";

/// Longest local part and domain RFC 5321 (4.5.3.1) lets a server refuse beyond.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

const MAIL_HINT: &str =
    "write user@domain, in a domain you control, e.g. 'probe@relaytest.example.net'";

/// A mail address as SMTP carries it after `MAIL FROM:` and `RCPT TO:` (RFC 5321 4.1.2
/// `Mailbox`: a dot-string or quoted local part, then a domain or an address literal).
///
/// Checked against RFC 5321 by hand rather than with a mail-address crate: those accept RFC
/// 5322 header syntax (display names, comments, folding white space, obsolete forms), none
/// of which is valid in an SMTP envelope, and what this type accepts is sent as is. ASCII
/// only: the check never asks for SMTPUTF8 (RFC 6531). Stricter than RFC 5321 in one way:
/// no space, `<`, `>` or control character anywhere, quoted or not, so the address can never
/// end the command early or start another one (CR LF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mailbox {
    pub(crate) local: String,
    pub(crate) domain: String,
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl Mailbox {
    fn placeholder(domain: &str) -> Mailbox {
        Mailbox {
            local: DEFAULT_LOCAL.into(),
            domain: domain.into(),
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Mailbox, Invalid> {
        let shown = escape_controls(text);
        let bad = |why: String| {
            Invalid::new(format!("`{shown}` is not a mail address: {why}")).hint(MAIL_HINT)
        };
        if !text.is_ascii() {
            return Err(bad("only ASCII can be sent without SMTPUTF8".into()));
        }
        if !text.chars().all(is_plain) {
            return Err(bad(
                "a plain address has no spaces, `<`, `>` or control characters (CR, LF, ...)"
                    .into(),
            ));
        }
        let (local, domain) = split_mailbox(text).ok_or_else(|| bad("it has no @domain".into()))?;
        if local.is_empty() {
            return Err(bad("the part before @ is empty".into()));
        }
        if local.len() > MAX_LOCAL {
            return Err(bad(format!(
                "the part before @ is longer than {MAX_LOCAL} characters"
            )));
        }
        if !(is_dot_string(local) || is_quoted_string(local)) {
            return Err(bad(format!(
                "`{local}` is neither dot-separated words (letters, digits and                  !#$%&'*+-/=?^_`{{|}}~) nor a quoted string"
            )));
        }
        if domain.is_empty() {
            return Err(bad("the domain after @ is empty".into()));
        }
        if !(is_domain(domain) || is_address_literal(domain)) {
            return Err(bad(format!(
                "`{domain}` is neither a domain name nor an address literal like [192.0.2.1]"
            )));
        }
        Ok(Mailbox {
            local: local.into(),
            domain: domain.into(),
        })
    }
}

/// The [`Kind::Parse`] of `with sender` and `with recipient`.
fn parse_mailbox(text: &str) -> Result<Value, Invalid> {
    Mailbox::parse(text).map(Value::parsed)
}

/// Local part and domain; a quoted local part may itself hold `@`.
fn split_mailbox(text: &str) -> Option<(&str, &str)> {
    let end = match text.strip_prefix('"') {
        Some(rest) => {
            let mut escaped = false;
            let close = rest.char_indices().find(|&(_, c)| {
                let is_close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                is_close
            })?;
            close.0 + 2
        }
        None => text.find('@')?,
    };
    let (local, at_domain) = text.split_at(end);
    Some((local, at_domain.strip_prefix('@')?))
}

/// RFC 5321 `Dot-string`: atoms of `atext` joined by single dots.
fn is_dot_string(s: &str) -> bool {
    s.split('.').all(|atom| {
        !atom.is_empty()
            && atom
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
    })
}

/// A character a sent address may hold: visible ASCII but the angle brackets that delimit it
/// in `MAIL FROM:<...>` (so no space, CR, LF or other control character either).
fn is_plain(c: char) -> bool {
    ('!'..='~').contains(&c) && !matches!(c, '<' | '>')
}

/// RFC 5321 `Quoted-string` of [`is_plain`] characters between double quotes, `"` and `\`
/// escaped.
fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return false;
    };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let ok = match c {
            '\\' => chars.next().is_some_and(is_plain),
            '"' => false,
            c => is_plain(c),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// RFC 5321 `Domain`: labels of letters, digits and inner hyphens, 1-63 long, dot-joined.
fn is_domain(s: &str) -> bool {
    s.len() <= MAX_DOMAIN
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// RFC 5321 `address-literal`: `[IPv4]` or `[IPv6:addr]`.
fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

/// One command and the server's reply (`cmd` empty for the greeting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) cmd: String,
    pub(crate) code: u16,
    pub(crate) text: String,
}

impl Step {
    fn verb(&self) -> &str {
        self.cmd.split([' ', ':']).next().unwrap_or("")
    }
}

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    abuse::settle(cx, assess(cx).await).outcome()
}

/// The verdict with its evidence.
pub(crate) async fn assess(cx: &Ctx) -> Finding {
    let mut steps = Vec::new();
    let mut t = Transcript::default();
    let error = run(cx, &mut steps, &mut t).await.err();
    t.attach(judge(&steps, error.as_deref()))
}

/// The dialogue; every command and reply lands in `steps` and `t`.
async fn run(cx: &Ctx, steps: &mut Vec<Step>, t: &mut Transcript) -> Result<(), String> {
    let server = abuse::target(cx)?;
    t.source = abuse::source_for(cx, server).await;
    let mut d = Dialog::new(net::connect(cx).await?);
    let mut s = Session {
        cx,
        d: &mut d,
        steps,
        t,
    };
    let greeting = s.read("").await?;
    let go_on = greeting == 220 && s.hello().await? && !s.probe_forms().await?;
    if go_on && cx.params.flag("with_data_confirmation") && s.data().await? == 354 {
        // Anything we send after 354 would be message text: drop the connection now.
        return Ok(());
    }
    if d.send(cx, "QUIT").await.is_ok() {
        d.close(cx).await;
    }
    Ok(())
}

struct Session<'a> {
    cx: &'a Ctx,
    d: &'a mut Dialog<TcpStream>,
    steps: &'a mut Vec<Step>,
    t: &'a mut Transcript,
}

impl Session<'_> {
    /// Reads one reply, recorded as the answer to `cmd`.
    async fn read(&mut self, cmd: &str) -> Result<u16, String> {
        let what = if cmd.is_empty() {
            "the greeting"
        } else {
            "a reply"
        };
        let r = self.d.reply(self.cx, what).await?;
        self.t.server(&r.lines.join(" / "));
        self.steps.push(Step {
            cmd: cmd.to_string(),
            code: r.code,
            text: r.text(),
        });
        Ok(r.code)
    }

    async fn say(&mut self, cmd: &str) -> Result<u16, String> {
        self.t.client(cmd);
        self.d.send(self.cx, one_line(cmd)?).await?;
        self.read(cmd).await
    }

    /// EHLO, HELO after a 5xx; whether the server let us in.
    async fn hello(&mut self) -> Result<bool, String> {
        let code = self.say(&format!("EHLO {OUR_NAME}")).await?;
        if (500..600).contains(&code) {
            return Ok(self.say(&format!("HELO {OUR_NAME}")).await? == 250);
        }
        Ok(code == 250)
    }

    /// Tries each address form until a recipient is accepted; `Ok(true)` when we must stop
    /// without one (throttled, deferred, authentication required).
    async fn probe_forms(&mut self) -> Result<bool, String> {
        let placeholder = |domain| Mailbox::placeholder(domain);
        let p = &self.cx.params;
        let sender = p.parsed::<Mailbox>("sender").cloned();
        let rcpt = p.parsed::<Mailbox>("recipient").cloned();
        let forms = forms(
            &sender.unwrap_or_else(|| placeholder(DEFAULT_SENDER_DOMAIN)),
            &rcpt.unwrap_or_else(|| placeholder(DEFAULT_RECIPIENT_DOMAIN)),
            abuse::target(self.cx)?.ip(),
        );
        for (i, (from, to)) in forms.iter().enumerate() {
            if i > 0 && self.say("RSET").await? != 250 {
                return Ok(true);
            }
            let mail = self.say(&format!("MAIL FROM:<{from}>")).await?;
            if halts(mail) {
                return Ok(true);
            }
            if mail != 250 {
                continue;
            }
            let rcpt = self.say(&format!("RCPT TO:<{to}>")).await?;
            if matches!(rcpt, 250 | 251) {
                return Ok(false);
            }
            if halts(rcpt) {
                return Ok(true);
            }
        }
        Ok(true)
    }

    async fn data(&mut self) -> Result<u16, String> {
        self.say("DATA").await
    }
}

/// `cmd` when it is one command line. [`Mailbox`] already keeps line breaks out of every
/// address; this second guard stands because a smuggled line could send a whole message.
fn one_line(cmd: &str) -> Result<&str, String> {
    if cmd.contains(['\r', '\n']) {
        return Err(format!(
            "refusing to send {:?}: a command must be one line",
            net::clip(cmd)
        ));
    }
    Ok(cmd)
}

/// Replies after which trying more forms is pointless: any 4xx (greylisting, throttling,
/// 421 closing) and 530 (authentication required).
fn halts(code: u16) -> bool {
    (400..500).contains(&code) || code == 530
}

/// The (sender, recipient) pairs to try against the server at `addr`, most ordinary first.
fn forms(sender: &Mailbox, rcpt: &Mailbox, addr: IpAddr) -> Vec<(String, String)> {
    let (user, domain) = (&rcpt.local, &rcpt.domain);
    let ip = match addr {
        IpAddr::V6(a) => format!("[IPv6:{a}]"),
        a => format!("[{a}]"),
    };
    let local = &sender.local;
    let rcpt = rcpt.to_string();
    let s = || sender.to_string();
    vec![
        (s(), rcpt.to_string()),
        (String::new(), rcpt.to_string()),
        (format!("{local}@{ip}"), rcpt.to_string()),
        (s(), format!("{user}%{domain}@{ip}")),
        (s(), format!("\"{user}@{domain}\"")),
        (s(), format!("\"{user}@{domain}\"@{ip}")),
        (s(), format!("{user}@{domain}@{ip}")),
        (s(), format!("@{ip}:{user}@{domain}")),
        (s(), format!("{domain}!{user}@{ip}")),
    ]
}

/// The verdict from the dialogue and the error that ended it, if any.
pub(crate) fn judge(steps: &[Step], error: Option<&str>) -> Finding {
    let Some(greeting) = steps.first() else {
        return abuse::broken(error.unwrap_or("no greeting"));
    };
    if greeting.code != 220 {
        return Finding::new(Verdict::Closed, format!("greeting is {}", greeting.code));
    }
    let accepted = steps
        .iter()
        .position(|s| s.verb() == "RCPT" && matches!(s.code, 250 | 251));
    if let Some(i) = accepted {
        return judge_accepted(&steps[i], steps.get(i + 1..).unwrap_or(&[]), error);
    }
    if let Some(s) = steps.iter().find(|s| s.code == 421) {
        return Finding::new(Verdict::Closed, format!("throttled (421 to {})", s.verb()));
    }
    if let Some(s) = steps.iter().find(|s| s.code == 530) {
        return Finding::new(
            Verdict::Closed,
            format!("authentication required (530 to {})", s.verb()),
        );
    }
    if let Some(s) = steps.iter().find(|s| (400..500).contains(&s.code)) {
        return Finding::new(
            Verdict::Closed,
            format!("deferred ({} to {})", s.code, s.verb()),
        );
    }
    let tried = steps.iter().filter(|s| s.verb() == "RCPT").count();
    match error {
        Some(e) if tried == 0 => abuse::broken(e),
        Some(e) => Finding::new(
            Verdict::Closed,
            format!("refused {tried} address form(s), then {e}"),
        ),
        None if tried == 0 => Finding::new(Verdict::Closed, "refused before any recipient"),
        None => Finding::new(
            Verdict::Closed,
            format!("refused all {tried} address forms"),
        ),
    }
}

/// The verdict once `rcpt` was accepted; `after` holds the DATA step, if one was sent.
fn judge_accepted(rcpt: &Step, after: &[Step], error: Option<&str>) -> Finding {
    let to = rcpt.cmd.trim_start_matches("RCPT TO:");
    match after.iter().find(|s| s.verb() == "DATA") {
        Some(d) if d.code == 354 => Finding::new(
            Verdict::Open,
            format!("confirmed: accepted {to} and DATA (354)"),
        ),
        Some(d) => Finding::new(
            Verdict::Closed,
            format!("accepts any recipient ({to}) but refuses DATA ({})", d.code),
        ),
        None => match error {
            Some(e) => Finding::new(Verdict::ProbablyOpen, format!("accepted {to}, then {e}")),
            None => Finding::new(
                Verdict::Open,
                format!("accepted {to} (not confirmed with DATA)"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testutil::*;
    use custodian_core::Job;

    fn st(cmd: &str, code: u16) -> Step {
        Step {
            cmd: cmd.into(),
            code,
            text: format!("{code} x"),
        }
    }

    fn prologue() -> Vec<Step> {
        vec![st("", 220), st("EHLO custodian.invalid", 250)]
    }

    #[test]
    fn judge_reads_transcripts() {
        let mut s = prologue();
        s.extend([st("MAIL FROM:<a@b>", 250), st("RCPT TO:<c@d>", 554)]);
        assert_eq!(judge(&s, None).verdict, Verdict::Closed);
        s.push(st("RSET", 250));
        s.extend([st("MAIL FROM:<>", 250), st("RCPT TO:<c@d>", 250)]);
        let f = judge(&s, None);
        assert_eq!(f.verdict, Verdict::Open);
        assert!(f.why.contains("not confirmed"), "{f:?}");
        let mut c = s.clone();
        c.push(st("DATA", 354));
        assert_eq!(judge(&c, None).verdict, Verdict::Open);
        assert!(judge(&c, None).why.starts_with("confirmed"));
        s.push(st("DATA", 554));
        let f = judge(&s, None);
        assert_eq!(f.verdict, Verdict::Closed);
        assert!(f.why.contains("refuses DATA"), "{f:?}");
    }

    #[test]
    fn judge_names_deferrals_and_throttles() {
        let mut s = prologue();
        s.extend([st("MAIL FROM:<a@b>", 250), st("RCPT TO:<c@d>", 450)]);
        assert_eq!(judge(&s, None).why, "deferred (450 to RCPT)");
        let mut s = prologue();
        s.push(st("MAIL FROM:<a@b>", 530));
        assert_eq!(judge(&s, None).why, "authentication required (530 to MAIL)");
        let mut s = prologue();
        s.push(st("MAIL FROM:<a@b>", 421));
        assert_eq!(judge(&s, None).why, "throttled (421 to MAIL)");
        assert_eq!(judge(&[st("", 554)], None).verdict, Verdict::Closed);
        // A tarpit that slows down after the first refusal ends at the deadline: not open.
        let mut s = prologue();
        s.extend([st("MAIL FROM:<a@b>", 250), st("RCPT TO:<c@d>", 554)]);
        let f = judge(&s, Some("timed out waiting for a reply"));
        assert_eq!(f.verdict, Verdict::Closed);
        assert_eq!(
            f.why,
            "refused 1 address form(s), then timed out waiting for a reply"
        );
        assert_eq!(
            judge(&[], Some("timed out waiting for the greeting")).verdict,
            Verdict::NoAnswer
        );
    }

    #[test]
    fn address_forms_cover_the_classic_tricks() {
        let m = |t: &str| Mailbox::parse(t).expect("address");
        let f = forms(&m("a@b.test"), &m("u@canary.test"), LOCAL);
        let rcpts: Vec<&str> = f.iter().map(|(_, r)| r.as_str()).collect();
        assert!(rcpts.contains(&"u%canary.test@[127.0.0.1]"));
        assert!(rcpts.contains(&"@[127.0.0.1]:u@canary.test"));
        assert!(rcpts.contains(&"canary.test!u@[127.0.0.1]"));
        assert!(f.iter().any(|(s, _)| s.is_empty()));
        assert!(f.iter().any(|(s, _)| s == "a@[127.0.0.1]"));
    }

    #[test]
    fn mail_addresses_follow_rfc_5321() {
        for good in [
            "probe@relaytest.example.net",
            "a.b+tag@x-y.example",
            "\"odd@local\"@example.net",
            "\"esc\\\"aped\"@example.net",
            "postmaster@[192.0.2.1]",
            "u@[IPv6:2001:db8::1]",
            "u@localhost",
        ] {
            let parsed = Mailbox::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(parsed.to_string(), good);
        }
        let why = |t: &str| Mailbox::parse(t).expect_err(t).msg;
        assert_eq!(
            why("nobody"),
            "`nobody` is not a mail address: it has no @domain"
        );
        assert!(why("@example.net").ends_with("the part before @ is empty"));
        assert!(why("u@").ends_with("the domain after @ is empty"));
        assert!(why("a..b@example.net").contains("neither dot-separated words"));
        assert!(why("u@-bad.example").contains("neither a domain name"));
        assert!(why("u@[300.1.1.1]").contains("neither a domain name"));
        assert!(why("u@bücher.example").contains("only ASCII"));
        assert!(why(&format!("{}@example.net", "a".repeat(65))).contains("longer than 64"));
        assert_eq!(
            Mailbox::parse("nobody").expect_err("hint").hint.as_deref(),
            Some(MAIL_HINT)
        );
    }

    /// Anything that could end the address or the command line early is refused, quoted or
    /// not, and the refusal itself shows control characters escaped.
    #[test]
    fn addresses_that_could_smuggle_commands_are_refused() {
        for bad in [
            "a@b.example>\r\nDATA\r\n",
            "a@b\r\nDATA",
            "a@b.example\n",
            "a@b.example\r",
            "a\u{1b}@b.example",
            "a@b.example\u{0}",
            "a@b.example\u{7f}",
            "<a@b.example>",
            "a>@b.example",
            "a@b.example>",
            "a b@example.net",
            "u@exa mple.net",
            "Name <u@example.net>",
            "\"a b\"@example.net",
            "\"a>b\"@example.net",
            "\"a\\ b\"@example.net",
            "\"a\\\r\"@example.net",
            "\"a\tb\"@example.net",
            " a@b.example",
        ] {
            let e = Mailbox::parse(bad).expect_err(bad);
            assert!(
                e.msg.contains("a plain address has no spaces"),
                "{bad:?}: {}",
                e.msg
            );
            assert!(!e.msg.chars().any(char::is_control), "{:?}", e.msg);
        }
        let e = Mailbox::parse("a@b\r\nDATA").expect_err("crlf");
        assert!(e.msg.starts_with("`a@b\\r\\nDATA` is not"), "{}", e.msg);
        assert_eq!(one_line("RCPT TO:<a@b>"), Ok("RCPT TO:<a@b>"));
        assert!(one_line("RCPT TO:<a@b>\r\nDATA").is_err());
    }

    /// A queued job's options go through the same parser (`prepare`): one carrying CR LF is
    /// refused before any connection, so the server never hears DATA, a body or the dot.
    #[tokio::test]
    async fn a_queued_job_cannot_smuggle_a_message() {
        let (a, heard_log) = scripted("220 mx ESMTP\r\n", open_mta).await;
        let smuggled = "a@b.example>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT";
        for key in ["recipient", "sender"] {
            let mut j = Job::new("openrelay", "127.0.0.1", Some(a.port()));
            j.options.insert(key.into(), smuggled.into());
            let e = crate::prepare(&j).expect_err("refused");
            assert!(e.msg.starts_with(&format!("option `{key}`: ")), "{}", e.msg);
            let c = cx(j.clone(), 3.0);
            let probe = crate::find("openrelay").expect("registered");
            let out = (probe.check)(&c).await;
            assert!(matches!(&out, Outcome::Unknown { .. }), "{out:?}");
            let f = abuse::assess(&c).await.expect("an abuse check");
            assert_eq!(f.verdict, Verdict::Unknown, "{f:?}");
            assert!(!f.why.chars().any(char::is_control), "{f:?}");
        }
        // The same server does record what a valid job says (the recorder works).
        let good = job(a.port(), false);
        assert!(crate::prepare(&good).is_ok());
        let out = (crate::find("openrelay").expect("registered").check)(&cx(good, 3.0)).await;
        assert!(out.is_up(), "{out:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let h = heard(&heard_log);
        assert!(h.iter().any(|l| l.starts_with("RCPT TO:")), "{h:?}");
        assert!(
            !h.iter().any(|l| l == "DATA" || l == "." || l.starts_with("Subject")),
            "{h:?}"
        );
        assert!(h.iter().all(|l| !l.contains("a@b.example")), "{h:?}");
    }

    fn job(port: u16, confirm: bool) -> Job {
        let mut j = Job::new("openrelay", "127.0.0.1", Some(port));
        j.options.insert("recipient".into(), "u@canary.test".into());
        if confirm {
            j.options
                .insert("with_data_confirmation".into(), true.into());
        }
        j
    }

    fn open_mta(line: &str) -> Option<&'static str> {
        match line.split([' ', ':']).next() {
            Some("DATA") => Some("354 go ahead\r\n"),
            Some("QUIT") => Some("221 bye\r\n"),
            _ => Some("250 ok\r\n"),
        }
    }

    fn closed_mta(line: &str) -> Option<&'static str> {
        match line.split([' ', ':']).next() {
            Some("RCPT") => Some("554 5.7.1 Relay access denied\r\n"),
            Some("QUIT") => Some("221 bye\r\n"),
            _ => Some("250 ok\r\n"),
        }
    }

    fn no_data_mta(line: &str) -> Option<&'static str> {
        match line.split([' ', ':']).next() {
            Some("DATA") => Some("554 no thanks\r\n"),
            _ => Some("250 ok\r\n"),
        }
    }

    #[tokio::test]
    async fn open_relay_is_confirmed_and_no_body_is_sent() {
        let (a, heard_log) = scripted("220 mx ESMTP\r\n", open_mta).await;
        let out = check(&cx(job(a.port(), true), 3.0)).await;
        let Outcome::Up { detail: Some(d) } = &out else {
            panic!("{out:?}")
        };
        assert!(d.starts_with("open: confirmed"), "{d}");
        assert!(d.contains("from 127.0.0.1"), "{d}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let h = heard(&heard_log);
        assert_eq!(h.last().map(String::as_str), Some("DATA"), "{h:?}");
    }

    #[tokio::test]
    async fn closed_relay_tries_every_form_with_rset() {
        let (a, heard_log) = scripted("220 mx ESMTP\r\n", closed_mta).await;
        let out = check(&cx(job(a.port(), true), 3.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.starts_with("closed: refused all 9")),
            "{out:?}"
        );
        let h = heard(&heard_log);
        assert_eq!(h.iter().filter(|l| *l == "RSET").count(), 8);
        assert!(!h.iter().any(|l| l == "DATA"));
    }

    #[tokio::test]
    async fn rcpt_without_data_is_told_apart() {
        let (a, _) = scripted("220 mx ESMTP\r\n", no_data_mta).await;
        let out = check(&cx(job(a.port(), true), 3.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.contains("but refuses DATA")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn hung_garbage_and_refused_servers_are_not_open() {
        let a = silent().await;
        let out = check(&cx(job(a.port(), false), 0.4)).await;
        assert!(matches!(&out, Outcome::Down { reason } if reason.starts_with("no-answer")));
        let a = says(b"\x00\x01\x02\x03\xff\xfe\x10\x11\x00\x00\x00\x00\x00\x00\x00\x00\n").await;
        let out = check(&cx(job(a.port(), false), 2.0)).await;
        assert!(
            matches!(&out, Outcome::Down { reason } if reason.contains("garbage")),
            "{out:?}"
        );
        let a = refused().await;
        let out = check(&cx(job(a.port(), false), 2.0)).await;
        assert!(matches!(&out, Outcome::Down { reason } if reason.starts_with("closed")));
    }
}
