//! The key set (issue 3): keys made by the real `portcullis keys` binary,
//! picked up by a running server within 5 s, published at
//! `/.well-known/jwks.json`, and verified from the JWK alone by
//! independent implementations (`RustCrypto`'s `p256`, `p384`,
//! `ed25519-dalek` and `rsa`, which share no code with aws-lc-rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, SIGNING_KEY, TestApp, TestDatabase, binary, mint_hs, mint_hs_with_header, now, run,
};
use crate::interop::header;

/// simplejwt's 401 for a protected request with an invalid access token.
const INVALID_ME: &str = r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid"}]}"#;
/// simplejwt's 401 from the verify endpoint.
const INVALID_VERIFY: &str = r#"{"detail":"Token is invalid","code":"token_not_valid"}"#;

/// `portcullis keys ARGS…` against the test server's database, with the
/// server's key and any extra settings.
pub(crate) async fn keys(db: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = binary();
    command
        .arg("keys")
        .args(args)
        .env("PORTCULLIS_DATABASE_URL", &db.url)
        .env("PORTCULLIS_SIGNING_KEY", SIGNING_KEY)
        .env("PORTCULLIS_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = run(command, "").await;
    assert_eq!(out.code, 0, "keys {args:?}: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// The kid a `generate` or `rotate` printed.
pub(crate) fn printed_kid(out: &str) -> String {
    out.split(" key ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no kid in {out:?}"))
        .to_owned()
}

/// Log in and return (refresh, access, the access token's kid).
async fn login(app: &TestApp) -> (String, String, Option<String>) {
    let (refresh, access) = app.login("alice", "alice-pass").await;
    let kid = header(&access)["kid"].as_str().map(str::to_owned);
    (refresh, access, kid)
}

/// Poll (never sleep blindly) until `check` holds, for at most 5 s: the
/// time within which a running server must see a change made by the CLI.
async fn within_5s<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 5 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn signs_with(app: &TestApp, kid: &str) {
    within_5s(&format!("the server signs with {kid}"), || async {
        login(app).await.2.as_deref() == Some(kid)
    })
    .await;
}

async fn jwks(app: &TestApp) -> Value {
    let reply = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn b64(field: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(field.as_str().unwrap()).unwrap()
}

/// Verify a compact JWS with the JWK alone, without jsonwebtoken or
/// aws-lc-rs. The algorithm comes from the JWK.
fn verify_with_jwk(token: &str, jwk: &Value) {
    // `signature::Verifier`, shared by ed25519-dalek and rsa.
    use ed25519_dalek::Verifier as _;

    let (message, signature) = token.rsplit_once('.').unwrap();
    let message = message.as_bytes();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let point = |x: &Value, y: &Value| [vec![4], b64(x), b64(y)].concat();
    let rsa_key = || {
        rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&b64(&jwk["n"])),
            rsa::BigUint::from_bytes_be(&b64(&jwk["e"])),
        )
        .unwrap()
    };
    match jwk["alg"].as_str().unwrap() {
        "ES256" => {
            assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256")));
            let key =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point(&jwk["x"], &jwk["y"])).unwrap();
            let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
            p256::ecdsa::signature::Verifier::verify(&key, message, &signature).unwrap();
        }
        "ES384" => {
            assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-384")));
            let key =
                p384::ecdsa::VerifyingKey::from_sec1_bytes(&point(&jwk["x"], &jwk["y"])).unwrap();
            let signature = p384::ecdsa::Signature::from_slice(&signature).unwrap();
            p384::ecdsa::signature::Verifier::verify(&key, message, &signature).unwrap();
        }
        "EdDSA" => {
            assert_eq!(
                (&jwk["kty"], &jwk["crv"]),
                (&json!("OKP"), &json!("Ed25519"))
            );
            let key = ed25519_dalek::VerifyingKey::from_bytes(&b64(&jwk["x"]).try_into().unwrap())
                .unwrap();
            let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
            key.verify(message, &signature).unwrap();
        }
        "RS256" => {
            assert_eq!(jwk["kty"], "RSA");
            let key = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(rsa_key());
            let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice()).unwrap();
            key.verify(message, &signature).unwrap();
        }
        "PS256" => {
            assert_eq!(jwk["kty"], "RSA");
            let key = rsa::pss::VerifyingKey::<rsa::sha2::Sha256>::new(rsa_key());
            let signature = rsa::pss::Signature::try_from(signature.as_slice()).unwrap();
            key.verify(message, &signature).unwrap();
        }
        other => panic!("no independent verifier for {other}"),
    }
}

/// For each asymmetric algorithm: a key generated by the CLI signs within
/// 5 s, its public JWK is published, and the access token verifies with an
/// independent implementation built from that JWK alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_through_the_jwks() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    app.user("alice", "alice-pass", true, false).await;
    for alg in ["ES256", "ES384", "EdDSA", "RS256", "PS256"] {
        let kid = printed_kid(&keys(&app.db, &["generate", "--alg", alg, "--activate"], &[]).await);
        signs_with(&app, &kid).await;
        let (_, access, _) = login(&app).await;
        assert_eq!(
            header(&access),
            json!({"alg": alg, "kid": kid, "typ": "JWT"})
        );
        // PyJWT's sorted header, byte for byte.
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(access.split('.').next().unwrap())
                .unwrap(),
            format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#).as_bytes()
        );
        let set = jwks(&app).await;
        let jwk = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap_or_else(|| panic!("{kid} not in {set}"));
        assert_eq!((&jwk["alg"], &jwk["use"]), (&json!(alg), &json!("sig")));
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(jwk.get(private).is_none(), "{alg} JWK has {private}");
        }
        verify_with_jwk(&access, jwk);
        assert_eq!(app.get("/api/users/me/", Some(&access)).await.status, 200);
    }
    app.stop().await;
}

/// Before, during and after rotations (publish delay 0 and one hour):
/// old tokens verify, new tokens carry the new kid, the old key is
/// scheduled to retire when its last token expires, and once a key is
/// retired its tokens fail with simplejwt's 401 body.
async fn rotation_without_downtime(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let kidless = mint_hs(
        "HS256",
        SIGNING_KEY.as_bytes(),
        &json!({"token_type": "access", "exp": now() + 300, "iat": now(), "jti": "d".repeat(32), "user_id": "1"}),
    );

    // Before: SIGNING_KEY signs, kid-less as simplejwt; then key A.
    assert_eq!(login(&app).await.2, None);
    let a = printed_kid(&keys(&app.db, &["generate", "--alg", "ES256", "--activate"], &[]).await);
    signs_with(&app, &a).await;
    let (refresh_a, access_a, _) = login(&app).await;

    // Rotation with no publish delay: B signs at once, A verifies.
    let out = keys(
        &app.db,
        &["rotate"],
        &[("PORTCULLIS_KEY_PUBLISH_DELAY", "0")],
    )
    .await;
    let b = printed_kid(&out);
    signs_with(&app, &b).await;
    assert_eq!(
        header(&login(&app).await.1)["alg"],
        "ES256",
        "same algorithm"
    );
    assert_eq!(app.get("/api/users/me/", Some(&access_a)).await.status, 200);
    let refreshed = app
        .post("/api/token/refresh/", json!({"refresh": refresh_a}))
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(
        header(refreshed.json["access"].as_str().unwrap())["kid"],
        b.as_str(),
        "a token refreshed with A's refresh token is signed by B"
    );
    assert_eq!(app.get("/api/users/me/", Some(&kidless)).await.status, 200);
    let stored = app.auth.key_store().signing_keys().await.unwrap();
    let stored_a = stored.iter().find(|k| k.kid == a).unwrap();
    let stored_b = stored.iter().find(|k| k.kid == b).unwrap();
    assert_eq!(
        stored_a.retires_at,
        Some(stored_b.activates_at.unwrap() + 86_400),
        "A verifies until the last refresh token it signed has expired"
    );

    // Rotation with a one-hour delay: C is published at once, B still signs.
    let c = printed_kid(
        &keys(
            &app.db,
            &["rotate", "--alg", "EdDSA"],
            &[("PORTCULLIS_KEY_PUBLISH_DELAY", "1h")],
        )
        .await,
    );
    within_5s("C is published before it signs", || async {
        kids(&jwks(&app).await).contains(&c)
    })
    .await;
    assert_eq!(login(&app).await.2.as_deref(), Some(b.as_str()));
    let listed = keys(&app.db, &["list"], &[]).await;
    for (kid, state) in [(&a, "verify-only"), (&b, "active"), (&c, "pending")] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(kid.as_str()))
            .unwrap();
        assert!(
            line.contains(&format!(" {state} ")),
            "{kid} {state}: {listed}"
        );
    }
    let exported: Value =
        serde_json::from_str(&keys(&app.db, &["export-public"], &[]).await).unwrap();
    assert_eq!(kids(&exported), [a.clone(), b.clone(), c.clone()]);
    assert!(!exported.to_string().contains("\"d\""));

    // After: A is retired; its tokens fail, and it is no longer published.
    let out = keys(&app.db, &["retire", &a], &[]).await;
    assert!(out.contains("retired"), "{out}");
    within_5s("A's tokens are refused", || async {
        app.get("/api/users/me/", Some(&access_a)).await.status == 401
    })
    .await;
    let me = app.get("/api/users/me/", Some(&access_a)).await;
    assert_eq!(me.body, INVALID_ME);
    let verify = app
        .post("/api/token/verify/", json!({"token": access_a}))
        .await;
    assert_eq!((verify.status, verify.body.as_str()), (401, INVALID_VERIFY));
    assert_eq!(kids(&jwks(&app).await), [b.clone(), c.clone()]);
    let listed = keys(&app.db, &["list"], &[]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(a.as_str()) && l.contains(" retired "))
    );
    // The simplejwt world is unaffected.
    assert_eq!(app.get("/api/users/me/", Some(&kidless)).await.status, 200);
    app.stop().await;
}

/// An HMAC key never appears in the JWKS: neither `SIGNING_KEY` nor an
/// HS256 key of the set (which signs, with its kid). The JWKS is cacheable
/// and revalidated with its `ETag`.
async fn hmac_is_never_published(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let pending = keys(&app.db, &["generate", "--alg", "HS256"], &[]).await;
    assert!(
        pending.ends_with("; it verifies; it does not sign and, being HMAC, is never published.\n"),
        "{pending}"
    );
    let hs = printed_kid(&keys(&app.db, &["generate", "--alg", "HS256", "--activate"], &[]).await);
    signs_with(&app, &hs).await;
    let reply = app.get("/.well-known/jwks.json", None).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, r#"{"keys":[]}"#));
    assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let etag = reply.header("etag").unwrap().to_owned();
    let cached = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()["etag"], etag.as_str());

    // A published key changes the ETag.
    let es = printed_kid(&keys(&app.db, &["generate", "--alg", "ES256"], &[]).await);
    within_5s("the new key is published", || async {
        kids(&jwks(&app).await) == [es.clone()]
    })
    .await;
    let reply = app.get("/.well-known/jwks.json", None).await;
    assert_ne!(reply.header("etag"), Some(etag.as_str()));
    assert!(!reply.body.contains(r#""kty":"oct""#), "{}", reply.body);
    // The HS256 key still signs: a published key does not sign until activated.
    assert_eq!(login(&app).await.2.as_deref(), Some(hs.as_str()));
    app.stop().await;
}

crate::both_backends!(rotation_without_downtime, hmac_is_never_published);

/// The configured asymmetric key is published under its RFC 7638
/// thumbprint; its tokens stay kid-less (simplejwt's shape). RFC 8414
/// metadata names the keys and the token endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_key_and_metadata() {
    let (private, _) = crate::interop::pem_pair("EdDSA");
    let db = TestDatabase::new(Backend::Sqlite).await;
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nlog = \"warn\"\npassword_hash_memory_kib = 64\npassword_hash_iterations = 1\nalgorithm = \"EdDSA\"\nsigning_key = '''\n{private}'''\nkey_publish_delay = \"1m\"\n",
        db.url
    );
    let app = TestApp::spawn_with(db, &toml).await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, access, kid) = login(&app).await;
    assert_eq!(kid, None);
    let reply = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(reply.header("cache-control"), Some("public, max-age=30"));
    let jwk = &reply.json["keys"][0];
    assert_eq!(reply.json["keys"].as_array().unwrap().len(), 1);
    // RFC 7638 §3: SHA-256 of {"crv","kty","x"} in that order.
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        jwk["x"].as_str().unwrap()
    );
    let thumbprint = URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(canonical));
    assert_eq!(jwk["kid"], thumbprint.as_str());
    assert_eq!((&jwk["alg"], &jwk["use"]), (&json!("EdDSA"), &json!("sig")));
    verify_with_jwk(&access, jwk);

    let meta = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(meta.status(), 200);
    let meta: Value = meta.json().await.unwrap();
    let base = app.base.clone();
    assert_eq!(
        meta,
        json!({
            "issuer": base,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/api/token/"),
            "response_types_supported": [],
            "grant_types_supported": [],
        })
    );
    app.stop().await;
}

/// A token's header cannot choose: another algorithm than its key's, or a
/// kid nobody has, is refused with simplejwt's exact 401 body.
async fn header_cannot_choose(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let kid = printed_kid(&keys(&app.db, &["generate", "--alg", "ES256", "--activate"], &[]).await);
    signs_with(&app, &kid).await;
    let (_, access, _) = login(&app).await;
    let claims = crate::helpers::claims(&access);
    let jwk = jwks(&app).await["keys"][0].to_string();
    let forged = [
        // The public key abused as an HMAC secret, under the right kid.
        mint_hs_with_header(
            &format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#),
            "HS256",
            jwk.as_bytes(),
            &claims,
        ),
        // The real signature, relabelled with another ECDSA algorithm.
        {
            let (_, rest) = access.split_once('.').unwrap();
            let relabelled =
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES384","kid":"{kid}","typ":"JWT"}}"#));
            format!("{relabelled}.{rest}")
        },
        // A kid nobody has falls back to SIGNING_KEY, whose algorithm
        // (not the header's) decides: HS512 is refused…
        mint_hs_with_header(
            r#"{"alg":"HS512","kid":"no-such-key","typ":"JWT"}"#,
            "HS512",
            SIGNING_KEY.as_bytes(),
            &claims,
        ),
        // …and so is another secret.
        mint_hs_with_header(
            r#"{"alg":"HS256","kid":"no-such-key","typ":"JWT"}"#,
            "HS256",
            b"another-secret-0123456789abcdef0123456789",
            &claims,
        ),
    ];
    for token in forged {
        let me = app.get("/api/users/me/", Some(&token)).await;
        assert_eq!((me.status, me.body.as_str()), (401, INVALID_ME), "{token}");
        let verify = app
            .post("/api/token/verify/", json!({"token": token}))
            .await;
        assert_eq!((verify.status, verify.body.as_str()), (401, INVALID_VERIFY));
    }
    app.stop().await;
}

/// A kid-less deployment (`SIGNING_KEY` only) ignores a `kid` it does not
/// know, as simplejwt does (some libraries and gateways add one): the
/// token is checked with `SIGNING_KEY` and `ALGORITHM`, on every endpoint.
/// A kid that names a key of the set stays that key's, retired or not.
async fn an_unknown_kid_is_ignored(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let alice = app.user("alice", "alice-pass", true, false).await;
    let now = now();
    let with_kid = |kid: &str, token_type: &str, jti: &str| {
        mint_hs_with_header(
            &format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#),
            "HS256",
            SIGNING_KEY.as_bytes(),
            &json!({"token_type": token_type, "exp": now + 300, "iat": now, "jti": jti, "user_id": alice.id.to_string()}),
        )
    };
    let access = with_kid("key-1", "access", &"a".repeat(32));
    let me = app.get("/api/users/me/", Some(&access)).await;
    assert_eq!(
        (me.status, me.body.as_str()),
        (
            200,
            format!(
                r#"{{"id":{},"username":"alice","email":"alice@example.com"}}"#,
                alice.id
            )
            .as_str()
        )
    );
    let verify = app
        .post("/api/token/verify/", json!({"token": access}))
        .await;
    assert_eq!((verify.status, verify.body.as_str()), (200, "{}"));
    let refresh = with_kid("key-1", "refresh", &"b".repeat(32));
    let refreshed = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);

    // A retired key's kid is refused, though SIGNING_KEY signed the token.
    let kid = printed_kid(&keys(&app.db, &["generate", "--alg", "ES256"], &[]).await);
    keys(&app.db, &["retire", &kid], &[]).await;
    let retired = with_kid(&kid, "access", &"c".repeat(32));
    within_5s("the server knows the retired key", || async {
        app.get("/api/users/me/", Some(&retired)).await.body == INVALID_ME
    })
    .await;
    let verify = app
        .post("/api/token/verify/", json!({"token": retired}))
        .await;
    assert_eq!((verify.status, verify.body.as_str()), (401, INVALID_VERIFY));
    // …while a kid nobody has still falls back.
    assert_eq!(app.get("/api/users/me/", Some(&access)).await.status, 200);
    app.stop().await;
}

crate::both_backends!(header_cannot_choose, an_unknown_kid_is_ignored);

/// A JWKS server for `JWK_URL`, counting its requests.
struct Issuer {
    url: String,
    keys: Arc<std::sync::Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start() -> Self {
        let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (Arc::clone(&keys), Arc::clone(&fetches));
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (k, f) = (Arc::clone(&k), Arc::clone(&f));
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"keys": *k.lock().unwrap()}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.ok() });
        Self { url, keys, fetches }
    }

    /// A new Ed25519 key (ed25519-dalek), published without `alg`: the
    /// curve decides the algorithm.
    fn add_key(&self, kid: &str) -> ed25519_dalek::SigningKey {
        let mut seed = [0_u8; 32];
        aws_lc_rs::rand::fill(&mut seed).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        self.keys.lock().unwrap().push(json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        }));
        key
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn mint_eddsa(key: &ed25519_dalek::SigningKey, kid: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#));
    let body = json!({"token_type": "access", "exp": now() + 300, "iat": now(), "jti": "e".repeat(32), "user_id": "1"});
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(body.to_string()));
    let signature = ed25519_dalek::Signer::sign(key, message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// `JWK_URL`: tokens signed with the other issuer's keys are accepted; a
/// new kid triggers one refetch; further unknown kids within 30 s do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwk_url_keys_are_trusted_and_refetched_at_a_bounded_rate() {
    let issuer = Issuer::start().await;
    let first = issuer.add_key("issuer-1");
    let app = TestApp::spawn(Backend::Sqlite, &format!("jwk_url = \"{}\"\n", issuer.url)).await;
    app.user("alice", "alice-pass", true, false).await;
    assert_eq!(issuer.fetches(), 1, "fetched at start");

    let token = mint_eddsa(&first, "issuer-1");
    assert_eq!(app.get("/api/users/me/", Some(&token)).await.status, 200);
    assert_eq!(issuer.fetches(), 1, "a known kid needs no fetch");

    // A key the issuer added after our start: one refetch, then accepted.
    let second = issuer.add_key("issuer-2");
    let token = mint_eddsa(&second, "issuer-2");
    assert_eq!(app.get("/api/users/me/", Some(&token)).await.status, 200);
    assert_eq!(issuer.fetches(), 2);

    // Unknown kids within 30 s of that refetch: refused, no refetch.
    for kid in ["made-up-1", "made-up-2", "made-up-3"] {
        let me = app
            .get("/api/users/me/", Some(&mint_eddsa(&second, kid)))
            .await;
        assert_eq!((me.status, me.body.as_str()), (401, INVALID_ME));
    }
    assert_eq!(issuer.fetches(), 2, "refetching is rate-limited");
    // The other issuer's keys are trusted, not republished.
    assert_eq!(jwks(&app).await, json!({"keys": []}));
    app.stop().await;
}

/// `KEY_ROTATION_INTERVAL`: the server rotates by itself once the active
/// key has signed that long (here 1 s, publishing at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rotation() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        "key_rotation_interval = 1\nkey_publish_delay = 0\n",
    )
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let a = printed_kid(&keys(&app.db, &["generate", "--alg", "EdDSA", "--activate"], &[]).await);
    let (_, access_a, _) = login(&app).await;
    within_5s("the server rotated by itself", || async {
        login(&app).await.2.is_some_and(|kid| kid != a)
    })
    .await;
    let (_, access, _) = login(&app).await;
    assert_eq!(header(&access)["alg"], "EdDSA", "the same algorithm");
    assert_eq!(app.get("/api/users/me/", Some(&access_a)).await.status, 200);
    app.stop().await;
}
