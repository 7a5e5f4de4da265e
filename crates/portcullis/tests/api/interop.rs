//! Every algorithm end to end, and tokens crossing between portcullis and
//! independent JWT implementations (`RustCrypto`'s `hmac`, `ed25519-dalek`
//! and `p256`, which share no code with portcullis's aws-lc-rs backend).

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::{Backend, SIGNING_KEY, TestApp, claims, mint_hs, now};

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A fresh (private PEM, public PEM) pair for an asymmetric algorithm.
pub(crate) fn pem_pair(algorithm: &str) -> (String, String) {
    match algorithm {
        "EdDSA" => {
            let pkcs8 =
                Ed25519KeyPair::generate_pkcs8v1(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let public = pair.public_key().as_der().unwrap();
            (
                pem("PRIVATE KEY", pkcs8.as_ref()),
                pem("PUBLIC KEY", public.as_ref()),
            )
        }
        "ES256" | "ES384" => {
            let curve = if algorithm == "ES256" {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::generate(curve).unwrap();
            let pkcs8 = pair.to_pkcs8v1().unwrap();
            let public = pair.public_key().as_der().unwrap();
            (
                pem("PRIVATE KEY", pkcs8.as_ref()),
                pem("PUBLIC KEY", public.as_ref()),
            )
        }
        _ => {
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let pkcs8 = pair.as_der().unwrap();
            let public = pair.public_key().as_der().unwrap();
            (
                pem("PRIVATE KEY", pkcs8.as_ref()),
                pem("PUBLIC KEY", public.as_ref()),
            )
        }
    }
}

pub(crate) fn header(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// Sign and verify with each algorithm through the whole API; a token
/// that names another algorithm, or abuses the public key as an HMAC
/// secret, is refused with simplejwt's body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_end_to_end() {
    let rsa = pem_pair("RS256");
    for algorithm in portcullis_token::SUPPORTED_ALGORITHMS {
        let keys = match *algorithm {
            a if a.starts_with("HS") => None,
            a if a.starts_with("RS") || a.starts_with("PS") => Some(rsa.clone()),
            a => Some(pem_pair(a)),
        };
        let settings = match &keys {
            None => format!(
                "algorithm = \"{algorithm}\"\nsigning_key = \"{}\"\n",
                "k".repeat(64)
            ),
            Some((private, public)) => {
                format!(
                    "algorithm = \"{algorithm}\"\nsigning_key = '''\n{private}'''\nverifying_key = '''\n{public}'''\n"
                )
            }
        };
        let app = spawn_raw(&settings).await;
        app.user("alice", "alice-pass", true, false).await;
        let (refresh, access) = app.login("alice", "alice-pass").await;
        assert_eq!(
            header(&access),
            json!({"alg": algorithm, "typ": "JWT"}),
            "{algorithm}"
        );
        assert_eq!(
            app.get("/api/users/me/", Some(&access)).await.status,
            200,
            "{algorithm}"
        );
        let verified = app
            .post("/api/token/verify/", json!({"token": access}))
            .await;
        assert_eq!(
            (verified.status, verified.body.as_str()),
            (200, "{}"),
            "{algorithm}"
        );
        assert_eq!(
            app.post("/api/token/refresh/", json!({"refresh": refresh}))
                .await
                .status,
            200,
            "{algorithm}"
        );

        // RFC 8725 §3.1 / CVE-2016-10555: HS256 keyed with the public key.
        if let Some((_, public)) = &keys {
            let forged = mint_hs("HS256", public.as_bytes(), &claims(&access));
            let reply = app.get("/api/users/me/", Some(&forged)).await;
            assert_eq!(reply.status, 401, "{algorithm}");
            assert_eq!(
                reply.body,
                r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is invalid"}]}"#
            );
        }
        app.stop().await;
    }
}

/// A server with only the given key settings (no shared HMAC key).
async fn spawn_raw(settings: &str) -> TestApp {
    let db = crate::helpers::TestDatabase::new(Backend::Sqlite).await;
    let toml = format!(
        "bind = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nlog = \"warn\"\npassword_hash_memory_kib = 64\npassword_hash_iterations = 1\n{settings}",
        db.url
    );
    TestApp::spawn_with(db, &toml).await
}

/// `alg: none`, in any spelling, never passes; neither does an algorithm
/// other than the configured one, even with the right key.
async fn alg_none_and_other_algorithms(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let body = json!({"token_type": "access", "exp": now() + 300, "iat": now(), "jti": "a".repeat(32), "user_id": "1"});
    let payload = URL_SAFE_NO_PAD.encode(body.to_string());
    let mut forged: Vec<String> = ["none", "None", "NONE", "nOnE"]
        .iter()
        .map(|alg| {
            format!(
                "{}.{payload}.",
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#))
            )
        })
        .collect();
    forged.push(mint_hs("HS512", SIGNING_KEY.as_bytes(), &body));
    forged.push(mint_hs("HS384", SIGNING_KEY.as_bytes(), &body));
    let genuine = mint_hs("HS256", SIGNING_KEY.as_bytes(), &body);
    assert_eq!(app.get("/api/users/me/", Some(&genuine)).await.status, 200);
    for token in forged {
        let reply = app.get("/api/users/me/", Some(&token)).await;
        assert_eq!(reply.status, 401, "{token}");
        assert!(
            reply.body.contains(r#""message":"Token is invalid""#),
            "{}",
            reply.body
        );
        let verify = app
            .post("/api/token/verify/", json!({"token": token}))
            .await;
        assert_eq!(
            (verify.status, verify.body.as_str()),
            (
                401,
                r#"{"detail":"Token is invalid","code":"token_not_valid"}"#
            )
        );
    }
    app.stop().await;
}

crate::both_backends!(alg_none_and_other_algorithms);

/// Tokens from an independent implementation are accepted, with the
/// `user_id` as a string (simplejwt ≥ 5.5.1) or an integer (older).
#[tokio::test]
async fn foreign_hs256_tokens_are_accepted() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    app.user("alice", "alice-pass", true, false).await;
    for user_id in [json!("1"), json!(1)] {
        let token = mint_hs(
            "HS256",
            SIGNING_KEY.as_bytes(),
            &json!({"token_type": "access", "exp": now() + 300, "iat": now(), "jti": "b".repeat(32), "user_id": user_id}),
        );
        let me = app.get("/api/users/me/", Some(&token)).await;
        assert_eq!(
            (me.status, me.body.as_str()),
            (
                200,
                r#"{"id":1,"username":"alice","email":"alice@example.com"}"#
            )
        );
    }
    app.stop().await;
}

/// portcullis tokens verify under independent implementations.
#[tokio::test]
async fn our_tokens_verify_independently() {
    use ed25519_dalek::Verifier as _;

    // HS256: recompute the MAC with the `hmac` crate.
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    assert_eq!(
        mint_hs("HS256", SIGNING_KEY.as_bytes(), &claims(&access))
            .rsplit('.')
            .next(),
        access.rsplit('.').next()
    );
    app.stop().await;

    // EdDSA with ed25519-dalek, both ways.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let seed: [u8; 32] = pkcs8.as_ref()[16..48].try_into().unwrap();
    let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
    let app = spawn_raw(&format!(
        "algorithm = \"EdDSA\"\nsigning_key = '''\n{}'''\n",
        pem("PRIVATE KEY", pkcs8.as_ref())
    ))
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let (message, signature) = access.rsplit_once('.').unwrap();
    let signature =
        ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    dalek
        .verifying_key()
        .verify(message.as_bytes(), &signature)
        .expect("ed25519-dalek verifies our EdDSA token");

    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
    let body = json!({"token_type": "access", "exp": now() + 300, "iat": now(), "jti": "c".repeat(32), "user_id": "1"});
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(body.to_string()));
    let signature = ed25519_dalek::Signer::sign(&dalek, message.as_bytes());
    let foreign = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    assert_eq!(
        app.get("/api/users/me/", Some(&foreign)).await.status,
        200,
        "a dalek-signed token is accepted"
    );
    app.stop().await;

    // ES256 with p256.
    let (private, public) = pem_pair("ES256");
    let app = spawn_raw(&format!(
        "algorithm = \"ES256\"\nsigning_key = '''\n{private}'''\n"
    ))
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let spki = STANDARD
        .decode(
            public
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let point = &spki[spki.len() - 65..];
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
    let (message, signature) = access.rsplit_once('.').unwrap();
    let signature =
        p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    p256::ecdsa::signature::Verifier::verify(&verifying, message.as_bytes(), &signature)
        .expect("p256 verifies our ES256 token");
    app.stop().await;
}
