//! An in-test HTTP receiver on 127.0.0.1:0: records each request and answers with the next
//! scripted status (the last one repeats).

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// What the receiver answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    Status(u16),
}

/// One received request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

pub(crate) type Requests = Arc<Mutex<Vec<Request>>>;

/// Starts the receiver; returns its base URL and the requests it records.
pub(crate) async fn serve(replies: Vec<Reply>) -> (String, Requests) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Requests = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((s, _)) = listener.accept().await {
            let Reply::Status(code) = replies[n.min(replies.len() - 1)];
            n += 1;
            let mut io = BufReader::new(s);
            let req = read_request(&mut io).await;
            log.lock().expect("lock").push(req);
            let reply =
                format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno");
            let _ = io.get_mut().write_all(reply.as_bytes()).await;
        }
    });
    (url, seen)
}

async fn read_request(io: &mut BufReader<tokio::net::TcpStream>) -> Request {
    let mut first = String::new();
    io.read_line(&mut first).await.expect("request line");
    let path = first.split(' ').nth(1).unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        io.read_line(&mut line).await.expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    io.read_exact(&mut body).await.expect("body");
    Request {
        path,
        headers,
        body,
    }
}
