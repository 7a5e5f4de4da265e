//! Idle HTTP/1.1 keep-alive connections are parked: hyper's state is
//! dropped and the socket waits alone (`portcullis_parked_connections`).
//! A parked connection serves its next request on the same socket, keeps
//! the bytes of a request begun before the park, and still closes at
//! `KEEP_ALIVE_TIMEOUT` and on shutdown. HTTP/2 by prior knowledge is told
//! apart from HTTP/1.1 by its first bytes.

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::helpers::{Served, TestCert, closed_within, read_raw_reply, serve_in};

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
const OK: &str = r#"{"status":"ok"}"#;

/// `portcullis_parked_connections` of the main listener, scraped over a
/// connection of its own that is closed at once (so never parked).
async fn parked(served: &Served) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    parked_with(&client, &served.url("/metrics")).await
}

async fn parked_with(client: &reqwest::Client, metrics: &str) -> f64 {
    let page = client
        .get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|line| line.strip_prefix(r#"portcullis_parked_connections{listener="main"} "#))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Wait (at most 20 s) until `want` connections are parked.
async fn until_parked(served: &Served, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = parked(served).await;
        if (now - want).abs() < f64::EPSILON {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} connections parked, not {want}\n{}",
            served.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ask(stream: &mut TcpStream, request: &[u8]) -> (u16, String) {
    stream.write_all(request).await.unwrap();
    let reply = read_raw_reply(stream).await.expect("no reply");
    (reply.status, reply.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_parked_and_serves_its_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(serve_in(dir.path())).await.unwrap();
    let mut stream = TcpStream::connect(&served.addr).await.unwrap();
    assert_eq!(ask(&mut stream, HEALTH).await, (200, OK.to_owned()));
    until_parked(&served, 1.0).await;

    // The same socket, served by a new HTTP state.
    assert_eq!(ask(&mut stream, HEALTH).await, (200, OK.to_owned()));
    until_parked(&served, 1.0).await;

    // A request with a body after a second park.
    let body = r#"{"token":"not-a-token"}"#;
    let verify = format!(
        "POST /api/token/verify/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        ask(&mut stream, verify.as_bytes()).await,
        (
            401,
            r#"{"detail":"Token is invalid","code":"token_not_valid"}"#.to_owned()
        )
    );
    drop(stream);
    until_parked(&served, 0.0).await;
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_begun_before_the_park_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(serve_in(dir.path())).await.unwrap();
    let mut stream = TcpStream::connect(&served.addr).await.unwrap();
    // A whole request and the start of the next in one write: hyper reads
    // both, answers the first, and holds the rest when the idle connection
    // is parked.
    let mut pipelined = HEALTH.to_vec();
    pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHo");
    assert_eq!(ask(&mut stream, &pipelined).await, (200, OK.to_owned()));
    // Far longer than the 50 ms after which an idle connection is
    // parked, shorter than HEADER_READ_TIMEOUT.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ask(&mut stream, b"st: localhost\r\n\r\n").await,
        (200, OK.to_owned())
    );
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_close_at_keep_alive_timeout_and_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_in(dir.path());
    command.env("PORTCULLIS_KEEP_ALIVE_TIMEOUT", "3");
    let served = Served::start(command).await.unwrap();
    let mut stream = TcpStream::connect(&served.addr).await.unwrap();
    assert_eq!(ask(&mut stream, HEALTH).await, (200, OK.to_owned()));
    until_parked(&served, 1.0).await;
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)).await,
        "a parked connection outlived KEEP_ALIVE_TIMEOUT"
    );
    until_parked(&served, 0.0).await;
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");

    // On SIGTERM a parked connection is closed at once: it holds no
    // request, so the drain does not wait for it (SHUTDOWN_TIMEOUT is 30 s;
    // `exit` gives the process 20).
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(serve_in(dir.path())).await.unwrap();
    let mut stream = TcpStream::connect(&served.addr).await.unwrap();
    assert_eq!(ask(&mut stream, HEALTH).await, (200, OK.to_owned()));
    until_parked(&served, 1.0).await;
    // Seen closed while the process may still be stopping, not because it
    // has exited.
    served.signal("TERM").await;
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "a parked connection stayed open after SIGTERM"
    );
    let (code, log) = served.exit().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains("SHUTDOWN_TIMEOUT passed"),
        "the parked connection held the drain:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_by_prior_knowledge_is_served_on_plain_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(serve_in(dir.path())).await.unwrap();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..2 {
        let response = client.get(served.url("/healthz")).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), OK);
    }
    // HTTP/2 connections are never parked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(parked(&served).await.abs() < f64::EPSILON);
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_is_parked_and_serves_its_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path(), "server");
    let mut command = serve_in(dir.path());
    command
        .env("PORTCULLIS_TLS_CERT_FILE", &cert.cert_file)
        .env("PORTCULLIS_TLS_KEY_FILE", &cert.key_file);
    let served = Served::start(command).await.unwrap();
    let addr: std::net::SocketAddr = served.addr.parse().unwrap();
    let base = format!("https://localhost:{}", addr.port());
    // One kept-alive HTTP/1.1 connection; each scrape on a client of its
    // own, dropped (and so closed) after it.
    let kept = cert.client(addr, true);
    let scrape =
        || async { parked_with(&cert.client(addr, true), &format!("{base}/metrics")).await };
    let health = format!("{base}/healthz");
    for _ in 0..3 {
        let response = kept.get(&health).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), OK);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while (scrape().await - 1.0).abs() >= f64::EPSILON {
            assert!(tokio::time::Instant::now() < deadline, "{}", served.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(kept);
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
}
