//! The limits, over raw sockets where a well-behaved client cannot break
//! them: body and header sizes, the request timeout, the connection cap,
//! the keep-alive timeout and slow clients (slowloris).

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, closed_within, read_raw_reply};

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_bytes_get_413_on_every_route() {
    let app = TestApp::spawn(Backend::Sqlite, "max_body_bytes = 1024\n").await;
    let big = "x".repeat(2000);
    let expected = r#"{"detail":"Request body is larger than the limit of 1024 bytes."}"#;
    for path in ["/api/token/verify/", "/healthz", "/no/such/route"] {
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
        assert_eq!(response.text().await.unwrap(), expected, "{path}");
    }
    // Chunked, without a length: cut while it is read.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let body = format!("{{\"token\": \"{}\"}}", "a".repeat(4000));
    stream
        .write_all(
            format!(
                "POST /api/token/verify/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let reply = read_raw_reply(&mut stream).await.unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.body, expected);
    // At the limit is fine.
    let response = app
        .client
        .post(app.url("/api/token/verify/"))
        .json(&serde_json::json!({"token": "a".repeat(900)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_max_header_bytes_get_431() {
    let app = TestApp::spawn(Backend::Sqlite, "max_header_bytes = 8192\n").await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-padding", "p".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-padding", "p".repeat(4_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

/// A body that stops arriving: 408 with a body that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_request_timeout_gets_408() {
    let app = TestApp::spawn(Backend::Sqlite, "request_timeout = 1\n").await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/token/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\": ",
        )
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(20), read_raw_reply(&mut stream))
        .await
        .expect("no answer within 20 s")
        .expect("the connection closed without an answer");
    assert_eq!(reply.status, 408);
    assert_eq!(
        reply.body,
        r#"{"detail":"The request was not completed within 1 seconds (REQUEST_TIMEOUT).","code":"request_timeout"}"#
    );
    assert!(reply.head.contains("connection: close"), "{}", reply.head);
    assert!(
        reply.head.contains("content-type: application/json"),
        "{}",
        reply.head
    );
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
    app.stop().await;
}

/// With `MAX_CONNECTIONS = 1`, a second connection waits until the first
/// closes, and is then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait() {
    let app = TestApp::spawn(Backend::Sqlite, "max_connections = 1\n").await;
    let mut first = TcpStream::connect(app.addr).await.unwrap();
    first.write_all(HEALTH).await.unwrap();
    assert_eq!(read_raw_reply(&mut first).await.unwrap().status, 200);

    let mut second = TcpStream::connect(app.addr).await.unwrap();
    second.write_all(HEALTH).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(800), read_raw_reply(&mut second)).await;
    assert!(early.is_err(), "served beyond MAX_CONNECTIONS: {early:?}");

    // The first keeps working while the second waits.
    first.write_all(HEALTH).await.unwrap();
    assert_eq!(read_raw_reply(&mut first).await.unwrap().status, 200);

    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(20), read_raw_reply(&mut second))
        .await
        .expect("the waiting connection was never served")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"status":"ok"}"#);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_keep_alive_timeout() {
    let app = TestApp::spawn(Backend::Sqlite, "keep_alive_timeout = 1\n").await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(read_raw_reply(&mut stream).await.unwrap().status, 200);
    assert!(
        closed_within(&mut stream, Duration::from_secs(15)).await,
        "an idle connection stayed open"
    );
    app.stop().await;
}

/// Slowloris: headers at a byte a second, and a client that sends nothing,
/// are both cut at `HEADER_READ_TIMEOUT`; meanwhile others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_at_header_read_timeout() {
    let app = TestApp::spawn(Backend::Sqlite, "header_read_timeout = 2\n").await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let dripping = tokio::spawn(async move {
        let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n\r\n";
        for byte in request {
            if slow.write_all(&[*byte]).await.is_err() {
                return (true, slow);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        (false, slow)
    });
    // Others are served meanwhile.
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let (cut_while_writing, mut slow) = dripping.await.unwrap();
    // The request takes ~50 s to send; the server cut it long before.
    assert!(
        cut_while_writing || closed_within(&mut slow, Duration::from_secs(1)).await,
        "the slow client was not cut"
    );
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await);
    assert_eq!(app.get("/healthz", None).await.status, 200);
    app.stop().await;
}

/// The head of a kept-alive connection's next request has the same
/// `HEADER_READ_TIMEOUT`, counted from its first byte: waiting idle before
/// it does not count, dripping it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_request_head_that_drips_is_cut_at_header_read_timeout() {
    let app = TestApp::spawn(Backend::Sqlite, "header_read_timeout = 2\n").await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(read_raw_reply(&mut stream).await.unwrap().status, 200);
    // Idle for longer than HEADER_READ_TIMEOUT, then a whole request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stream.write_all(HEALTH).await.unwrap();
    let reply = read_raw_reply(&mut stream).await.unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    // Then a head a byte every 300 ms: 44 bytes would take 13 s.
    let mut cut_while_writing = false;
    for byte in HEALTH {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_while_writing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        cut_while_writing || closed_within(&mut stream, Duration::from_secs(1)).await,
        "the dripping head was not cut"
    );
    app.stop().await;
}
