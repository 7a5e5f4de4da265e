//! Hostile requests across the API: huge and deeply nested bodies, invalid
//! UTF-8 wherever bytes go, wrong content types, floods of headers. Each
//! gets a 4xx, never a 500 or a dead server, and memory stays bounded by
//! `MAX_BODY_BYTES` (a body is never read past the limit).

use std::fmt::Write as _;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{Backend, TestApp};

/// Send raw bytes as a request; the status and body of the answer, read
/// by its `Content-Length` (the server may answer before reading all we
/// sent, and need not close the connection at once).
async fn raw(app: &TestApp, request: &[u8]) -> (u16, String) {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A write may fail once the server has answered and stopped reading.
    let _ = stream.write_all(request).await;
    let read = async {
        let mut response = Vec::new();
        let mut buf = [0_u8; 8192];
        loop {
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if response.len() >= end + 4 + length {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    let body = &response[end + 4..end + 4 + length];
                    return (status, String::from_utf8_lossy(body).into_owned());
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => panic!("connection closed before a whole answer: {response:?}"),
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("an answer within 30 s")
}

fn request(method: &str, path: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

async fn post(app: &TestApp, content_type: &[u8], body: &[u8]) -> (u16, String) {
    raw(
        app,
        &request(
            "POST",
            b"/api/token/",
            &[("Content-Type", content_type)],
            body,
        ),
    )
    .await
}

/// The server still answers normally.
async fn alive(app: &TestApp) {
    let reply = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

const TOO_LARGE: &str = r#"{"detail":"Request body is larger than the limit of 65536 bytes."}"#;

async fn server() -> TestApp {
    let app = TestApp::spawn(Backend::Sqlite, "max_body_bytes = 65536\n").await;
    app.user("alice", "alice-pass", true, false).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_are_refused_unread() {
    let app = server().await;
    let big = format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(70_000));
    assert_eq!(
        post(&app, b"application/json", big.as_bytes()).await,
        (413, TOO_LARGE.to_owned())
    );
    let form = format!("username={}&password=x", "a".repeat(70_000));
    let form_reply = post(&app, b"application/x-www-form-urlencoded", form.as_bytes()).await;
    assert_eq!(form_reply, (413, TOO_LARGE.to_owned()));
    // A Content-Length of 10 GB with nothing behind it: refused at once,
    // nothing is allocated for it.
    let lying = b"POST /api/token/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{}";
    assert_eq!(raw(&app, lying).await, (413, TOO_LARGE.to_owned()));
    // Chunked, without a length: reading stops at the limit.
    let mut chunked = b"POST /api/token/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 8192, "[".repeat(8192)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(&app, &chunked).await, (413, TOO_LARGE.to_owned()));
    // Multipart, one field over the limit and many small ones.
    let boundary = "XyZ";
    let mut multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{}\r\n",
        "a".repeat(70_000)
    );
    write!(multipart, "--{boundary}--\r\n").unwrap();
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let reply = post(&app, content_type.as_bytes(), multipart.as_bytes()).await;
    assert_eq!(reply, (413, TOO_LARGE.to_owned()));
    let mut many = String::new();
    for i in 0..5000 {
        write!(
            many,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nvalue-value\r\n"
        )
        .unwrap();
    }
    write!(many, "--{boundary}--\r\n").unwrap();
    let reply = post(&app, content_type.as_bytes(), many.as_bytes()).await;
    assert_eq!(reply, (413, TOO_LARGE.to_owned()));
    alive(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_a_parse_error() {
    let app = server().await;
    let deep = "[".repeat(60_000);
    let (status, body) = post(&app, b"application/json", deep.as_bytes()).await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            r#"{"detail":"JSON parse error - Nesting deeper than 128 levels: line 1 column 128 (char 127)"}"#
        )
    );
    let nested = format!(r#"{{"username":{}"#, "{\"a\":".repeat(10_000));
    let (status, body) = post(&app, b"application/json", nested.as_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with(r#"{"detail":"JSON parse error - Nesting deeper than 128 levels"#),
        "{body}"
    );
    // Nested just within the limit: parsed, then refused as a field error.
    let ok_depth = format!(
        r#"{{"username":{}1{},"password":"x"}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let (status, body) = post(&app, b"application/json", ok_depth.as_bytes()).await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"username":["Not a valid string."]}"#)
    );
    alive(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_everywhere() {
    let app = server().await;
    // JSON: Python's UnicodeDecodeError wording, as DRF shows it.
    let (status, body) = post(
        &app,
        b"application/json",
        b"{\"username\":\"\xff\",\"password\":\"x\"}",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            r#"{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xff in position 13: invalid start byte"}"#
        )
    );
    // Form and multipart decode like Django (replacement characters): the
    // login simply fails.
    let no_account = r#"{"detail":"No active account found with the given credentials"}"#;
    for form in [
        &b"username=%FF%FE&password=x"[..],
        b"username=\xff\xfe&password=\xc3",
    ] {
        let reply = post(&app, b"application/x-www-form-urlencoded", form).await;
        assert_eq!((reply.0, reply.1.as_str()), (401, no_account));
    }
    let multipart = b"--b\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n\xff\xfe\r\n--b\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nx\r\n--b--\r\n";
    let reply = post(&app, b"multipart/form-data; boundary=b", multipart).await;
    assert_eq!((reply.0, reply.1.as_str()), (401, no_account));
    // A field name that is not UTF-8.
    let multipart = b"--b\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\nx\r\n--b--\r\n";
    let (status, _) = post(&app, b"multipart/form-data; boundary=b", multipart).await;
    assert!((400..500).contains(&status), "{status}");
    // Headers: a bearer token that is not UTF-8 is an invalid token.
    let (status, body) = raw(
        &app,
        &request(
            "GET",
            b"/api/users/me/",
            &[("Authorization", b"Bearer \xff\xfe.\x80.\xc3")],
            b"",
        ),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(r#""message":"Token is invalid""#), "{body}");
    let (status, body) = raw(
        &app,
        &request(
            "POST",
            b"/api/token/",
            &[("Content-Type", b"application/\xffjson")],
            b"{}",
        ),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(
        body.starts_with(r#"{"detail":"Unsupported media type"#),
        "{body}"
    );
    // Paths: percent-encoded garbage is just not found; raw bytes are
    // refused by the HTTP parser itself.
    let (status, body) = raw(&app, &request("GET", b"/api/%FF%FE/", &[], b"")).await;
    assert_eq!((status, body.as_str()), (404, r#"{"detail":"Not found."}"#));
    let (status, _) = raw(&app, &request("GET", b"/api/\xff/", &[], b"")).await;
    assert_eq!(status, 400);
    alive(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_types() {
    let app = server().await;
    let body = br#"{"username":"alice","password":"alice-pass"}"#;
    for content_type in [
        &b"text/plain"[..],
        b"application/xml",
        b"application/jsonx",
        b"*/*",
        b"",
    ] {
        let (status, reply) = post(&app, content_type, body).await;
        let expected = format!(
            r#"{{"detail":"Unsupported media type \"{}\" in request."}}"#,
            String::from_utf8_lossy(content_type)
        );
        assert_eq!((status, reply), (415, expected));
    }
    // The right type with the wrong body.
    let (status, reply) = post(&app, b"application/json", b"username=alice&password=x").await;
    assert_eq!(
        (status, reply.as_str()),
        (
            400,
            r#"{"detail":"JSON parse error - Expecting value: line 1 column 1 (char 0)"}"#
        )
    );
    // Multipart without a boundary, or with a body that is not multipart.
    for content_type in [
        &b"multipart/form-data"[..],
        b"multipart/form-data; boundary=zz",
    ] {
        let (status, reply) = post(&app, content_type, body).await;
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.starts_with(r#"{"detail":"Multipart form parse error - "#),
            "{reply}"
        );
    }
    alive(&app).await;
}

/// Floods of headers, and huge ones, are refused by the HTTP parser before
/// any handler runs (hyper answers 431 with an empty body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_floods() {
    let app = server().await;
    let names: Vec<String> = (0..5000).map(|i| format!("X-Flood-{i}")).collect();
    let headers: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
    let (status, _) = raw(&app, &request("GET", b"/healthz", &headers, b"")).await;
    assert_eq!(status, 431);
    let huge = vec![b'a'; 1024 * 1024];
    let (status, _) = raw(
        &app,
        &request("GET", b"/api/users/me/", &[("Authorization", &huge)], b""),
    )
    .await;
    assert_eq!(status, 431);
    // A long token within the header limits is refused as a token.
    let long = format!("Bearer {}", "a".repeat(60_000));
    let (status, body) = raw(
        &app,
        &request(
            "GET",
            b"/api/users/me/",
            &[("Authorization", long.as_bytes())],
            b"",
        ),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    alive(&app).await;
}
