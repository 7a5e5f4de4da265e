//! Token hardening (RFC 8725, the OWASP JWT cheat sheet), over real HTTP on
//! the three places a token is read: `/api/token/verify/`,
//! `/api/token/refresh/` and `GET /api/users/me/`. Every forged token gets
//! simplejwt's exact 401 body, never a 500.
//!
//! Token parsing does not touch the database, so these run on SQLite only.
//! Where PyJWT (and so simplejwt) would accept a token, portcullis does too
//! and the test says so; where portcullis is stricter, the test says why.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::{Backend, SIGNING_KEY, TestApp, TestDatabase, claims, now};

const INVALID_VERIFY: &str = r#"{"detail":"Token is invalid","code":"token_not_valid"}"#;
const EXPIRED_VERIFY: &str = r#"{"detail":"Token is expired","code":"token_not_valid"}"#;
const WRONG_TYPE_REFRESH: &str = r#"{"detail":"Token has wrong type","code":"token_not_valid"}"#;

fn me_body(message: &str) -> String {
    format!(
        r#"{{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{{"token_class":"AccessToken","token_type":"access","message":"{message}"}}]}}"#
    )
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(key: &[u8], message: &str) -> String {
    use hmac::{Hmac, KeyInit as _, Mac as _};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// A token from raw header and payload bytes, HS256-signed with `key`.
fn mint_raw(header: &str, payload: &[u8], key: &[u8]) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload));
    let signature = hs256(key, &message);
    format!("{message}.{signature}")
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn mint(claims: &Value) -> String {
    mint_raw(
        HEADER,
        claims.to_string().as_bytes(),
        SIGNING_KEY.as_bytes(),
    )
}

/// `token` refused everywhere: verify and refresh answer `token_body`,
/// `/api/users/me/` answers simplejwt's list of per-class messages.
async fn refused(app: &TestApp, token: &str, token_body: &str, me_message: &str) {
    let shown = shown(token);
    let verify = app
        .post("/api/token/verify/", json!({"token": token}))
        .await;
    assert_eq!(
        (verify.status, verify.body.as_str()),
        (401, token_body),
        "verify {shown}"
    );
    let refresh = app
        .post("/api/token/refresh/", json!({"refresh": token}))
        .await;
    assert_eq!(
        (refresh.status, refresh.body.as_str()),
        (401, token_body),
        "refresh {shown}"
    );
    let me = app.get("/api/users/me/", Some(token)).await;
    assert_eq!(
        (me.status, me.body),
        (401, me_body(me_message)),
        "me {shown}"
    );
}

/// A token for a failure message: long ones are cut.
fn shown(token: &str) -> String {
    let cut: String = token.chars().take(300).collect();
    format!("{cut} ({} bytes)", token.len())
}

async fn invalid(app: &TestApp, token: &str) {
    refused(app, token, INVALID_VERIFY, "Token is invalid").await;
}

/// An access token that works, to show what the forgeries change.
async fn accepted(app: &TestApp, token: &str) {
    let verify = app
        .post("/api/token/verify/", json!({"token": token}))
        .await;
    assert_eq!(
        (verify.status, verify.body.as_str()),
        (200, "{}"),
        "verify {}",
        shown(token)
    );
    let me = app.get("/api/users/me/", Some(token)).await;
    assert_eq!(me.status, 200, "me {}: {}", shown(token), me.body);
}

const SETTINGS: &str = "leeway = 10\naudience = \"api\"\nissuer = \"https://issuer.example\"\n";

/// A server with LEEWAY, AUDIENCE and ISSUER, and the claims of a real
/// access token (and the refresh token) it issued.
async fn server() -> (TestApp, Value, String, String) {
    let app = TestApp::spawn(Backend::Sqlite, SETTINGS).await;
    app.user("alice", "alice-pass", true, false).await;
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let c = claims(&access);
    (app, c, refresh, access)
}

fn with(claims: &Value, changes: &Value) -> Value {
    let mut c = claims.clone();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_in_every_spelling() {
    let (app, c, _, access) = server().await;
    accepted(&app, &mint(&c)).await;
    accepted(&app, &access).await;
    let payload = c.to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(payload.as_bytes()));
        invalid(&app, &unsigned).await;
        invalid(
            &app,
            &mint_raw(&header, payload.as_bytes(), SIGNING_KEY.as_bytes()),
        )
        .await;
    }
    // No alg at all.
    invalid(
        &app,
        &mint_raw(
            r#"{"typ":"JWT"}"#,
            payload.as_bytes(),
            SIGNING_KEY.as_bytes(),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_cannot_name_a_path_or_sql() {
    let (app, c, _, _) = server().await;
    for kid in [
        "../../../../../../etc/passwd",
        "/dev/null",
        "' OR '1'='1' --",
        "x'; DROP TABLE signing_keys; --",
        "",
    ] {
        let header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"}).to_string();
        // Signed with the real key: a kid no key has is ignored, as simplejwt
        // ignores it; it is never looked up as a file or a row.
        accepted(
            &app,
            &mint_raw(&header, c.to_string().as_bytes(), SIGNING_KEY.as_bytes()),
        )
        .await;
        // Signed with the empty key a path such as /dev/null would give.
        invalid(&app, &mint_raw(&header, c.to_string().as_bytes(), b"")).await;
    }
    // The database is intact.
    accepted(&app, &mint(&c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jku_x5u_and_jwk_headers_are_ignored() {
    let (app, c, _, _) = server().await;
    let attacker = b"attacker-chosen-secret-0123456789abcdef";
    let jwk = json!({"kty": "oct", "k": b64(attacker), "alg": "HS256"});
    for extra in [
        json!({"jku": "http://127.0.0.1:9/jwks.json"}),
        json!({"x5u": "http://127.0.0.1:9/cert.pem"}),
        json!({"jwk": jwk}),
        json!({"x5c": ["MIIB"]}),
    ] {
        let mut header = json!({"alg": "HS256", "typ": "JWT"});
        for (k, v) in extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        let header = header.to_string();
        // The key they point to or carry is never used…
        invalid(&app, &mint_raw(&header, c.to_string().as_bytes(), attacker)).await;
        // …and they change nothing for a token our key signed.
        accepted(
            &app,
            &mint_raw(&header, c.to_string().as_bytes(), SIGNING_KEY.as_bytes()),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_claims_at_and_beyond_the_leeway() {
    let (app, c, _, _) = server().await;
    let t = now();
    // LEEWAY = 10: PyJWT refuses exp <= now - leeway. A 2 s margin on the
    // accepting side absorbs the clock ticking during the request.
    refused(
        &app,
        &mint(&with(&c, &json!({"exp": t - 10}))),
        EXPIRED_VERIFY,
        "Token is expired",
    )
    .await;
    refused(
        &app,
        &mint(&with(&c, &json!({"exp": t - 11}))),
        EXPIRED_VERIFY,
        "Token is expired",
    )
    .await;
    refused(
        &app,
        &mint(&with(&c, &json!({"exp": t - 100_000}))),
        EXPIRED_VERIFY,
        "Token is expired",
    )
    .await;
    accepted(&app, &mint(&with(&c, &json!({"exp": t - 8})))).await;
    for claim in ["nbf", "iat"] {
        // Refused beyond now + leeway (a 2 s margin again); accepted within.
        invalid(&app, &mint(&with(&c, &json!({claim: t + 12})))).await;
        invalid(&app, &mint(&with(&c, &json!({claim: t + 100_000})))).await;
        accepted(&app, &mint(&with(&c, &json!({claim: t + 8})))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_audience_and_issuer() {
    let (app, c, _, _) = server().await;
    for changes in [
        json!({"aud": "other"}),
        json!({"aud": ["other", "another"]}),
        json!({"aud": ["api", 5]}),
        json!({"aud": 5}),
        json!({"aud": null}),
        json!({"iss": "https://evil.example"}),
        json!({"iss": "https://issuer.example/"}),
        json!({"iss": null}),
    ] {
        invalid(&app, &mint(&with(&c, &changes))).await;
    }
    accepted(&app, &mint(&with(&c, &json!({"aud": ["other", "api"]})))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_and_access_cannot_stand_in_for_each_other() {
    let (app, _, refresh, access) = server().await;
    let me = app.get("/api/users/me/", Some(&refresh)).await;
    assert_eq!((me.status, me.body), (401, me_body("Token has wrong type")));
    let reply = app
        .post("/api/token/refresh/", json!({"refresh": access}))
        .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, WRONG_TYPE_REFRESH)
    );
    let reply = app
        .post("/api/token/sliding/refresh/", json!({"token": access}))
        .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, WRONG_TYPE_REFRESH)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_keys() {
    let (app, c, _, _) = server().await;
    let payload = c.to_string();
    // In the header: refused whichever comes first.
    for header in [
        r#"{"alg":"none","alg":"HS256","typ":"JWT"}"#,
        r#"{"alg":"HS256","alg":"none","typ":"JWT"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b","typ":"JWT"}"#,
    ] {
        invalid(
            &app,
            &mint_raw(header, payload.as_bytes(), SIGNING_KEY.as_bytes()),
        )
        .await;
    }
    // In the payload the last one wins, as with PyJWT's json.loads, and
    // every check reads that same value: a refresh type after the access
    // type makes a refresh token (refused as access; the verify endpoint
    // accepts any type, as simplejwt's does).
    let doubled = format!(
        "{},\"token_type\":\"refresh\"}}",
        payload.strip_suffix('}').unwrap()
    );
    let token = mint_raw(HEADER, doubled.as_bytes(), SIGNING_KEY.as_bytes());
    let me = app.get("/api/users/me/", Some(&token)).await;
    assert_eq!((me.status, me.body), (401, me_body("Token has wrong type")));
    let verify = app
        .post("/api/token/verify/", json!({"token": token}))
        .await;
    assert_eq!((verify.status, verify.body.as_str()), (200, "{}"));
    // A registered claim twice (here an expired exp after a valid one) is
    // refused outright: jsonwebtoken reads the registered claims strictly.
    // PyJWT would take the last (expired) one; either way it is refused.
    let doubled = format!(
        "{},\"exp\":{}}}",
        payload.strip_suffix('}').unwrap(),
        now() - 100
    );
    let token = mint_raw(HEADER, doubled.as_bytes(), SIGNING_KEY.as_bytes());
    invalid(&app, &token).await;
}

/// RFC 7515 §2: base64url without padding. PyJWT decodes leniently (it
/// accepts `=` padding and ignores trailing bits), so simplejwt would accept
/// a padded or bit-flipped copy of a valid token; portcullis refuses them,
/// so one token has exactly one spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_canonical_base64_is_refused() {
    let (app, c, _, access) = server().await;
    let (message, signature) = access.rsplit_once('.').unwrap();
    // Padding on the signature.
    invalid(&app, &format!("{message}.{signature}=")).await;
    // Trailing bits: an HS256 signature's last character carries 4 unused
    // bits; flipping one decodes to the same bytes under a lenient decoder.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = signature.as_bytes()[signature.len() - 1];
    let index = alphabet.iter().position(|b| *b == last).unwrap();
    let flipped = alphabet[index ^ 1] as char;
    let mut changed = signature[..signature.len() - 1].to_owned();
    changed.push(flipped);
    invalid(&app, &format!("{message}.{changed}")).await;
    // Padding or standard-alphabet characters in the signed segments, with
    // a signature over exactly those bytes.
    let payload = c.to_string();
    for (header, body) in [
        (
            format!("{}=", b64(HEADER.as_bytes())),
            b64(payload.as_bytes()),
        ),
        (b64(HEADER.as_bytes()), STANDARD.encode(payload.as_bytes())),
        (
            b64(HEADER.as_bytes()),
            format!("{}==", b64(payload.as_bytes())),
        ),
    ] {
        let message = format!("{header}.{body}");
        let token = format!("{message}.{}", hs256(SIGNING_KEY.as_bytes(), &message));
        invalid(&app, &token).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_are_not_a_json_object() {
    let (app, _, _, _) = server().await;
    for payload in [
        &b"hello"[..],
        b"",
        b"[1,2]",
        b"42",
        b"null",
        b"\"exp\"",
        b"\xff\xfe{}",
        b"{\"exp\":",
        b"{\"user_id\":\"1\"}trailing",
    ] {
        invalid(&app, &mint_raw(HEADER, payload, SIGNING_KEY.as_bytes())).await;
    }
    for header in [&b"not json"[..], b"[]", b"\xc3\x28"] {
        let message = format!("{}.{}", b64(header), b64(b"{}"));
        let token = format!("{message}.{}", hs256(SIGNING_KEY.as_bytes(), &message));
        invalid(&app, &token).await;
    }
    for garbage in [".", "..", "a.b", "a.b.c.d", "....", "\u{e9}.\u{e9}.\u{e9}"] {
        invalid(&app, garbage).await;
    }
}

/// PyJWT takes `int(exp)`, so a float exp is accepted (truncated), as here;
/// a string is refused by both. A huge number PyJWT would accept as "never
/// expires"; portcullis refuses any date past the year 9999 as invalid
/// (deliberately stricter: such a token is a forgery or a bug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_exp_values() {
    let (app, c, _, _) = server().await;
    let t = now();
    #[allow(clippy::cast_precision_loss)]
    let float = t as f64 + 300.5;
    accepted(&app, &mint(&with(&c, &json!({"exp": float})))).await;
    for exp in [
        json!((t + 300).to_string()),
        json!(true),
        json!([t + 300]),
        json!({"t": t + 300}),
        json!(1e300),
        json!(f64::MAX),
        json!(-1e300),
    ] {
        invalid(&app, &mint(&with(&c, &json!({"exp": exp})))).await;
    }
    let huge = format!(
        "{},\"exp\":1{}}}",
        c.to_string().strip_suffix('}').unwrap(),
        "0".repeat(400)
    );
    invalid(
        &app,
        &mint_raw(HEADER, huge.as_bytes(), SIGNING_KEY.as_bytes()),
    )
    .await;
}

/// `MAX_TOKEN_BYTES` (8 KiB by default): a longer token is refused before it
/// is parsed, even one our key signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_over_the_size_cap() {
    let (app, c, _, _) = server().await;
    let small = mint(&with(&c, &json!({"pad": "x".repeat(4000)})));
    accepted(&app, &small).await;
    let big = mint(&with(&c, &json!({"pad": "x".repeat(8200)})));
    assert!(big.len() > 8192);
    invalid(&app, &big).await;
    // Within MAX_HEADER_BYTES (32 KiB), three times over MAX_TOKEN_BYTES.
    let huge = "a".repeat(8_000);
    invalid(&app, &format!("{huge}.{huge}.{huge}")).await;
}

/// The public key of an RS256 or ES256 server, PEM or DER, used as an
/// HS256 secret: the algorithm is the key's, never the header's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_public_key() {
    for algorithm in ["RS256", "ES256"] {
        let (private, public) = crate::interop::pem_pair(algorithm);
        let db = TestDatabase::new(Backend::Sqlite).await;
        let toml = format!(
            "bind = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nlog = \"warn\"\npassword_hash_memory_kib = 64\npassword_hash_iterations = 1\nalgorithm = \"{algorithm}\"\nsigning_key = '''\n{private}'''\nverifying_key = '''\n{public}'''\n",
            db.url
        );
        let app = TestApp::spawn_with(db, &toml).await;
        app.user("alice", "alice-pass", true, false).await;
        let (_, access) = app.login("alice", "alice-pass").await;
        accepted(&app, &access).await;
        let c = claims(&access);
        let der_b64: String = public.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(der_b64).unwrap();
        for secret in [
            public.as_bytes(),
            public.trim_end().as_bytes(),
            der.as_slice(),
        ] {
            for alg in ["HS256", "HS384", "HS512"] {
                let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
                let token = mint_raw(&header, c.to_string().as_bytes(), secret);
                invalid(&app, &token).await;
            }
        }
        // The real signature relabelled with another algorithm of a family.
        let (_, rest) = access.split_once('.').unwrap();
        for alg in ["RS512", "PS256", "ES384", "EdDSA", "HS256"] {
            let relabelled = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            invalid(&app, &format!("{relabelled}.{rest}")).await;
        }
        app.stop().await;
    }
}
