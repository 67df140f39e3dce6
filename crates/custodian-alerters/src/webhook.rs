//! `webhook`: one JSON POST per notice (schema: [`crate::event_json`]), retried with backoff
//! by the dispatcher; any non-2xx answer counts as a failure. With a `secret`, the body is
//! signed: header `X-Custodian-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//! Settings: `webhook_target = URL`, or `[alerters.webhook]` with `url` and `secret`.

use crate::http_json::{self, check_url};
use crate::{event_json, Alerter, Common, Error};
use custodian_core::state::AlertEvent;
use futures::future::BoxFuture;
use hmac::{KeyInit, Mac};
use serde::Deserialize;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-custodian-signature";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Key of the HMAC-SHA256 signature; unsigned when absent.
    pub secret: Option<String>,
}

impl WebhookConfig {
    pub fn from_target(target: &str) -> Result<Self, Error> {
        Ok(WebhookConfig {
            url: target.to_string(),
            secret: None,
        })
    }

    pub fn validate(&self) -> Result<(), Error> {
        check_url(&self.url)?;
        if self.secret.as_deref() == Some("") {
            return Err(Error::Config("secret is empty".into()));
        }
        Ok(())
    }
}

pub struct WebhookAlerter {
    config: WebhookConfig,
    source: String,
    client: reqwest::Client,
}

impl WebhookAlerter {
    pub fn new(config: WebhookConfig, common: &Common) -> Result<Self, Error> {
        Ok(WebhookAlerter {
            config,
            source: common.source.clone(),
            client: http_json::client()?,
        })
    }
}

/// The body POSTed for `event`.
pub fn render(event: &AlertEvent, source: &str) -> Vec<u8> {
    event_json(event, source).to_string().into_bytes()
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Alerter for WebhookAlerter {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, event: &'a AlertEvent) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let body = render(event, &self.source);
            let headers: Vec<(&str, String)> = self
                .config
                .secret
                .iter()
                .map(|s| (SIGNATURE_HEADER, sign(s, &body)))
                .collect();
            http_json::post(&self.client, &self.config.url, body, &headers).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{event, SECRET};
    use crate::testutil_http::{serve, Reply};
    use custodian_core::state::EventKind;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = render(&event(EventKind::Raise, 'F'), "s");
        assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    }

    #[tokio::test]
    async fn posts_signed_json_and_fails_on_errors() {
        let (url, requests) = serve(vec![Reply::Status(500), Reply::Status(200)]).await;
        let cfg = WebhookConfig { url: format!("{url}/hook"), secret: Some("k".into()) };
        cfg.validate().expect("valid");
        let a = WebhookAlerter::new(cfg, &Common { source: "s".into() }).expect("alerter");
        let e = event(EventKind::Raise, 'F');
        assert!(matches!(a.deliver(&e).await, Err(Error::Rejected(m)) if m.contains("500")));
        a.deliver(&e).await.expect("second try");
        let got = requests.lock().expect("lock").clone();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].path, "/hook");
        assert_eq!(got[1].header(SIGNATURE_HEADER), Some(sign("k", &got[1].body)));
        let v: serde_json::Value = serde_json::from_slice(&got[1].body).expect("json");
        assert_eq!(v["event"], "raise");
    }
}
