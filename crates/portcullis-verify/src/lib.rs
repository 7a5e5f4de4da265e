//! Protect your own axum API with the access tokens portcullis (or
//! djangorestframework-simplejwt) issues, verified offline in your process,
//! as simplejwt's `JWTStatelessUserAuthentication` does: no database, no
//! call to the server.
//!
//! The claim rules, the 401 bodies and the `WWW-Authenticate` header are
//! portcullis-token's, the very code the server runs, so a token this
//! crate refuses is refused by the server with the same body. Only the
//! server's user checks (user exists, is active, password unchanged) are
//! not made: they need the database.
//!
//! - [`Verifier`]: the settings (simplejwt's names) and the keys — a shared
//!   secret, a public PEM, or a JWKS URL (cached, refetched on an unknown `kid`).
//! - [`RequireAuth`]: a tower layer that authenticates every request of a
//!   router and applies a [`Permission`]; refusals are simplejwt's bodies.
//! - [`AuthUser`] and [`MaybeAuthUser`]: the extractors handlers take.
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use portcullis_verify::{AuthUser, Permission, RequireAuth, Verifier};
//! use serde_json::{Value, json};
//!
//! async fn me(user: AuthUser) -> Json<Value> {
//!     Json(json!({ "id": user.id(), "staff": user.is_staff() }))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // SIGNING_KEY as in the server's settings; or `.verifying_key_pem(…)`,
//! // or `.jwk_url("https://auth.example.com/.well-known/jwks.json")`.
//! let verifier = Verifier::builder()
//!     .signing_key("an HMAC secret of at least thirty-two bytes")
//!     .audience("my-api")
//!     .leeway(5)
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/api/me/", get(me))
//!     .layer(RequireAuth::new(verifier, Permission::IsAuthenticated));
//!
//! // Anonymous requests get DRF's 401.
//! use tower::ServiceExt as _;
//! let request = axum::http::Request::get("/api/me/").body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"api\"");
//! # Ok(())
//! # }
//! ```

mod axum_support;
mod permission;
mod verifier;

pub use axum_support::{AuthError, AuthUser, MaybeAuthUser, RequireAuth, RequireAuthService};
pub use permission::Permission;
pub use portcullis_token::{Algorithm, Audience, Clock, Rejection, TokenType};
pub use verifier::{
    BuildError, JWKS_REFETCH_EVERY, JwksError, JwksSource, Verifier, VerifierBuilder,
};

/// The README's examples compile as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
