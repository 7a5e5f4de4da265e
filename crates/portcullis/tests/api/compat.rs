//! Replays `compat/simplejwt-5.5.1.json` — every request recorded from the
//! real djangorestframework-simplejwt 5.5.1 — against portcullis on both
//! backends, and compares status, headers, bodies and token shapes.
//!
//! Where portcullis deliberately answers differently (the 500s of §2.4, and
//! the user checks simplejwt's master branch added to refresh), the case
//! is listed in `divergences()` with the answer we give instead and why.
//!
//! The fixture's actions (a password set, an account deactivated or
//! deleted) are made as another process makes them, through a connection
//! of its own to the database, and as portcullis's administrators make
//! them: deactivating or deleting ends the account's sessions first, as
//! `portcullis user deactivate|delete` does.

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_core::{SessionStore as _, User, UserStore as _};
use portcullis_store::SqlStore;
use portcullis_token::TokenType;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::helpers::{Backend, SIGNING_KEY, TestApp, mint_hs, mint_hs_with_header, now};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../compat/simplejwt-5.5.1.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("compat fixture"))
        .expect("fixture JSON")
}

/// Our answer where 5.5.1 answered 500 (the steps recorded as 500 only):
/// (status, body).
fn divergences() -> BTreeMap<&'static str, (u16, &'static str)> {
    const NO_ACCOUNT: &str = r#"{"detail":"No active account found for the given token."}"#;
    const NO_ID: &str = r#"{"detail":"Token has no id","code":"token_not_valid"}"#;
    BTreeMap::from([
        // §2.4: 5.5.1 answers 500 (DoesNotExist / ValueError); master answers 401.
        ("refresh_user_deleted_crafted", (401, NO_ACCOUNT)),
        ("refresh_user_deleted_after_login", (401, NO_ACCOUNT)),
        ("me_then_delete", (401, NO_ACCOUNT)),
        ("refresh_user_id_string_zero", (401, NO_ACCOUNT)),
        ("refresh_user_id_abc", (401, NO_ACCOUNT)),
        (
            "me_user_id_abc",
            (
                401,
                r#"{"detail":"User not found","code":"user_not_found"}"#,
            ),
        ),
        // §2.4: a token without jti is a KeyError (500) in the blacklist check.
        ("refresh_no_jti", (401, NO_ID)),
        ("blacklist_no_jti", (401, NO_ID)),
        ("sliding_refresh_no_jti", (401, NO_ID)),
        (
            "me_sliding_auth_sliding_no_jti",
            (
                401,
                r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"SlidingToken","token_type":"sliding","message":"Token has no id"},{"token_class":"AccessToken","token_type":"access","message":"Token has no id"}]}"#,
            ),
        ),
        // A non-numeric refresh_exp is a TypeError (500) in 5.5.1.
        (
            "sliding_refresh_refresh_exp_string",
            (
                401,
                r#"{"detail":"Token is invalid","code":"token_not_valid"}"#,
            ),
        ),
    ])
}

/// Steps (by case name and index) where simplejwt's master branch checks
/// the user on refresh and 5.5.1 does not; we follow master.
fn master_user_checks() -> BTreeMap<(&'static str, usize), (u16, &'static str)> {
    const NO_ACCOUNT: &str = r#"{"detail":"No active account found for the given token."}"#;
    const CHANGED: &str = r#"{"detail":"The user's password has been changed."}"#;
    BTreeMap::from([
        (("me_revoke_password_changed", 4), (401, CHANGED)),
        // …so step 5 has no access token to send.
        (
            ("me_revoke_password_changed", 5),
            (
                401,
                r#"{"detail":"Authorization header must contain two space-delimited values","code":"bad_authorization_header"}"#,
            ),
        ),
        (
            ("sliding_refresh_revoke_after_set_password", 2),
            (401, CHANGED),
        ),
        // …so step 3 has no token to verify (a 400, hence no WWW-Authenticate).
        (
            ("sliding_refresh_revoke_after_set_password", 3),
            (400, r#"{"token":["This field may not be blank."]}"#),
        ),
        (("sliding_refresh_inactive_user", 0), (401, NO_ACCOUNT)),
        (("sliding_then_deactivate", 2), (401, NO_ACCOUNT)),
        // Deleting an account ended its sessions (ASVS V7.4.2), so its
        // refresh token is blacklisted already; simplejwt keeps it live.
        (
            ("refresh_user_deleted_after_login", 5),
            (
                401,
                r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#,
            ),
        ),
        (("sliding_refresh_unknown_user", 0), (401, NO_ACCOUNT)),
    ])
}

/// A profile's `SIMPLE_JWT` overrides as portcullis TOML settings.
/// simplejwt has no sessions, and portcullis turns them on with rotation
/// (issue 4): the replay turns them off to compare like with like.
fn profile_toml(profile: &Value) -> String {
    use std::fmt::Write as _;
    profile.as_object().unwrap().iter().fold(
        String::from("refresh_reuse_detection = false\n"),
        |mut out, (key, value)| {
            let _ = writeln!(out, "{} = {}", key.to_ascii_lowercase(), toml_value(value));
            out
        },
    )
}

fn toml_value(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

async fn world(app: &TestApp) -> BTreeMap<String, User> {
    let mut users = BTreeMap::new();
    for (username, password, email, active, staff) in [
        (
            "alice",
            "alice-password-1",
            "alice@example.com",
            true,
            false,
        ),
        ("bob", "bob-password-2", "bob@example.com", false, false),
        ("carol", "carol-password-3", "", true, true),
    ] {
        let user = app
            .user_with_email(username, password, email, active, staff)
            .await;
        users.insert(username.to_owned(), user);
    }
    users
}

/// Expand the fixture's placeholders (compat/README.md, "Placeholders").
async fn expand(
    template: &str,
    app: &TestApp,
    users: &BTreeMap<String, User>,
    replies: &[Value],
) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let inner = &rest[start + 2..];
        let name_end = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
            .unwrap();
        let name = &inner[..name_end];
        let after = &inner[name_end..];
        let (value, consumed) = if let Some(args) = after.strip_prefix(':') {
            let (prefix, claims_text) = match name {
                "jwt" => ("", args),
                "jwt_key" | "jwt_alg" | "jwt_kid" => {
                    let colon = args.find(':').unwrap();
                    (&args[..colon], &args[colon + 1..])
                }
                _ => {
                    let end = args.find("}}").unwrap();
                    (&args[..end], &args[end..])
                }
            };
            if name.starts_with("jwt") {
                let mut stream =
                    serde_json::Deserializer::from_str(claims_text).into_iter::<Value>();
                let claims = substitute(stream.next().unwrap().unwrap());
                let used = stream.byte_offset();
                assert!(
                    claims_text[used..].starts_with("}}"),
                    "claims template must end with }}}}"
                );
                let token = match name {
                    "jwt" => mint_hs("HS256", SIGNING_KEY.as_bytes(), &claims),
                    "jwt_key" => mint_hs("HS256", prefix.as_bytes(), &claims),
                    "jwt_kid" => mint_hs_with_header(
                        &format!(r#"{{"alg":"HS256","kid":"{prefix}","typ":"JWT"}}"#),
                        "HS256",
                        SIGNING_KEY.as_bytes(),
                        &claims,
                    ),
                    _ => mint_hs(prefix, SIGNING_KEY.as_bytes(), &claims),
                };
                let consumed = name_end + 1 + (args.len() - claims_text.len()) + used + 2;
                (token, consumed)
            } else {
                // Re-read the user: an action may have changed the password.
                let user = &app
                    .auth
                    .user_store()
                    .user_by_id(users[prefix].id)
                    .await
                    .unwrap()
                    .unwrap();
                let token = match name {
                    "access" => app
                        .auth
                        .token_for_user(TokenType::Access, user)
                        .await
                        .unwrap(),
                    "refresh" => app
                        .auth
                        .token_for_user(TokenType::Refresh, user)
                        .await
                        .unwrap(),
                    "sliding" => app
                        .auth
                        .token_for_user(TokenType::Sliding, user)
                        .await
                        .unwrap(),
                    "blacklisted_refresh" => {
                        let token = app
                            .auth
                            .token_for_user(TokenType::Refresh, user)
                            .await
                            .unwrap();
                        app.auth.blacklist(&token).await.unwrap();
                        token
                    }
                    other => panic!("unknown placeholder {other}"),
                };
                (token, name_end + 1 + prefix.len() + 2)
            }
        } else {
            // {{stepN.body.FIELD}}
            let mut parts = name.splitn(3, '.');
            let step: usize = parts
                .next()
                .unwrap()
                .trim_start_matches("step")
                .parse()
                .unwrap();
            assert_eq!(parts.next(), Some("body"));
            let field = parts.next().unwrap();
            (
                replies[step][field].as_str().unwrap_or_default().to_owned(),
                name_end + 2,
            )
        };
        out.push_str(&value);
        rest = &inner[consumed..];
    }
    out.push_str(rest);
    out
}

fn substitute(value: Value) -> Value {
    match value {
        Value::String(s) if s == "$now" => json!(now()),
        Value::String(s) if s.starts_with("$now+") => json!(now() + s[5..].parse::<i64>().unwrap()),
        Value::String(s) if s.starts_with("$now-") => json!(now() - s[5..].parse::<i64>().unwrap()),
        Value::String(s) if s == "$jti" => json!(format!("{:032x}", rand_u128())),
        Value::Array(items) => Value::Array(items.into_iter().map(substitute).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, substitute(v))).collect())
        }
        other => other,
    }
}

fn rand_u128() -> u128 {
    let mut bytes = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    u128::from_le_bytes(bytes)
}

/// Replace every JWT in a body with `<JWT>`, as the recorder did.
fn mask_jwts(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("eyJ") {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let len = candidate
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .unwrap_or(candidate.len());
        let token = &candidate[..len];
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() == 3 && parts[1].starts_with("eyJ") {
            out.push_str("<JWT>");
        } else {
            out.push_str(token);
        }
        rest = &candidate[len..];
    }
    out.push_str(rest);
    out
}

/// The recorder's summary of a token: header, claim order, lifetime, and
/// claims with volatile values masked.
fn token_summary(token: &str) -> Value {
    use base64::Engine as _;
    let decode = |part: Option<&str>| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part?)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let mut parts = token.split('.');
    let (Some(header), Some(claims)) = (decode(parts.next()), decode(parts.next())) else {
        return Value::Null;
    };
    let Some(claims) = claims.as_object() else {
        return Value::Null;
    };
    let order: Vec<&String> = claims.keys().collect();
    let lifetime = match (
        claims.get("exp").and_then(Value::as_i64),
        claims.get("iat").and_then(Value::as_i64),
    ) {
        (Some(exp), Some(iat)) => json!(exp - iat),
        _ => Value::Null,
    };
    let masked: Map<String, Value> = claims
        .iter()
        .map(|(k, v)| {
            let masked = match (k.as_str(), v) {
                ("exp" | "iat" | "nbf" | "refresh_exp", Value::Number(n)) if n.is_i64() => {
                    json!("<int>")
                }
                ("jti", Value::String(s)) if is_hex(s, false) => json!("<jti>"),
                ("hash_password", Value::String(s)) if is_hex(s, true) => json!("<hash_password>"),
                _ => v.clone(),
            };
            (k.clone(), masked)
        })
        .collect();
    json!({"header": header, "claim_order": order, "lifetime": lifetime, "claims": masked})
}

fn is_hex(s: &str, upper: bool) -> bool {
    s.len() == 32
        && s.chars().all(|c| {
            c.is_ascii_digit()
                || if upper {
                    ('A'..='F').contains(&c)
                } else {
                    ('a'..='f').contains(&c)
                }
        })
}

/// Run one case; return the differences found.
async fn replay_case(backend: Backend, case: Value, profiles: Value) -> Vec<String> {
    let name = case["name"].as_str().unwrap().to_owned();
    let app = TestApp::spawn(
        backend,
        &profile_toml(&profiles[case["profile"].as_str().unwrap()]),
    )
    .await;
    let users = world(&app).await;
    let mut replies: Vec<Value> = Vec::new();
    let mut problems = Vec::new();
    let divergences = divergences();
    let master = master_user_checks();
    let mut elsewhere = None;
    for (index, step) in case["steps"].as_array().unwrap().iter().enumerate() {
        if let Some(action) = step["action"].as_str() {
            let user = &users[step["username"].as_str().unwrap()];
            if elsewhere.is_none() {
                elsewhere = Some(SqlStore::connect(&app.db.url).await.unwrap());
            }
            let store = elsewhere.as_ref().unwrap();
            let before = app.auth.user_store().account_changes();
            match action {
                "set_password" => {
                    let hash = app
                        .auth
                        .hasher()
                        .hash(step["password"].as_str().unwrap().into())
                        .await
                        .unwrap();
                    assert!(store.set_password(user.id, &hash).await.unwrap());
                }
                "deactivate" => {
                    store.end_sessions(user.id, None, now()).await.unwrap();
                    assert!(store.set_active(user.id, false).await.unwrap());
                }
                "delete_user" => {
                    store.end_sessions(user.id, None, now()).await.unwrap();
                    assert!(store.delete_user(user.id).await.unwrap());
                }
                other => panic!("unknown action {other}"),
            }
            // On PostgreSQL the change reaches the server as the
            // notification the commit sent, a few milliseconds later: wait
            // for it (at most a second), as the next request of a client
            // would rarely have to. On SQLite the server asks at its next
            // read, and this returns at once.
            let started = std::time::Instant::now();
            while app.auth.user_store().account_changes() == before
                && started.elapsed() < std::time::Duration::from_secs(1)
            {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            replies.push(Value::Null);
            continue;
        }
        let request = &step["request"];
        let method =
            reqwest::Method::from_bytes(request["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut builder = app
            .client
            .request(method, app.url(request["path"].as_str().unwrap()));
        for (header, value) in request["headers"].as_object().unwrap() {
            builder = builder.header(
                header,
                expand(value.as_str().unwrap(), &app, &users, &replies).await,
            );
        }
        let body = expand(request["body"].as_str().unwrap(), &app, &users, &replies).await;
        let response = builder.body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let json_reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);

        let expected = &step["response"];
        let mut want_status = u16::try_from(expected["status"].as_u64().unwrap()).unwrap();
        let mut want_body = expected["body"].as_str().unwrap().to_owned();
        let mut want_headers = expected["headers"].clone();
        let overridden = divergences
            .get(name.as_str())
            .copied()
            .filter(|_| want_status == 500)
            .or_else(|| master.get(&(name.as_str(), index)).copied());
        if let Some((status, body)) = overridden {
            want_status = status;
            body.clone_into(&mut want_body);
            let allow = if request["path"]
                .as_str()
                .unwrap()
                .starts_with("/api/users/me")
            {
                "GET, HEAD, OPTIONS"
            } else {
                "POST, OPTIONS"
            };
            let www = if status == 401 {
                json!("Bearer realm=\"api\"")
            } else {
                Value::Null
            };
            want_headers = json!({"Content-Type": "application/json", "WWW-Authenticate": www, "Allow": allow, "Vary": "Accept"});
        }
        let here = format!(
            "{name} step {index} ({} {})",
            request["method"], request["path"]
        );
        if status != want_status {
            problems.push(format!(
                "{here}: status {status}, simplejwt {want_status}; body {text}"
            ));
        }
        for (header, want) in want_headers.as_object().unwrap() {
            let got = headers
                .get(header.as_str())
                .map(|v| v.to_str().unwrap().to_owned());
            if got.as_deref() != want.as_str() {
                problems.push(format!(
                    "{here}: header {header} is {got:?}, simplejwt {want}"
                ));
            }
        }
        if mask_jwts(&text) != want_body {
            problems.push(format!(
                "{here}: body\n    ours:      {}\n    simplejwt: {want_body}",
                mask_jwts(&text)
            ));
        }
        if overridden.is_none()
            && let Some(tokens) = expected.get("tokens").and_then(Value::as_object)
        {
            {
                for (field, want) in tokens {
                    let ours = token_summary(json_reply[field].as_str().unwrap_or_default());
                    if &ours != want {
                        problems.push(format!(
                            "{here}: token {field}\n    ours:      {ours}\n    simplejwt: {want}"
                        ));
                    }
                }
            }
        }
        replies.push(json_reply);
    }
    if let Some(store) = elsewhere {
        store.close().await;
    }
    app.stop().await;
    problems
}

async fn replay_all(backend: Backend) {
    let fixture = fixture();
    let profiles = fixture["profiles"].clone();
    let cases = fixture["cases"].as_array().unwrap().clone();
    assert!(cases.len() > 250, "the fixture lost cases");
    let permits = Arc::new(Semaphore::new(6));
    let mut tasks = tokio::task::JoinSet::new();
    for case in cases {
        let permits = Arc::clone(&permits);
        let profiles = profiles.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            replay_case(backend, case, profiles).await
        });
    }
    let mut problems = Vec::new();
    while let Some(result) = tasks.join_next().await {
        problems.extend(result.unwrap());
    }
    problems.sort();
    assert!(
        problems.is_empty(),
        "{} difference(s) from simplejwt 5.5.1:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

crate::both_backends!(replay_all);
