//! JSON POST shared by the webhook and Alertmanager alerters: one request, any non-2xx status
//! is a rejection carrying the start of the reply.

use crate::Error;

/// Most of a refusal's body quoted in the error.
const QUOTED: usize = 200;

/// Most of a refusal's body read: a receiver that answers with an endless body must not hold
/// the alert task or grow its memory.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
    let text = error_body(resp).await;
    let quoted: String = text.chars().take(QUOTED).collect();
    Err(Error::Rejected(format!("HTTP {status}: {}", quoted.trim())))
}

/// The start of a refusal's body, at most [`MAX_ERROR_BODY`] bytes; the rest is never read
/// (dropping the response closes the connection). A read error keeps what arrived.
async fn error_body(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A receiver that refuses with a 500 whose body claims a gigabyte and never ends; returns
    /// its URL, the bytes it managed to send, and its task (done when the client hung up).
    async fn endless_refusal() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", l.local_addr().expect("addr"));
        let sent = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req).await;
            let head = "HTTP/1.1 500 X\r\ncontent-length: 1000000000\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'x'; 64 * 1024];
            while s.write_all(&block).await.is_ok() {
                // Stop by ourselves well short of the claimed length if nobody hangs up.
                if count.fetch_add(block.len(), Ordering::SeqCst) > 500_000_000 {
                    return;
                }
            }
        });
        (url, sent, task)
    }

    #[tokio::test]
    async fn a_huge_error_body_is_read_only_in_part() {
        let (url, sent, task) = endless_refusal().await;
        let client = client().expect("client");
        let out = post(&client, &url, b"{}".to_vec(), &[]).await;
        let Err(Error::Rejected(reason)) = out else {
            panic!("a 500 is a rejection: {out:?}");
        };
        assert!(reason.starts_with("HTTP 500"), "{reason}");
        assert!(reason.len() < 300, "{} bytes of reason", reason.len());
        // The client hung up after its cap: the receiver's writes fail long before the end.
        tokio::time::timeout(std::time::Duration::from_secs(30), task)
            .await
            .expect("the receiver saw the client hang up")
            .expect("task");
        let sent = sent.load(Ordering::SeqCst);
        assert!(
            sent < 100_000_000,
            "{sent} bytes were sent before the hang-up"
        );
    }
}
