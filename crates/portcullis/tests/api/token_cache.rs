//! The verified-token cache (`TOKEN_CACHE_SIZE`, issue 20): a token whose
//! signature was checked is reused without checking it again, and still
//! every change that refuses it is seen by the very next request: an ended
//! session, a deactivated user, a changed password, a retired key, the
//! token's own `exp`. Each test first makes the token cached (a request
//! that succeeds), then makes the change, then asserts the next answer.

use serde_json::json;

use crate::helpers::{Backend, SIGNING_KEY, TestApp, mint_hs, now};
use crate::keys::{keys, printed_kid, signs_with};

/// A revoked access token on an authenticated endpoint.
const REVOKED: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is blacklisted"}]}"#;
const INVALID: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid"}]}"#;
const EXPIRED: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is expired"}]}"#;
const INACTIVE: &str = r#"{"detail":"User is inactive","code":"user_inactive"}"#;
const PASSWORD_CHANGED: &str =
    r#"{"detail":"The user's password has been changed.","code":"password_changed"}"#;

/// `GET path` with this access token: (status, body).
async fn get(app: &TestApp, path: &str, access: &str) -> (u16, String) {
    let reply = app.get(path, Some(access)).await;
    (reply.status, reply.body)
}

/// The token is answered 200 by `/api/users/me/` and forward-auth, twice
/// (the second time from the cache), and the cache holds it.
async fn cached(app: &TestApp, access: &str) {
    for _ in 0..2 {
        assert_eq!(get(app, "/api/users/me/", access).await.0, 200);
        assert_eq!(get(app, "/auth/verify", access).await.0, 200);
    }
    assert!(app.auth.engine().cached_tokens() > 0, "the token is cached");
}

/// The next request with the token, on both routes, is refused with `body`.
async fn refused(app: &TestApp, access: &str, status: u16, body: &str) {
    for path in ["/api/users/me/", "/auth/verify"] {
        assert_eq!(
            get(app, path, access).await,
            (status, body.to_owned()),
            "{path}"
        );
    }
}

/// Logout ends the session, logout-all every session of the user: their
/// cached access tokens are refused by the next request.
async fn an_ended_session_refuses_a_cached_token(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let (_, other) = app.login("alice", "alice-pass").await;
    let (_, third) = app.login("alice", "alice-pass").await;
    for token in [&access, &other, &third] {
        cached(&app, token).await;
    }
    let out = app
        .post_bearer("/api/token/logout/", &access, json!({}))
        .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    refused(&app, &access, 401, REVOKED).await;
    assert_eq!(get(&app, "/api/users/me/", &other).await.0, 200);
    let out = app
        .post_bearer("/api/token/logout-all/", &other, json!({}))
        .await;
    assert_eq!((out.status, out.body.as_str()), (200, "{}"));
    refused(&app, &other, 401, REVOKED).await;
    refused(&app, &third, 401, REVOKED).await;
    app.stop().await;
}

/// `CHECK_USER_IS_ACTIVE` and `CHECK_REVOKE_TOKEN` read the account on
/// every request, cached token or not.
async fn a_deactivated_user_or_new_password_refuses_a_cached_token(backend: Backend) {
    let app = TestApp::spawn(backend, "check_revoke_token = true\n").await;
    let user = app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let store = app.auth.user_store();
    cached(&app, &access).await;
    assert!(store.set_active(user.id, false).await.unwrap());
    refused(&app, &access, 401, INACTIVE).await;
    assert!(store.set_active(user.id, true).await.unwrap());
    cached(&app, &access).await;
    let hash = app.auth.hasher().hash("new-pass".into()).await.unwrap();
    assert!(store.set_password(user.id, &hash).await.unwrap());
    refused(&app, &access, 401, PASSWORD_CHANGED).await;
    app.stop().await;
}

/// A key of the set retired (`portcullis keys retire`): once the server has
/// the new key set, the next request with a cached token it signed is
/// refused. The key set is installed here at once rather than waiting for
/// the server's own reload (every 2 s), so "the next request" is exact.
async fn a_retired_key_refuses_a_cached_token(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let kid = printed_kid(&keys(&app.db, &["generate", "--alg", "EdDSA", "--activate"], &[]).await);
    signs_with(&app, &kid).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    cached(&app, &access).await;
    keys(&app.db, &["retire", &kid], &[]).await;
    let engine = app.auth.engine();
    let stored = app.auth.key_store().signing_keys().await.unwrap();
    let (ring, errors) = portcullis_token::KeyRing::load(&stored, &engine.key_ring());
    assert!(errors.is_empty(), "{errors:?}");
    engine.install_keys(ring);
    refused(&app, &access, 401, INVALID).await;
    app.stop().await;
}

/// A cached token is refused by the first request at its `exp`.
async fn an_expired_token_is_refused_though_cached(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let user = app.user("alice", "alice-pass", true, false).await;
    let exp = now() + 2;
    let access = mint_hs(
        "HS256",
        SIGNING_KEY.as_bytes(),
        &json!({"token_type": "access", "exp": exp, "iat": now(), "jti": "e".repeat(32), "user_id": user.id.to_string()}),
    );
    cached(&app, &access).await;
    // PyJWT: expired once `exp <= now`; the wall clock is polled, not slept on.
    while now() < exp {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    refused(&app, &access, 401, EXPIRED).await;
    app.stop().await;
}

/// With `TOKEN_CACHE_SIZE = 3`, many distinct valid tokens never make it
/// hold more than 3, and each is still answered (the evicted ones are
/// verified again); `0` turns it off.
async fn the_cache_holds_at_most_its_size(backend: Backend) {
    for (size, bound) in [(3, 3), (0, 0)] {
        let app = TestApp::spawn(backend, &format!("token_cache_size = {size}\n")).await;
        let user = app.user("alice", "alice-pass", true, false).await;
        let tokens: Vec<String> = (0..40)
            .map(|i| {
                mint_hs(
                    "HS256",
                    SIGNING_KEY.as_bytes(),
                    &json!({"token_type": "access", "exp": now() + 300, "jti": format!("{i:032}"), "user_id": user.id.to_string()}),
                )
            })
            .collect();
        for round in 0..2 {
            for token in &tokens {
                assert_eq!(get(&app, "/api/users/me/", token).await.0, 200, "{round}");
                let held = app.auth.engine().cached_tokens();
                assert!(held <= bound, "{held} cached, at most {bound}");
            }
        }
        if bound > 0 {
            assert!(app.auth.engine().cached_tokens() > 0);
        }
        app.stop().await;
    }
}

crate::both_backends!(
    an_ended_session_refuses_a_cached_token,
    a_deactivated_user_or_new_password_refuses_a_cached_token,
    a_retired_key_refuses_a_cached_token,
    an_expired_token_is_refused_though_cached,
    the_cache_holds_at_most_its_size,
);
