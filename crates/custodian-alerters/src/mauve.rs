//! `mauve`: one `AlertUpdate` (proto/mauve.proto, proto2) per notice over UDP to a mauve
//! server (default port 32741). The alert id is the check's stable id; a raise sets
//! `raise_time`, a clear `clear_time`; firing notices carry `suppress_until`: now plus
//! `working_suppress` minutes inside working hours (Monday–Friday, `day_start` to `day_end`
//! local time), else plus `oncall_suppress` minutes (defaults 10, 18, 4, 10).
//! Settings: `mauve_target = HOST[:PORT]`, or `[alerters.mauve]` with `address`, `day_start`,
//! `day_end`, `working_suppress`, `oncall_suppress`; the source is `alert_source`. HOST is an
//! IP or a name (as in the original's `mauve_target = alert.example.com`), resolved when an
//! alert is sent ([`resolve`]), never while settings load.
//! The few fields are encoded and decoded by hand (no protoc at build time), numbered as
//! mauve's published schema (proto/mauve.proto).

use crate::{headline, Alerter, Common, Error};
use chrono::{Datelike, Timelike};
use custodian_core::state::{AlertEvent, EventKind};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::net::SocketAddr;

pub const DEFAULT_PORT: u16 = 32741;

/// Longest suppression, in minutes: ten years.
const MAX_SUPPRESS: u64 = 10 * 365 * 24 * 60;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MauveConfig {
    /// `IP`, `IP:PORT`, `NAME` or `NAME:PORT` of the mauve server.
    pub address: String,
    /// First hour of the working day, local time.
    #[serde(default = "day_start")]
    pub day_start: u32,
    /// Hour the working day ends.
    #[serde(default = "day_end")]
    pub day_end: u32,
    /// Minutes an alert stays suppressed during working hours.
    #[serde(default = "working_suppress")]
    pub working_suppress: u64,
    /// Minutes an alert stays suppressed out of hours.
    #[serde(default = "oncall_suppress")]
    pub oncall_suppress: u64,
}

fn day_start() -> u32 {
    10
}
fn day_end() -> u32 {
    18
}
fn working_suppress() -> u64 {
    4
}
fn oncall_suppress() -> u64 {
    10
}

impl MauveConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(MauveConfig {
            address: target.to_string(),
            day_start: day_start(),
            day_end: day_end(),
            working_suppress: working_suppress(),
            oncall_suppress: oncall_suppress(),
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        resolve::parse(&self.address, DEFAULT_PORT)?;
        if self.day_start >= self.day_end || self.day_end > 24 {
            return Err(Error::Config("need 0 <= day_start < day_end <= 24".into()));
        }
        for (key, minutes) in [
            ("working_suppress", self.working_suppress),
            ("oncall_suppress", self.oncall_suppress),
        ] {
            if minutes > MAX_SUPPRESS {
                return Err(Error::Config(format!(
                    "`{key}` must be a whole number of minutes from 0 to {MAX_SUPPRESS} (ten years), not {minutes}"
                )));
            }
        }
        Ok(())
    }

    /// When a firing alert raised at `now` may next page: `weekday` 0 is Monday, `hour` local.
    pub fn suppress_until(&self, now: u64, weekday: u32, hour: u32) -> u64 {
        let working = weekday < 5 && (self.day_start..self.day_end).contains(&hour);
        let minutes = if working {
            self.working_suppress
        } else {
            self.oncall_suppress
        };
        now.saturating_add(minutes.saturating_mul(60))
    }
}

/// `mauve.proto.Alert`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Alert {
    pub id: String,
    pub subject: Option<String>,
    pub summary: Option<String>,
    pub detail: Option<String>,
    pub raise_time: Option<u64>,
    pub clear_time: Option<u64>,
    pub suppress_until: Option<u64>,
    pub importance: Option<u32>,
}

/// `mauve.proto.AlertUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertUpdate {
    pub transmission_id: u64,
    pub source: String,
    pub replace: bool,
    pub alert: Vec<Alert>,
    /// Not sent by custodian (mauve checks it only when configured to).
    pub signature: Option<Vec<u8>>,
    pub transmission_time: Option<u64>,
}

pub struct MauveAlerter {
    config: MauveConfig,
    target: resolve::Target,
    source: String,
}

impl MauveAlerter {
    pub fn new(config: MauveConfig, common: &Common) -> Result<Self, Error> {
        let target = resolve::Target::new(resolve::parse(&config.address, DEFAULT_PORT)?);
        Ok(MauveAlerter {
            config,
            target,
            source: common.source.clone(),
        })
    }
}

/// The update sent for `event`; `transmission_id` and the local `weekday`/`hour` come in.
pub fn render(
    event: &AlertEvent,
    config: &MauveConfig,
    source: &str,
    transmission_id: u64,
    (weekday, hour): (u32, u32),
) -> AlertUpdate {
    let r = &event.result;
    let firing = event.kind.is_firing();
    let mut detail = format!("<p>{}</p>", escape(&r.line));
    if let Some(reason) = &r.error {
        detail.push_str(&format!("<p>{}</p>", escape(reason)));
    }
    let alert = Alert {
        id: r.id.clone(),
        subject: Some(r.subject.clone().unwrap_or_else(|| r.target.clone())),
        summary: Some(r.otherwise.clone().unwrap_or_else(|| headline(event))),
        detail: Some(detail),
        raise_time: firing.then(|| event.raised_at.unwrap_or(event.at)),
        clear_time: (event.kind == EventKind::Clear).then_some(event.at),
        suppress_until: firing.then(|| config.suppress_until(event.at, weekday, hour)),
        importance: None,
    };
    AlertUpdate {
        transmission_id,
        source: source.to_string(),
        replace: false,
        alert: vec![alert],
        signature: None,
        transmission_time: Some(event.at),
    }
}

/// Mauve shows `detail` as HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Alerter for MauveAlerter {
    fn name(&self) -> &'static str {
        "mauve"
    }

    /// This channel holds the check's alert state: "cannot check" says nothing about the
    /// service, so it must neither raise nor clear here.
    fn wants(&self, kind: EventKind) -> bool {
        !matches!(kind, EventKind::Result | EventKind::CannotCheck)
    }

    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let local = chrono::Local::now();
            let when = (local.weekday().num_days_from_monday(), local.hour());
            let id = rand::random::<u64>();
            let packet = wire::encode(&render(event, &self.config, &self.source, id, when));
            let addr = self.target.addr().await?;
            let bind: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = tokio::net::UdpSocket::bind(bind).await?;
            sock.send_to(&packet, addr).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod published;
pub mod resolve;
pub mod wire;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{event, SECRET};

    #[test]
    fn suppression_depends_on_working_hours() {
        let c = MauveConfig::from_target("127.0.0.1").expect("cfg");
        assert_eq!(c.suppress_until(1000, 0, 10), 1000 + 4 * 60);
        assert_eq!(c.suppress_until(1000, 4, 17), 1000 + 4 * 60);
        assert_eq!(c.suppress_until(1000, 4, 18), 1000 + 10 * 60);
        assert_eq!(c.suppress_until(1000, 2, 9), 1000 + 10 * 60);
        assert_eq!(c.suppress_until(1000, 5, 12), 1000 + 10 * 60);
    }

    #[test]
    fn raise_and_clear_updates() {
        let c = MauveConfig::from_target("127.0.0.1").expect("cfg");
        let raise = render(&event(EventKind::Raise, 'F'), &c, "src", 7, (0, 12));
        let a = &raise.alert[0];
        assert_eq!((raise.transmission_id, raise.replace), (7, false));
        assert_eq!((a.raise_time, a.clear_time), (Some(1_700_000_000), None));
        assert_eq!(a.suppress_until, Some(1_700_000_300 + 240));
        assert_eq!(a.summary.as_deref(), Some("web down"));
        let clear = render(&event(EventKind::Clear, 'P'), &c, "src", 8, (0, 12));
        assert_eq!(
            (clear.alert[0].clear_time, clear.alert[0].raise_time),
            (Some(1_700_000_300), None)
        );
        let back = wire::decode(&wire::encode(&raise)).expect("decode");
        assert_eq!(back, raise);
        assert!(!format!("{raise:?}").contains(SECRET));
    }
}
