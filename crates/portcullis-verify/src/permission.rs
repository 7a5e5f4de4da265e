//! DRF's permission classes, over the token's claims.

use std::fmt;
use std::sync::Arc;

use portcullis_token::Rejection;

use crate::AuthUser;

/// What a request must satisfy, checked after authentication. As in DRF,
/// an anonymous request that a permission refuses gets the 401 "not
/// provided" body; an authenticated one gets the 403.
#[derive(Clone)]
pub enum Permission {
    /// DRF's `AllowAny`: anonymous requests pass (an invalid token is
    /// still refused, as in DRF).
    AllowAny,
    /// DRF's `IsAuthenticated`.
    IsAuthenticated,
    /// DRF's `IsAdminUser`: the `is_staff` claim is `true`.
    IsAdminUser,
    /// Any rule over the authenticated user's claims.
    Custom(Arc<dyn Fn(&AuthUser) -> bool + Send + Sync>),
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AllowAny => "AllowAny",
            Self::IsAuthenticated => "IsAuthenticated",
            Self::IsAdminUser => "IsAdminUser",
            Self::Custom(_) => "Custom",
        })
    }
}

impl Permission {
    /// A rule over the claims: `Permission::custom(|u| u.claim("scope") == …)`.
    pub fn custom(rule: impl Fn(&AuthUser) -> bool + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(rule))
    }

    /// DRF's `check_permissions` and `permission_denied`.
    pub fn check(&self, user: Option<&AuthUser>) -> Result<(), Rejection> {
        let allowed = match (self, user) {
            (Self::AllowAny, _) | (Self::IsAuthenticated, Some(_)) => true,
            (_, None) => false,
            (Self::IsAdminUser, Some(user)) => user.is_staff(),
            (Self::Custom(rule), Some(user)) => rule(user),
        };
        match (allowed, user) {
            (true, _) => Ok(()),
            (false, None) => Err(Rejection::NotAuthenticated),
            (false, Some(_)) => Err(Rejection::PermissionDenied),
        }
    }
}
