//! JSON POST shared by the webhook and Alertmanager alerters: one request, any non-2xx status
//! is a rejection carrying the start of the reply.

use crate::Error;

/// Most of a refusal's body quoted in the error.
const QUOTED: usize = 200;

/// A client that never uses a proxy from the environment (alerts go where they are told).
pub(crate) fn client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| Error::Config(format!("cannot build an HTTP client: {e}")))
}

/// POSTs `body` as JSON with the extra `headers`.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<(), Error> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let quoted: String = text.chars().take(QUOTED).collect();
    Err(Error::Rejected(format!("HTTP {status}: {}", quoted.trim())))
}

/// Checks that `url` is an http(s) URL.
pub(crate) fn check_url(url: &str) -> Result<(), Error> {
    let parsed =
        url::Url::parse(url).map_err(|e| Error::Config(format!("bad URL {url:?}: {e}")))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(()),
        _ => Err(Error::Config(format!("{url:?} is not an http(s) URL"))),
    }
}
