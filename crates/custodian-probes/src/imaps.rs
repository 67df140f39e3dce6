//! `imaps`: the `imap` check inside implicit TLS, default port 993.
//!
//! Syntax: `HOST must run imaps [on PORT] [with banner 'REGEX'] [with tls insecure]
//! [and cannot expire within N days] [with username 'U' with password 'P'].` The certificate
//! must be valid for the target's name (or IP) and stay valid N more days (default 14);
//! `with tls insecure` skips the name and chain, not the limit.
//! Down reasons: `TLS handshake on port N failed: …` (expired, not yet valid, wrong name,
//! untrusted, alert, connection closed); `certificate expires in N days (at DATE), less than
//! M`; then those of `imap`.
//! Example: `mail1 must run imaps with username 'probe' with password 'secret'.`

use crate::imap::{self, BANNER_PARAM, PASSWORD_PARAM, USERNAME_PARAM};
use crate::tls::{EXPIRE_PARAM, INSECURE_PARAM};
use crate::Ctx;
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "imaps",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(993),
    port_required: false,
    takes_port: true,
    params: &[
        BANNER_PARAM,
        INSECURE_PARAM,
        EXPIRE_PARAM,
        USERNAME_PARAM,
        PASSWORD_PARAM,
    ],
    summary: "the server greets with * OK over verified TLS (and accepts LOGIN when asked)",
    example: "127.0.0.1 must run imaps on 993 and cannot expire within 30 days \
              otherwise 'imaps down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    imap::run(cx, true).await
}
