//! `smtps`: the `smtp` check inside implicit TLS (RFC 8314), default port 465.
//!
//! Syntax: `HOST must run smtps [on PORT] [with banner 'REGEX'] [with tls insecure]
//! [and cannot expire within N days] [with username 'U' with password 'P'].` The certificate
//! must be valid for the target's name (or IP) and stay valid N more days (default 14);
//! `with tls insecure` skips the name and chain, not the limit. Credentials are sent inside
//! the TLS session.
//! Down reasons: `TLS handshake on port N failed: …` (expired, not yet valid, wrong name,
//! untrusted, alert, connection closed); `certificate expires in N days (at DATE), less than
//! M`; then those of `smtp`.
//! Example: `mail1 must run smtps with username 'probe' with password 'secret'.`

use crate::smtp::{self, BANNER_PARAM, PASSWORD_PARAM, USERNAME_PARAM};
use crate::tls::{EXPIRE_PARAM, INSECURE_PARAM};
use crate::Ctx;
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "smtps",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(465),
    port_required: false,
    takes_port: true,
    params: &[
        BANNER_PARAM,
        INSECURE_PARAM,
        EXPIRE_PARAM,
        USERNAME_PARAM,
        PASSWORD_PARAM,
    ],
    summary: "the server greets with 220 over verified TLS and accepts EHLO (and AUTH when asked)",
    example: "127.0.0.1 must run smtps on 465 with username 'probe' with password 'secret' \
              otherwise 'smtps down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    smtp::run(cx, true).await
}
