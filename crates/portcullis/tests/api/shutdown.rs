//! SIGTERM: stop accepting, finish in-flight requests within
//! `SHUTDOWN_TIMEOUT`, exit 0 (the real binary).

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::helpers::{Served, read_raw_reply, serve_in};

const BODY: &str = r#"{"username": "nobody", "password": "wrong"}"#;

/// Half a login body before SIGTERM, the rest after: the request is still
/// answered, new connections are refused meanwhile, and the exit code is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(serve_in(dir.path())).await.unwrap();
    let addr: std::net::SocketAddr = served.addr.parse().unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (first, rest) = BODY.split_at(20);
    stream
        .write_all(
            format!(
                "POST /api/token/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
                BODY.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The request has reached the server before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    served.signal("TERM").await;
    served.wait_for_log("shutdown signal received").await;

    // No new connections.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stream.write_all(rest.as_bytes()).await.unwrap();
    let reply = read_raw_reply(&mut stream).await.unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.body,
        r#"{"detail":"No active account found with the given credentials"}"#
    );
    let (code, log) = served.exit().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("portcullis stopped"), "{log}");
    // Its access line, answered just before the exit, is not lost in the
    // log's buffer (written every 100 ms otherwise): the shutdown flushes it.
    assert!(
        log.contains("method=POST path=/api/token/ route=/api/token/ version=HTTP/1.1 status=401"),
        "{log}"
    );
}

/// A request that never completes is cut at `SHUTDOWN_TIMEOUT`, and the
/// server still exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_in(dir.path());
    command.env("PORTCULLIS_SHUTDOWN_TIMEOUT", "1");
    let served = Served::start(command).await.unwrap();
    let addr: std::net::SocketAddr = served.addr.parse().unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/token/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    served.signal("TERM").await;
    let (code, log) = served.exit().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("SHUTDOWN_TIMEOUT passed; closing the connections still open"),
        "{log}"
    );
    assert!(read_raw_reply(&mut stream).await.is_none());
}
