//! HTTPS: rustls from PEM files, HTTP/2 through ALPN and HTTP/1.1, HSTS,
//! the plain-HTTP redirect listener, and the certificate reloaded on SIGHUP
//! without dropping open connections (the real binary).

use std::time::Duration;

use crate::helpers::{Backend, Served, TestApp, TestCert, binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http2_and_http1_with_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path(), "server");
    let app = TestApp::spawn(
        Backend::Sqlite,
        &format!("{}hsts_max_age = \"10m\"\n", cert.toml()),
    )
    .await;
    let url = format!("https://localhost:{}/healthz", app.addr.port());

    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let response = cert
            .client(app.addr, http1_only)
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=600"
        );
        assert_eq!(response.text().await.unwrap(), r#"{"status":"ok"}"#);
    }

    // The same API as over plain HTTP: a login failure over HTTP/2.
    let response = cert
        .client(app.addr, false)
        .post(format!("https://localhost:{}/api/token/", app.addr.port()))
        .json(&serde_json::json!({"username": "nobody", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"detail":"No active account found with the given credentials"}"#
    );

    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.addr.port()))
        .send()
        .await;
    // The TLS handshake fails on the request line, and the connection closes
    // without an answer (no HTTP response, no certificate, no 200).
    let error = plain.expect_err("a plain-HTTP request to the TLS port got an answer");
    assert!(
        error.is_request() || error.is_connect(),
        "not a connection failure: {error:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_gets_no_hsts() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let reply = app.get("/healthz", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("strict-transport-security"), None);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_listener_sends_everything_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path(), "server");
    let app = TestApp::spawn(
        Backend::Sqlite,
        &format!("{}http_redirect_bind = \"127.0.0.1:0\"\n", cert.toml()),
    )
    .await;
    let redirect = app.redirect_addr.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", redirect)
        .build()
        .unwrap();
    let response = client
        .post(format!(
            "http://localhost:{}/api/token/?next=%2Fhome&x=1",
            redirect.port()
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    let location = format!(
        "https://localhost:{}/api/token/?next=%2Fhome&x=1",
        app.addr.port()
    );
    assert_eq!(response.headers()["location"], location.as_str());
    // Not over plain HTTP (RFC 6797 §7.2).
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );

    // Following it lands on the API over TLS.
    let followed = cert
        .client(app.addr, false)
        .get(format!("https://localhost:{}/healthz", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200);

    // A request without a usable Host is refused, not redirected anywhere.
    let mut stream = tokio::net::TcpStream::connect(redirect).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let reply = crate::helpers::read_raw_reply(&mut stream).await.unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body,
        r#"{"detail":"A Host header naming this server is required."}"#
    );
    assert!(
        reply.head.contains("content-type: application/json"),
        "{}",
        reply.head
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path(), "server");
    let db = crate::helpers::TestDatabase::new(Backend::Sqlite).await;
    let cases = [
        (
            format!(
                "tls_cert_file = {:?}\n",
                cert.cert_file.display().to_string()
            ),
            "TLS_CERT_FILE (`tls_cert_file`, from default) and TLS_KEY_FILE (`tls_key_file`, from default) go together",
        ),
        (
            format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                cert.key_file.display().to_string(),
                cert.key_file.display().to_string()
            ),
            "holds no CERTIFICATE block",
        ),
        (
            "http_redirect_bind = \"127.0.0.1:0\"\n".to_owned(),
            "HTTP_REDIRECT_BIND (`http_redirect_bind`, from default) redirects to HTTPS, which needs TLS_CERT_FILE and TLS_KEY_FILE",
        ),
        (
            "max_header_bytes = 100\n".to_owned(),
            "MAX_HEADER_BYTES (`max_header_bytes`, from default): 100 is too small; use at least 8192",
        ),
        (
            "access_log = \"xml\"\n".to_owned(),
            "ACCESS_LOG (`access_log`, from default): \"xml\" is not one of \"off\", \"text\", \"json\"",
        ),
    ];
    for (toml, expected) in cases {
        // Refused when read (the pairing, the limits), or when the
        // certificate is loaded.
        let error = match portcullis::config::Settings::from_toml(&format!(
            "bind = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\n{toml}",
            db.url
        )) {
            Ok(settings) => portcullis::startup::Application::build(&settings)
                .await
                .map(|_| ())
                .unwrap_err(),
            Err(e) => e.into(),
        };
        assert!(format!("{error:#}").contains(expected), "{toml}: {error:#}");
    }
}

/// Reload on SIGHUP: a connection open before keeps working (its client
/// trusts only the old certificate, so it cannot have reconnected), and a
/// new connection is served the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::new(dir.path(), "old");
    let new = TestCert::new(dir.path(), "new");
    let live_cert = dir.path().join("live.crt");
    let live_key = dir.path().join("live.key");
    std::fs::copy(&old.cert_file, &live_cert).unwrap();
    std::fs::copy(&old.key_file, &live_key).unwrap();
    let mut command = binary();
    command
        .env(
            "PORTCULLIS_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("db.sqlite3").display()),
        )
        .env("PORTCULLIS_SIGNING_KEY", crate::helpers::SIGNING_KEY)
        .env("PORTCULLIS_TLS_CERT_FILE", &live_cert)
        .env("PORTCULLIS_TLS_KEY_FILE", &live_key);
    let served = Served::start(command).await.unwrap();
    let addr: std::net::SocketAddr = served.addr.parse().unwrap();
    let url = format!("https://localhost:{}/healthz", addr.port());

    // HTTP/2: one connection carries every request of this client.
    let before = old.client(addr, false);
    assert_eq!(before.get(&url).send().await.unwrap().status(), 200);
    assert!(new.client(addr, false).get(&url).send().await.is_err());

    std::fs::copy(&new.cert_file, &live_cert).unwrap();
    std::fs::copy(&new.key_file, &live_key).unwrap();
    served.signal("HUP").await;
    served
        .wait_for_log("SIGHUP: reloaded the TLS certificate")
        .await;

    let after = new.client(addr, true);
    let response = after.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The old connection still answers.
    let response = before.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    // A new connection trusting only the old certificate is refused now.
    assert!(old.client(addr, true).get(&url).send().await.is_err());

    // A broken file keeps the current certificate.
    std::fs::write(&live_cert, "not a certificate").unwrap();
    served.signal("HUP").await;
    served
        .wait_for_log("SIGHUP: cannot reload the TLS certificate; keeping the old one")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = new.client(addr, false).get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
}
