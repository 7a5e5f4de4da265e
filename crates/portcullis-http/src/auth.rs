//! `JWTAuthentication` as axum extractors. Handlers never read the
//! authentication header themselves.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use portcullis_core::{AuthError, Authenticated};

use crate::{ApiError, AppState};

/// A request authenticated by an access token (or another accepted
/// class); anonymous requests are refused with DRF's 401
/// "Authentication credentials were not provided.".
#[derive(Debug, Clone)]
pub struct AuthUser(pub Authenticated);

/// Like [`AuthUser`], but anonymous requests pass as `None`. A token that is
/// present but invalid is still refused, as in DRF.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<Authenticated>);

impl FromRequestParts<AppState> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(&state.http().auth_header_name)
            .map(axum::http::HeaderValue::as_bytes);
        Ok(Self(state.auth().authenticate(header).await?))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match MaybeAuthUser::from_request_parts(parts, state).await?.0 {
            Some(authenticated) => Ok(Self(authenticated)),
            None => Err(AuthError::NotAuthenticated.into()),
        }
    }
}
