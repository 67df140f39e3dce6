//! `pop3s`: the `pop3` check inside implicit TLS, default port 995.
//!
//! Syntax: `HOST must run pop3s [on PORT] [with banner 'REGEX'] [with tls insecure]
//! [and cannot expire within N days] [with username 'U' with password 'P'].` The certificate
//! must be valid for the target's name (or IP) and stay valid N more days (default 14);
//! `with tls insecure` skips the name and chain, not the limit.
//! Down reasons: `TLS handshake on port N failed: …` (expired, not yet valid, wrong name,
//! untrusted, alert, connection closed); `certificate expires in N days (at DATE), less than
//! M`; then those of `pop3`.
//! Example: `mail1 must run pop3s with username 'probe' with password 'secret'.`

use crate::pop3::{self, BANNER_PARAM, PASSWORD_PARAM, USERNAME_PARAM};
use crate::tls::{EXPIRE_PARAM, INSECURE_PARAM};
use crate::Ctx;
use custodian_core::{Outcome, ProbeSpec, TargetKind};

pub(crate) static SPEC: ProbeSpec = ProbeSpec {
    name: "pop3s",
    aliases: &[],
    target: TargetKind::Host,
    default_port: Some(995),
    port_required: false,
    takes_port: true,
    params: &[
        BANNER_PARAM,
        INSECURE_PARAM,
        EXPIRE_PARAM,
        USERNAME_PARAM,
        PASSWORD_PARAM,
    ],
    summary: "the server greets with +OK over verified TLS (and accepts USER/PASS when asked)",
    example: "127.0.0.1 must run pop3s on 995 with tls insecure otherwise 'pop3s down'.",
    check: None,
    scan: None,
};

pub(crate) async fn check(cx: &Ctx) -> Outcome {
    pop3::run(cx, true).await
}
