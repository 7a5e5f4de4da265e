//! X-Request-Id, the access log and Prometheus `/metrics`.

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::helpers::{Backend, Served, TestApp, run, serve_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_or_made_and_returned() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let with_id = |id: &'static str| {
        app.client
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
    };
    let response = with_id("edge-7f3a:42").await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "edge-7f3a:42");

    // Made when missing or not a sane token; each one different.
    let mut made = Vec::new();
    for response in [
        app.client.get(app.url("/healthz")).send().await.unwrap(),
        with_id("two words").await.unwrap(),
        app.client
            .get(app.url("/healthz"))
            .header("x-request-id", "a".repeat(129))
            .send()
            .await
            .unwrap(),
    ] {
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(is_uuid_v4(&id), "{id}");
        made.push(id);
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 3);

    // On errors and unmatched routes too.
    let response = with_id("on-a-404").await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "on-a-404");
    let response = app
        .client
        .get(app.url("/nowhere"))
        .header("x-request-id", "on-a-404")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "on-a-404");
    app.stop().await;
}

fn is_uuid_v4(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && groups[2].starts_with('4')
        && matches!(groups[3].chars().next(), Some('8' | '9' | 'a' | 'b'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_access_line_per_request_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["text", "json"] {
        let mut command = serve_in(dir.path());
        command.env("PORTCULLIS_ACCESS_LOG", format);
        let served = Served::start(command).await.unwrap();
        let response = reqwest::Client::new()
            .get(served.url("/api/users/me/?token=query-secret-123"))
            .header("x-request-id", format!("trace-{format}"))
            .header("authorization", "Bearer header-secret-456")
            .header("cookie", "sessionid=cookie-secret-789")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let log = served.wait_for_log(&format!("trace-{format}")).await;
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("portcullis::access"))
            .collect();
        assert_eq!(lines.len(), 1, "{log}");
        let line = lines[0];
        if format == "json" {
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
            let fields = &parsed["fields"];
            assert_eq!(fields["request_id"], "trace-json", "{line}");
            assert_eq!(fields["method"], "GET");
            assert_eq!(fields["path"], "/api/users/me/");
            assert_eq!(fields["route"], "/api/users/me/");
            assert_eq!(fields["status"], 401);
        } else {
            for part in [
                "request_id=trace-text",
                "method=GET",
                "path=/api/users/me/",
                "route=/api/users/me/",
                "status=401",
            ] {
                assert!(line.contains(part), "{part} missing from {line}");
            }
        }
        for secret in ["query-secret-123", "header-secret-456", "cookie-secret-789"] {
            assert!(!log.contains(secret), "{secret} was logged:\n{log}");
        }
        let (code, log) = served.terminate().await;
        assert_eq!(code, 0, "{log}");
    }

    // Off: no access lines.
    let mut command = serve_in(dir.path());
    command.env("PORTCULLIS_ACCESS_LOG", "off");
    let served = Served::start(command).await.unwrap();
    let response = reqwest::get(served.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("portcullis::access"), "{log}");
}

/// The value of one series in a Prometheus text page (0 when absent).
fn series(page: &str, name_and_labels: &str) -> f64 {
    page.lines()
        .find_map(|line| {
            line.strip_prefix(name_and_labels)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// Counted in a child process of its own: the recorder is per process, so
/// the values are exact.
// The counts are small integers, exact in an f64.
#[allow(clippy::float_cmp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_logins_hash_queue_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    for (name, active) in [("alice", "--password-stdin"), ("ivan", "--inactive")] {
        let mut command = serve_in(dir.path());
        command.args(["user", "create", name, "--password-stdin"]);
        if active == "--inactive" {
            command.arg(active);
        }
        let out = run(command, "right-password\n").await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let served = Served::start(serve_in(dir.path())).await.unwrap();
    let metrics = served.url("/metrics");
    let client = reqwest::Client::new();
    let login = |username: &'static str, password: &'static str| {
        client
            .post(served.url("/api/token/"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
    };
    assert_eq!(
        login("alice", "right-password").await.unwrap().status(),
        200
    );
    assert_eq!(login("alice", "wrong").await.unwrap().status(), 401);
    assert_eq!(login("nobody", "wrong").await.unwrap().status(), 401);
    assert_eq!(login("ivan", "right-password").await.unwrap().status(), 401);
    for _ in 0..3 {
        let response = client
            .get(served.url("/no/such/page-8d1f"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }

    let page = scrape(&metrics).await;
    for (series_name, value) in [
        (r#"portcullis_logins_total{result="success"}"#, 1.0),
        (r#"portcullis_logins_total{result="bad_credentials"}"#, 2.0),
        (r#"portcullis_logins_total{result="inactive"}"#, 1.0),
        (
            r#"portcullis_http_requests_total{method="POST",route="/api/token/",status="200"}"#,
            1.0,
        ),
        (
            r#"portcullis_http_requests_total{method="POST",route="/api/token/",status="401"}"#,
            3.0,
        ),
        (
            r#"portcullis_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            3.0,
        ),
        (
            r#"portcullis_http_request_duration_seconds_count{method="POST",route="/api/token/",status="401"}"#,
            3.0,
        ),
        // Four verifications (the unknown user's against the dummy hash).
        ("portcullis_password_hash_queue_seconds_count", 4.0),
    ] {
        assert_eq!(series(&page, series_name), value, "{series_name}\n{page}");
    }
    // The raw path never becomes a label.
    assert!(!page.contains("page-8d1f"), "{page}");

    // Open connections: two more, then back.
    let open = |page: &str| series(page, r#"portcullis_open_connections{listener="main"}"#);
    let baseline = open(&scrape(&metrics).await);
    assert!(baseline >= 1.0, "the scrape's own connection is open");
    let addr: std::net::SocketAddr = served.addr.parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            crate::helpers::read_raw_reply(&mut stream)
                .await
                .unwrap()
                .status,
            200
        );
        held.push(stream);
    }
    poll_metric(&metrics, |page| open(page) >= baseline + 2.0).await;
    drop(held);
    poll_metric(&metrics, |page| open(page) <= baseline).await;

    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
}

async fn poll_metric(url: &str, done: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = scrape(url).await;
        if done(&page) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_bind_moves_metrics_to_the_admin_listener() {
    let app = TestApp::spawn(Backend::Sqlite, "metrics_bind = \"127.0.0.1:0\"\n").await;
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, r#"{"detail":"Not found."}"#);
    let admin = app.metrics_addr.unwrap();
    let page = scrape(&format!("http://{admin}/metrics")).await;
    assert!(
        page.contains(
            r#"portcullis_http_requests_total{method="GET",route="/healthz",status="200"}"#
        ),
        "{page}"
    );
    // Only /metrics there.
    let response = reqwest::get(format!("http://{admin}/api/token/"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    app.stop().await;
}
