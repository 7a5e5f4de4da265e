//! `JWTAuthentication` as axum extractors. Handlers never read the
//! authentication header themselves.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use portcullis_core::{AuthError, Authenticated};
use portcullis_token::Rejection;

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

/// Like [`AuthUser`], for staff only (DRF's `IsAdminUser`): anonymous
/// requests are a 401, authenticated users without `is_staff` a 403
/// "You do not have permission to perform this action.".
#[derive(Debug, Clone)]
pub struct StaffUser(pub Authenticated);

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AuthUser(auth) = AuthUser::from_request_parts(parts, state).await?;
        if auth.user.is_staff {
            Ok(Self(auth))
        } else {
            Err(ApiError::PermissionDenied)
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match MaybeAuthUser::from_request_parts(parts, state).await?.0 {
            Some(authenticated) => Ok(Self(authenticated)),
            None => Err(AuthError::from(Rejection::NotAuthenticated).into()),
        }
    }
}
