//! The OpenAPI document (issue 19): `GET /api/schema/` in YAML and JSON as
//! drf-spectacular serves it, valid OpenAPI 3.1 by openapi-spec-validator
//! (from the Python package index, in the test virtualenv: `PORTCULLIS_TEST_VENV`, made by
//! scripts/python-venv; these tests fail without it), every documented
//! operation routed, the docs page served from the binary under its CSP,
//! `API_DOCS` / `API_SCHEMA`, and `portcullis openapi` printing exactly
//! what the server serves.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, Served, TestApp, run, serve_in};

const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The test virtualenv's python, which must have openapi-spec-validator.
fn python() -> PathBuf {
    let venv = std::env::var_os("PORTCULLIS_TEST_VENV").unwrap_or_else(|| {
        panic!(
            "PORTCULLIS_TEST_VENV is not set. The schema is validated by openapi-spec-validator from a \
             virtualenv: `export PORTCULLIS_TEST_VENV=$(scripts/python-venv)` and run the tests again"
        )
    });
    let python = PathBuf::from(venv).join("bin/python");
    assert!(python.exists(), "{} is missing", python.display());
    python
}

/// openapi-spec-validator's verdict on `text`, as OpenAPI 3.1: its exit
/// code and what it printed.
async fn validate(text: &str, suffix: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("openapi.{suffix}"));
    std::fs::write(&file, text).unwrap();
    let out = tokio::process::Command::new(python())
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), printed)
}

async fn get(app: &TestApp, path: &str, accept: Option<&str>) -> Reply {
    let mut request = app.client.get(app.url(path));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    Reply::read(request.send().await.unwrap()).await
}

async fn document(app: &TestApp) -> Value {
    let reply = get(app, "/api/schema/?format=json", None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json
}

#[tokio::test]
async fn yaml_by_default_json_on_request() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let yaml = get(&app, "/api/schema/", None).await;
    assert_eq!(yaml.status, 200);
    assert_eq!(
        yaml.header("content-type"),
        Some("application/vnd.oai.openapi; charset=utf-8")
    );
    assert!(yaml.body.starts_with("openapi: 3.1.0\n"), "{}", yaml.body);
    // The unslashed twin, as every DRF view here.
    let twin = get(&app, "/api/schema", None).await;
    assert_eq!((twin.status, twin.body.as_str()), (200, yaml.body.as_str()));

    let cases = [
        (
            "/api/schema/?format=json",
            None,
            "application/vnd.oai.openapi+json",
        ),
        ("/api/schema/", Some("application/json"), "application/json"),
        (
            "/api/schema/",
            Some("application/vnd.oai.openapi+json"),
            "application/vnd.oai.openapi+json",
        ),
        (
            "/api/schema/?format=json",
            Some("application/json"),
            "application/json",
        ),
    ];
    for (path, accept, content_type) in cases {
        let reply = get(&app, path, accept).await;
        assert_eq!(reply.status, 200, "{path} {accept:?}");
        assert_eq!(reply.header("content-type"), Some(content_type));
        assert_eq!(reply.json["openapi"], "3.1.0");
        assert_eq!(reply.json["info"]["title"], "portcullis");
    }
    let yaml_by_accept = get(&app, "/api/schema/", Some("application/yaml")).await;
    assert_eq!(
        yaml_by_accept.header("content-type"),
        Some("application/yaml; charset=utf-8")
    );
    assert_eq!(yaml_by_accept.body, yaml.body);

    let unknown = get(&app, "/api/schema/?format=xml", None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json, json!({"detail": "Not found."}));
    let unacceptable = get(&app, "/api/schema/", Some("text/html")).await;
    assert_eq!(unacceptable.status, 406);
    assert_eq!(
        unacceptable.json,
        json!({"detail": "Could not satisfy the request Accept header."})
    );
    let post = Reply::read(
        app.client
            .post(app.url("/api/schema/"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.json, json!({"detail": "Method \"POST\" not allowed."}));
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let yaml = get(&app, "/api/schema/", None).await.body;
    let json = get(&app, "/api/schema/?format=json", None).await.body;
    for (text, suffix) in [(yaml.as_str(), "yaml"), (json.as_str(), "json")] {
        let (code, printed) = validate(text, suffix).await;
        assert_eq!(code, 0, "{}", &printed[..printed.len().min(2000)]);
        assert!(printed.trim_end().ends_with(": OK"), "{printed}");
    }
    // The validator really judges: the same document with a dangling
    // reference is refused.
    let broken = json.replace(
        "#/components/schemas/TokenPair",
        "#/components/schemas/NoSuchSchema",
    );
    assert_ne!(broken, json);
    let (code, printed) = validate(&broken, "json").await;
    assert_ne!(code, 0, "{printed}");
    assert!(printed.contains("NoSuchSchema"), "{printed}");
}

/// What the document promises about bodies, errors and security.
#[tokio::test]
async fn bodies_errors_and_security_are_described() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let doc = document(&app).await;
    let obtain = &doc["paths"]["/api/token/"]["post"];
    let content = obtain["requestBody"]["content"].as_object().unwrap();
    let media: Vec<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(
        media,
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data"
        ]
    );
    let responses = obtain["responses"].as_object().unwrap();
    let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
    assert_eq!(statuses, ["200", "400", "401", "413", "415", "429"]);
    let components = &doc["components"];
    assert_eq!(
        components["responses"]["Throttled"]["headers"]["Retry-After"]["schema"]["type"],
        "integer"
    );
    assert_eq!(
        components["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"]["schema"]["type"],
        "string"
    );
    assert_eq!(
        components["responses"]["Unauthorized"]["content"]["application/json"]["examples"]["no_valid_token_type"]
            ["value"]["code"],
        "token_not_valid"
    );
    assert_eq!(
        components["schemas"]["FieldErrors"]["additionalProperties"],
        json!({"type": "array", "items": {"type": "string"}})
    );
    assert_eq!(
        components["securitySchemes"]["jwtAuth"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    );
    assert_eq!(
        doc["paths"]["/api/users/me/"]["get"]["security"],
        json!([{"jwtAuth": []}])
    );
    // A public endpoint needs no token.
    assert_eq!(obtain.get("security"), None);

    // Another header: an API key scheme, as drf-spectacular makes it.
    let custom = TestApp::spawn(
        Backend::Sqlite,
        "auth_header_name = \"X-Auth-Token\"\nauth_header_types = [\"JWT\"]\n",
    )
    .await;
    assert_eq!(
        document(&custom).await["components"]["securitySchemes"]["jwtAuth"],
        json!({
            "type": "apiKey",
            "name": "X-Auth-Token",
            "in": "header",
            "description": "Token-based authentication with required prefix \"JWT\""
        })
    );
}

/// Every operation the document names is routed on the real server: an
/// anonymous request to it is answered by its view, never by the 404
/// fallback or a 405.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let doc = document(&app).await;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "1");
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = Reply::read(
                app.client
                    .request(method.clone(), app.url(&concrete))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert!(
                ![404, 405].contains(&reply.status),
                "{method} {concrete}: {} {}",
                reply.status,
                reply.body
            );
            let declared = &item[method.as_str().to_lowercase()]["responses"];
            assert!(
                declared.get(reply.status.to_string()).is_some(),
                "{method} {concrete} answered {}, which the document does not declare",
                reply.status
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 24);
}

#[tokio::test]
async fn the_docs_page_is_served_from_the_binary() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    let page = get(&app, "/api/schema/docs/", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("content-security-policy"), Some(DOCS_CSP));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    // Offline: nothing from another origin, and no inline script.
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
    let scripts: Vec<&str> = page.body.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 3);
    assert!(scripts.iter().all(|s| s.trim_start().starts_with("src=")));
    let twin = get(&app, "/api/schema/docs", None).await;
    assert_eq!(twin.body, page.body);

    // Every file the page loads is served, with its type.
    let mut loaded = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in page.body.split(attribute).skip(1) {
            loaded.push(piece.split('"').next().unwrap().to_owned());
        }
    }
    assert_eq!(loaded.len(), 6, "{loaded:?}");
    for path in &loaded {
        let reply = get(&app, path, None).await;
        assert_eq!(reply.status, 200, "{path}");
        let expected = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "png" => "image/png",
            other => panic!("unexpected file type {other}"),
        };
        assert_eq!(reply.header("content-type"), Some(expected), "{path}");
        assert_eq!(reply.header("content-security-policy"), Some(DOCS_CSP));
    }
    let init = get(&app, "/api/schema/docs/swagger-initializer.js", None).await;
    assert!(
        init.body.contains("\"/api/schema/?format=json\""),
        "{}",
        init.body
    );
    assert!(
        init.body.contains("\"validatorUrl\": \"none\""),
        "{}",
        init.body
    );
    let missing = get(&app, "/api/schema/docs/oauth2-redirect.html", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn api_docs_false_turns_the_page_off_and_keeps_the_schema() {
    let app = TestApp::spawn(Backend::Sqlite, "api_docs = false\n").await;
    for path in [
        "/api/schema/docs/",
        "/api/schema/docs",
        "/api/schema/docs/swagger-ui-bundle.js",
    ] {
        let reply = get(&app, path, None).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json, json!({"detail": "Not found."}));
    }
    let doc = document(&app).await;
    assert!(doc["paths"].get("/api/schema/").is_some());
    assert_eq!(doc["paths"].get("/api/schema/docs/"), None);
    let (code, printed) = validate(&doc.to_string(), "json").await;
    assert_eq!(code, 0, "{printed}");

    let off = TestApp::spawn(Backend::Sqlite, "api_schema = false\n").await;
    for path in ["/api/schema/", "/api/schema/docs/"] {
        let reply = get(&off, path, None).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json, json!({"detail": "Not found."}));
    }
}

/// `portcullis openapi` prints byte for byte what the running server
/// serves, with the same settings (here from the environment).
#[tokio::test]
async fn the_cli_prints_the_served_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_in(dir.path());
    command.env("PORTCULLIS_API_DOCS", "false");
    let served = Served::start(command).await.unwrap();
    let client = reqwest::Client::new();
    for (format, query) in [
        (None, ""),
        (Some("json"), "?format=json"),
        (Some("yaml"), ""),
    ] {
        let body = client
            .get(served.url(&format!("/api/schema/{query}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut cli = serve_in(dir.path());
        cli.env("PORTCULLIS_API_DOCS", "false").arg("openapi");
        if let Some(format) = format {
            cli.args(["--format", format]);
        }
        let out = run(cli, "").await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, body, "--format {format:?}");
        assert!(!out.stdout.contains("/api/schema/docs/"));
    }
    let mut bad = serve_in(dir.path());
    bad.args(["openapi", "--format", "xml"]);
    let out = run(bad, "").await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("invalid value 'xml'"), "{}", out.stderr);
    served.terminate().await;
}
