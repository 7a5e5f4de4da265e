//! Cookie mode (`REFRESH_COOKIE`, issue 4): the refresh token also travels
//! in an `HttpOnly` `__Host-` cookie, and a request that uses it must pass
//! the double-submit CSRF check (`X-CSRF-Token` = the `__Host-csrf` cookie).

use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp};

const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;
const COOKIE_MODE: &str = "rotate_refresh_tokens = true\nrefresh_cookie = true\n";
const CLEARED: [&str; 2] = [
    "__Host-refresh=; Max-Age=0; Path=/; Secure; SameSite=Strict",
    "__Host-csrf=; Max-Age=0; Path=/; Secure; SameSite=Strict",
];

/// POST `body` with a `Cookie` header and optional `X-CSRF-Token` and bearer.
async fn post(
    app: &TestApp,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    bearer: Option<&str>,
    body: Value,
) -> Reply {
    let mut request = app.client.post(app.url(path)).json(&body);
    if !cookie.is_empty() {
        request = request.header("Cookie", cookie);
    }
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    if let Some(bearer) = bearer {
        request = request.header("Authorization", format!("Bearer {bearer}"));
    }
    Reply::read(request.send().await.unwrap()).await
}

/// Log in; the reply and its (refresh cookie, CSRF token).
async fn login(app: &TestApp) -> (Reply, String, String) {
    let reply = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookies = reply.headers_all("set-cookie");
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let refresh = reply.json["refresh"].as_str().unwrap().to_owned();
    assert_eq!(
        cookies[0],
        format!(
            "__Host-refresh={refresh}; Max-Age=86400; Path=/; Secure; SameSite=Strict; HttpOnly"
        )
    );
    let csrf = cookies[1]
        .strip_prefix("__Host-csrf=")
        .and_then(|rest| rest.strip_suffix("; Max-Age=86400; Path=/; Secure; SameSite=Strict"))
        .unwrap_or_else(|| panic!("{}", cookies[1]))
        .to_owned();
    assert_eq!(csrf.len(), 64);
    assert!(csrf.bytes().all(|b| b.is_ascii_hexdigit()));
    (reply, refresh, csrf)
}

/// Obtain sets both cookies; refresh reads the cookie only with a
/// matching CSRF header (403 with DRF's CSRF detail otherwise), and sets
/// the rotated refresh token as the new cookie; a token in the body needs
/// no CSRF header.
async fn refresh_from_cookie(backend: Backend) {
    let app = TestApp::spawn(backend, COOKIE_MODE).await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, refresh, csrf) = login(&app).await;
    let both = format!("__Host-refresh={refresh}; __Host-csrf={csrf}");
    for (cookie, header, reason) in [
        (both.as_str(), None, "CSRF token missing."),
        (both.as_str(), Some("0".repeat(64)), "CSRF token incorrect."),
        (
            &*format!("__Host-refresh={refresh}"),
            Some(csrf.clone()),
            "CSRF cookie not set.",
        ),
    ] {
        let refused = post(
            &app,
            "/api/token/refresh/",
            cookie,
            header.as_deref(),
            None,
            json!({}),
        )
        .await;
        assert_eq!(
            (refused.status, refused.body.clone()),
            (403, format!(r#"{{"detail":"CSRF Failed: {reason}"}}"#))
        );
        assert!(refused.headers_all("set-cookie").is_empty());
    }
    let none = post(&app, "/api/token/refresh/", "", None, None, json!({})).await;
    assert_eq!(
        (none.status, none.body.as_str()),
        (400, r#"{"refresh":["This field is required."]}"#)
    );
    let ok = post(
        &app,
        "/api/token/refresh/",
        &both,
        Some(&csrf),
        None,
        json!({}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let rotated = ok.json["refresh"].as_str().unwrap();
    assert_ne!(rotated, refresh);
    // The CSRF cookie is kept (another tab holds its value); only the
    // refresh cookie changes.
    assert_eq!(
        ok.headers_all("set-cookie"),
        [format!(
            "__Host-refresh={rotated}; Max-Age=86400; Path=/; Secure; SameSite=Strict; HttpOnly"
        )]
    );
    let body = post(
        &app,
        "/api/token/refresh/",
        "",
        None,
        None,
        json!({"refresh": rotated}),
    )
    .await;
    assert_eq!(body.status, 200, "{}", body.body);
    app.stop().await;
}

/// Logout reads the refresh token from the cookie (CSRF-checked), ends the
/// session and clears both cookies; the cookie's token is dead after.
async fn logout_with_cookie(backend: Backend) {
    let app = TestApp::spawn(backend, COOKIE_MODE).await;
    app.user("alice", "alice-pass", true, false).await;
    let (reply, refresh, csrf) = login(&app).await;
    let access = reply.json["access"].as_str().unwrap();
    let both = format!("__Host-refresh={refresh}; __Host-csrf={csrf}");
    let refused = post(
        &app,
        "/api/token/logout/",
        &both,
        None,
        Some(access),
        json!({}),
    )
    .await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, r#"{"detail":"CSRF Failed: CSRF token missing."}"#)
    );
    let out = post(
        &app,
        "/api/token/logout/",
        &both,
        Some(&csrf),
        Some(access),
        json!({}),
    )
    .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    assert_eq!(out.headers_all("set-cookie"), CLEARED);
    let again = post(
        &app,
        "/api/token/refresh/",
        &both,
        Some(&csrf),
        None,
        json!({}),
    )
    .await;
    assert_eq!((again.status, again.body.as_str()), (401, BLACKLISTED));
    assert_eq!(app.get("/api/users/me/", Some(access)).await.status, 401);
    app.stop().await;
}

/// simplejwt's blacklist endpoint reads the cookie too, CSRF-checked, and
/// clears the cookies.
async fn blacklist_with_cookie(backend: Backend) {
    let app = TestApp::spawn(backend, COOKIE_MODE).await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, refresh, csrf) = login(&app).await;
    let both = format!("__Host-refresh={refresh}; __Host-csrf={csrf}");
    let refused = post(
        &app,
        "/api/token/blacklist/",
        &both,
        Some("nope"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, r#"{"detail":"CSRF Failed: CSRF token incorrect."}"#)
    );
    let out = post(
        &app,
        "/api/token/blacklist/",
        &both,
        Some(&csrf),
        None,
        json!({}),
    )
    .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    assert_eq!(out.headers_all("set-cookie"), CLEARED);
    let again = post(
        &app,
        "/api/token/refresh/",
        "",
        None,
        None,
        json!({"refresh": refresh}),
    )
    .await;
    assert_eq!((again.status, again.body.as_str()), (401, BLACKLISTED));
    app.stop().await;
}

/// With `REFRESH_COOKIE` off (the default), no cookie is set and a cookie
/// sent is ignored: the body is required as in simplejwt.
async fn cookie_mode_off(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let login = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "alice-pass"}),
        )
        .await;
    assert!(login.headers_all("set-cookie").is_empty());
    let cookie = format!("__Host-refresh={refresh}; __Host-csrf=x");
    let refreshed = post(
        &app,
        "/api/token/refresh/",
        &cookie,
        Some("x"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(
        (refreshed.status, refreshed.body.as_str()),
        (400, r#"{"refresh":["This field is required."]}"#)
    );
    let out = post(
        &app,
        "/api/token/logout/",
        &cookie,
        None,
        Some(&access),
        json!({}),
    )
    .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    assert!(out.headers_all("set-cookie").is_empty());
    app.stop().await;
}

crate::both_backends!(
    refresh_from_cookie,
    logout_with_cookie,
    blacklist_with_cookie,
    cookie_mode_off,
);

/// A cookie name without `__Host-` is refused at start, naming the setting.
#[test]
fn cookie_name_must_be_host_prefixed() {
    for name in ["refresh", "__Host-", "__Host-a b", "__Host-csrf"] {
        let error = portcullis::config::Settings::from_toml(&format!(
            "refresh_cookie = true\nrefresh_cookie_name = \"{name}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("REFRESH_COOKIE_NAME (`refresh_cookie_name`, from "),
            "{error}"
        );
    }
    let settings = portcullis::config::Settings::from_toml(
        "refresh_cookie = true\nrefresh_token_lifetime = 60\n",
    )
    .unwrap();
    let cookie = settings.http.refresh_cookie.unwrap();
    assert_eq!(
        (cookie.name.as_str(), cookie.max_age),
        ("__Host-refresh", 60)
    );
    let off = portcullis::config::Settings::from_toml("refresh_cookie_name = \"bad\"\n").unwrap();
    assert!(off.http.refresh_cookie.is_none());
}
