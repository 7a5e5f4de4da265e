//! The axum side: the [`RequireAuth`] layer authenticates each request
//! once and leaves the verdict in the request's extensions, where the
//! [`AuthUser`] and [`MaybeAuthUser`] extractors find it. Refusals are
//! [`AuthError`], the one place they become responses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_token::drf::{self, Challenge};
use portcullis_token::{Rejection, Token, TokenSettings};
use serde_json::Value;
use tower::{Layer, Service};

use crate::{Permission, Verifier};

/// A request authenticated by a valid access token: simplejwt's
/// `TokenUser`, read from the claims only.
#[derive(Debug, Clone)]
pub struct AuthUser {
    id: String,
    token: Token,
}

impl AuthUser {
    /// `None` when the token has no `USER_ID_CLAIM`.
    pub(crate) fn from_token(token: Token, settings: &TokenSettings) -> Option<Self> {
        let id = match token.get(&settings.user_id_claim)? {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        Some(Self { id, token })
    }

    /// The `USER_ID_CLAIM` value, as text (simplejwt ≥ 5.5.1 writes `"1"`;
    /// an older integer claim `1` reads `"1"` too).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `TokenUser.username`: the `username` claim, or `""`.
    #[must_use]
    pub fn username(&self) -> &str {
        self.claim("username").and_then(Value::as_str).unwrap_or("")
    }

    /// `TokenUser.is_staff`: the `is_staff` claim, or `false`.
    #[must_use]
    pub fn is_staff(&self) -> bool {
        self.claim("is_staff")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `TokenUser.is_superuser`: the `is_superuser` claim, or `false`.
    #[must_use]
    pub fn is_superuser(&self) -> bool {
        self.claim("is_superuser")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// One claim of the token.
    #[must_use]
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.token.get(name)
    }

    /// The validated token, every claim in order.
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.token
    }
}

/// Like [`AuthUser`], for routes that allow anonymous requests
/// ([`Permission::AllowAny`]): `None` when no credentials were sent.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

/// A refusal, rendered as simplejwt and DRF render it: the JSON body of
/// [`Rejection::body`], and `WWW-Authenticate` on a 401 (both from
/// `portcullis_token`'s DRF wire format, as the server writes them).
#[derive(Debug, Clone)]
pub struct AuthError {
    rejection: Rejection,
    challenge: Option<Challenge>,
}

impl AuthError {
    /// A refusal from the verifier, with its `WWW-Authenticate` value.
    #[must_use]
    pub fn new(rejection: Rejection, verifier: &Verifier) -> Self {
        Self {
            rejection,
            challenge: Some(verifier.challenge().clone()),
        }
    }

    /// DRF's 403 `PermissionDenied`, for handlers (an object that is not
    /// the user's).
    #[must_use]
    pub fn forbidden() -> Self {
        Self {
            rejection: Rejection::PermissionDenied,
            challenge: None,
        }
    }

    /// Why.
    #[must_use]
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.rejection.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut response = (status, Json(self.rejection.body())).into_response();
        self.challenge
            .unwrap_or_else(|| Challenge::new::<&str>(&[]))
            .apply(&mut response);
        response
    }
}

/// What the layer leaves in the request's extensions.
#[derive(Debug, Clone)]
struct Authenticated {
    user: Option<AuthUser>,
    challenge: Challenge,
}

/// Without [`RequireAuth`] in front, the extractors cannot know who asks:
/// a programming error, answered with DRF's generic 500.
fn missing_layer() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(drf::error_body(drf::SERVER_ERROR, None)),
    )
        .into_response()
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Authenticated>() {
            Some(auth) => Ok(Self(auth.user.clone())),
            None => Err(missing_layer()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Response;

    /// Anonymous requests get DRF's 401 "Authentication credentials were
    /// not provided." (reachable only behind [`Permission::AllowAny`]).
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Authenticated>() {
            Some(Authenticated {
                user: Some(user), ..
            }) => Ok(user.clone()),
            Some(Authenticated {
                user: None,
                challenge,
            }) => Err(AuthError {
                rejection: Rejection::NotAuthenticated,
                challenge: Some(challenge.clone()),
            }
            .into_response()),
            None => Err(missing_layer()),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Response> {
        match parts.extensions.get::<Authenticated>() {
            Some(auth) => Ok(auth.user.clone()),
            None => Err(missing_layer()),
        }
    }
}

/// A tower layer that authenticates every request of a router and applies
/// a [`Permission`]: DRF's `DEFAULT_AUTHENTICATION_CLASSES` and
/// `DEFAULT_PERMISSION_CLASSES` in one line.
#[derive(Debug, Clone)]
pub struct RequireAuth {
    verifier: Verifier,
    permission: Permission,
}

impl RequireAuth {
    /// Protect with `permission`.
    #[must_use]
    pub fn new(verifier: Verifier, permission: Permission) -> Self {
        Self {
            verifier,
            permission,
        }
    }
}

impl<S> Layer<S> for RequireAuth {
    type Service = RequireAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuthService {
            inner,
            verifier: self.verifier.clone(),
            permission: self.permission.clone(),
        }
    }
}

/// The service [`RequireAuth`] wraps around a router.
#[derive(Debug, Clone)]
pub struct RequireAuthService<S> {
    inner: S,
    verifier: Verifier,
    permission: Permission,
}

impl<S> Service<Request<Body>> for RequireAuthService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one that serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let permission = self.permission.clone();
        Box::pin(async move {
            let verdict = verifier
                .authenticate_headers(request.headers())
                .await
                .and_then(|user| permission.check(user.as_ref()).map(|()| user));
            match verdict {
                Ok(user) => {
                    request.extensions_mut().insert(Authenticated {
                        user,
                        challenge: verifier.challenge().clone(),
                    });
                    inner.call(request).await
                }
                Err(rejection) => Ok(AuthError::new(rejection, &verifier).into_response()),
            }
        })
    }
}
