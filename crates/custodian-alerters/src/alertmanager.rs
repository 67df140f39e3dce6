//! `alertmanager`: Prometheus Alertmanager's v2 API (`POST <url>/api/v2/alerts`). A firing
//! notice (raise, still failing, flapping) posts the alert with `startsAt` = the raise time and
//! no `endsAt`; so does every failed result of a raised check, which keeps the alert active
//! whatever `renotify` is (Alertmanager resolves alerts not re-sent within its
//! `resolve_timeout`); a clear posts it again with `endsAt` = now, which resolves it.
//! Labels: `alertname` (default `CustodianCheckFailed`), `type`, `target`, `subject`;
//! annotations: `summary` (the headline) and `description` (reason, otherwise text, line).
//! Settings: `alertmanager_target = URL`, or `[alerters.alertmanager]` with `url`,
//! `alertname` and `generator_url`.

use crate::http_json::{self, check_url};
use crate::{headline, Alerter, Common, Error};
use custodian_core::state::{AlertEvent, EventKind};
use futures::future::BoxFuture;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
    #[serde(default = "default_alertname")]
    pub alertname: String,
    /// Link shown by Alertmanager as the alert's source.
    pub generator_url: Option<String>,
    /// Re-post a raised alert on every failed result (default true).
    #[serde(default = "keep_alive_default")]
    pub keep_alive: bool,
}

fn keep_alive_default() -> bool {
    true
}

fn default_alertname() -> String {
    "CustodianCheckFailed".into()
}

impl AlertmanagerConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(AlertmanagerConfig {
            url: target.to_string(),
            alertname: default_alertname(),
            generator_url: None,
            keep_alive: true,
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        check_url(&self.url)?;
        if let Some(g) = &self.generator_url {
            check_url(g)?;
        }
        if self.alertname.is_empty() {
            return Err(Error::Config("alertname is empty".into()));
        }
        Ok(())
    }
}

pub struct AlertmanagerAlerter {
    config: AlertmanagerConfig,
    endpoint: String,
    client: reqwest::Client,
}

impl AlertmanagerAlerter {
    pub fn new(config: AlertmanagerConfig, _: &Common) -> Result<Self, Error> {
        let endpoint = format!("{}/api/v2/alerts", config.url.trim_end_matches('/'));
        Ok(AlertmanagerAlerter {
            config,
            endpoint,
            client: http_json::client()?,
        })
    }
}

/// A failed result of a raised check, as the still-failing notice that re-posts its alert.
fn keep_alive(event: &AlertEvent) -> Option<AlertEvent> {
    let failing = event.result.status == custodian_core::Status::Failed;
    (event.kind == EventKind::Result && failing && event.raised_at.is_some()).then(|| AlertEvent {
        kind: EventKind::StillFailing,
        ..event.clone()
    })
}

/// RFC 3339 for unix seconds.
fn rfc3339(secs: u64) -> String {
    let t = chrono::DateTime::from_timestamp(secs.min(i64::MAX as u64) as i64, 0).unwrap_or_default();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The JSON array posted for `event`.
pub fn render(event: &AlertEvent, config: &AlertmanagerConfig) -> serde_json::Value {
    let r = &event.result;
    let mut description = r.error.clone().unwrap_or_default();
    if let Some(o) = &r.otherwise {
        description.push_str(&format!("\n{o}"));
    }
    description.push_str(&format!("\n{} ({}:{})", r.line, r.file, r.lineno));
    let mut alert = serde_json::json!({
        "labels": {
            "alertname": config.alertname,
            "type": r.probe,
            "target": r.target,
            "subject": r.subject.as_deref().unwrap_or(&r.target),
        },
        "annotations": {
            "summary": headline(event),
            "description": description.trim(),
        },
        "startsAt": rfc3339(event.raised_at.unwrap_or(event.at)),
    });
    if event.kind == EventKind::Clear {
        alert["endsAt"] = rfc3339(event.at).into();
    }
    if let Some(g) = &config.generator_url {
        alert["generatorURL"] = g.clone().into();
    }
    serde_json::json!([alert])
}

impl Alerter for AlertmanagerAlerter {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn wants(&self, kind: EventKind) -> bool {
        // "Cannot check" says nothing about the service: it must not fire or resolve here.
        kind != EventKind::CannotCheck && (kind != EventKind::Result || self.config.keep_alive)
    }

    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let refreshed;
            let event = match keep_alive(event) {
                Some(e) => {
                    refreshed = e;
                    &refreshed
                }
                None if event.kind == EventKind::Result => return Ok(()),
                None => event,
            };
            let body = render(event, &self.config).to_string().into_bytes();
            http_json::post(&self.client, &self.endpoint, body, &[]).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{event, SECRET};
    use crate::testutil_http::{serve, Reply};

    #[test]
    fn firing_and_resolved_alerts() {
        let cfg = AlertmanagerConfig::from_target("http://127.0.0.1:9093").expect("cfg");
        let raise = render(&event(EventKind::Raise, 'F'), &cfg);
        assert_eq!(raise[0]["labels"]["alertname"], "CustodianCheckFailed");
        assert_eq!(raise[0]["labels"]["type"], "http");
        assert_eq!(raise[0]["startsAt"], "2023-11-14T22:13:20Z");
        assert!(raise[0].get("endsAt").is_none());
        let clear = render(&event(EventKind::Clear, 'P'), &cfg);
        assert_eq!(clear[0]["endsAt"], "2023-11-14T22:18:20Z");
        assert!(!raise.to_string().contains(SECRET) && !clear.to_string().contains(SECRET));
    }

    #[test]
    fn failed_results_of_raised_checks_keep_the_alert_alive() {
        let mut e = event(EventKind::Result, 'F');
        assert_eq!(keep_alive(&e).map(|k| k.kind), Some(EventKind::StillFailing));
        e.raised_at = None;
        assert!(keep_alive(&e).is_none(), "not raised (yet)");
        assert!(keep_alive(&event(EventKind::Result, 'P')).is_none());
        assert!(keep_alive(&event(EventKind::Raise, 'F')).is_none());
    }

    #[tokio::test]
    async fn posts_to_the_v2_api() {
        let (url, requests) = serve(vec![Reply::Status(200)]).await;
        let cfg = AlertmanagerConfig::from_target(&format!("{url}/")).expect("cfg");
        let a = AlertmanagerAlerter::new(cfg, &Common { source: "s".into() }).expect("alerter");
        a.deliver(&event(EventKind::Raise, 'F')).await.expect("deliver");
        let got = requests.lock().expect("lock").clone();
        assert_eq!(got[0].path, "/api/v2/alerts");
        let v: serde_json::Value = serde_json::from_slice(&got[0].body).expect("json");
        assert_eq!(v[0]["annotations"]["summary"], "RAISE: http://bob:********@127.0.0.1:8080/ (http) - HTTP 500 for ********");
    }
}
