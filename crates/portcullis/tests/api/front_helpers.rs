//! Helpers for the production-front tests: a raw HTTP/1.1 client (for
//! request targets a URL library would normalise, hop-by-hop headers and
//! protocol upgrades) and an upstream application that echoes what it got.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A raw exchange's answer.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    /// Lowercased names, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `request` (the whole text, ending in the blank line and body) on a
/// fresh connection and read the answer until the server closes.
pub(crate) async fn raw(addr: &str, request: &str) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes))
        .await
        .expect("no answer within 20 s")
        .unwrap();
    parse(&bytes)
}

/// `GET path` with `Connection: close` and extra header lines.
pub(crate) async fn raw_get(addr: &str, path: &str, extra: &str) -> RawReply {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"),
    )
    .await
}

pub(crate) fn parse(bytes: &[u8]) -> RawReply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    RawReply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&bytes[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

/// An application behind portcullis, on port 0. Every path echoes the
/// request as JSON (`method`, `path`, `query`, `headers` as name → list of
/// values, `body`, `peer`), except paths ending in:
/// - `/slow`: answers after 5 s;
/// - `/unauthorized`: its own 401, without `WWW-Authenticate`;
/// - `/stream`: sends `first`, waits for the test's signal, sends `second`;
/// - `/upload`: tells the test when the first body chunk arrived, then
///   echoes the whole body;
/// - `/ws`: switches protocols and echoes the bytes it is sent.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// The test releases `/stream`'s second chunk with this.
    pub(crate) release: Arc<tokio::sync::Notify>,
    /// `/upload` signals here when the first chunk arrived.
    pub(crate) got_first: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub(crate) async fn start() -> Self {
        let release = Arc::new(tokio::sync::Notify::new());
        let got_first = Arc::new(tokio::sync::Notify::new());
        let (r, g) = (Arc::clone(&release), Arc::clone(&got_first));
        let app = axum::Router::new().fallback(move |request: Request| {
            let (r, g) = (Arc::clone(&r), Arc::clone(&g));
            async move { answer(request, r, g).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            addr,
            release,
            got_first,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn answer(
    mut request: Request,
    release: Arc<tokio::sync::Notify>,
    got_first: Arc<tokio::sync::Notify>,
) -> Response {
    let path = request.uri().path().to_owned();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
        return "late".into_response();
    }
    if path.ends_with("/unauthorized") {
        return (StatusCode::UNAUTHORIZED, "the app says no").into_response();
    }
    if path.ends_with("/stream") {
        let stream = async_stream(release);
        return Response::new(Body::from_stream(stream));
    }
    if path.ends_with("/ws") {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = upgrade.await.unwrap();
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            loop {
                let n = io.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                if io.write_all(&reply).await.is_err() {
                    break;
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Body::empty())
            .unwrap();
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let method = request.method().to_string();
    let query = request.uri().query().map(str::to_owned);
    let mut headers = Map::new();
    for (name, value) in request.headers() {
        let list = headers
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        list.as_array_mut()
            .unwrap()
            .push(json!(String::from_utf8_lossy(value.as_bytes())));
    }
    let mut body = request.into_body().into_data_stream();
    let mut bytes = Vec::new();
    let mut first = true;
    while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
        bytes.extend_from_slice(&chunk.unwrap());
        if first {
            got_first.notify_one();
            first = false;
        }
    }
    let mut response = axum::Json(json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&bytes),
        "peer": peer,
    }))
    .into_response();
    let headers = response.headers_mut();
    headers.insert("x-upstream", HeaderValue::from_static("yes"));
    // Hop-by-hop on the way back: must not reach the client.
    headers.insert("connection", HeaderValue::from_static("x-upstream-hop"));
    headers.insert("x-upstream-hop", HeaderValue::from_static("1"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    response
}

fn async_stream(
    release: Arc<tokio::sync::Notify>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold(0, move |step| {
        let release = Arc::clone(&release);
        async move {
            match step {
                0 => Some((Ok(bytes::Bytes::from_static(b"first")), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(bytes::Bytes::from_static(b"second")), 2))
                }
                _ => None,
            }
        }
    })
}
