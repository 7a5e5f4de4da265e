//! The console's extractors: the logged-in staff member ([`Staff`]), a form
//! body ([`Fields`]), and a form posted by staff with its CSRF token
//! checked ([`Posted`]); no handler reads a cookie or a token by hand.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use portcullis_core::{Actor, User};

use crate::ConsoleError;
use crate::ConsoleState;
use crate::pages::Layout;
use crate::session::{Current, csrf_matches};

/// Form bodies above this are refused (the largest form is a few fields).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The name of every form's CSRF field.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// A logged-in, active staff account, read afresh for this request.
#[derive(Debug, Clone)]
pub(crate) struct Staff {
    /// The account.
    pub(crate) user: User,
    /// Its console session.
    pub(crate) session: Current,
    /// The client address (`TRUSTED_PROXIES` applied), for the audit trail.
    pub(crate) address: Option<String>,
}

impl Staff {
    /// Who the audit trail names.
    pub(crate) fn actor(&self) -> Actor {
        Actor::Staff {
            id: self.user.id,
            username: self.user.username.clone(),
        }
    }

    /// The page frame, with the flash message kept for this page.
    pub(crate) fn layout(&self, state: &ConsoleState, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            username: Some(self.user.username.clone()),
            is_superuser: self.user.is_superuser,
            csrf: self.session.csrf.clone(),
            flash: state.inner.sessions.take_flash(&self.session.key),
        }
    }

    /// A confirmation for the next page.
    pub(crate) fn flash(&self, state: &ConsoleState, kind: &'static str, text: String) {
        state
            .inner
            .sessions
            .flash(&self.session.key, crate::session::Flash { kind, text });
    }

    /// Refuse plain staff (on the server, whatever the form showed).
    pub(crate) fn require_superuser(&self, what: &'static str) -> Result<(), ConsoleError> {
        if self.user.is_superuser {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(what))
        }
    }
}

impl FromRequestParts<ConsoleState> for Staff {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, ConsoleError> {
        let cookie =
            cookie(&parts.headers, &state.inner.cookie).ok_or(ConsoleError::LoginRequired)?;
        let session = state
            .inner
            .sessions
            .touch(cookie)
            .ok_or(ConsoleError::LoginRequired)?;
        let user = match state
            .auth()
            .user_store()
            .user_by_id(session.user_id)
            .await?
        {
            Some(user) if user.is_active && user.is_staff => user,
            // Deactivated, deleted or no longer staff: out now.
            _ => {
                state.inner.sessions.end(&session.key);
                return Err(ConsoleError::LoginRequired);
            }
        };
        Ok(Self {
            user,
            session,
            address: address(parts, state),
        })
    }
}

/// The client address of a request, as text.
pub(crate) fn address(parts: &Parts, state: &ConsoleState) -> Option<String> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    portcullis_http::client_address(peer, &parts.headers, &state.inner.settings.trusted_proxies)
        .map(|ip| ip.to_string())
}

/// A cookie's value.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// An `application/x-www-form-urlencoded` body, field by field (the last
/// of repeated fields wins).
#[derive(Debug, Default)]
pub(crate) struct Fields(HashMap<String, String>);

impl Fields {
    /// A field's value, or empty.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// Whether a checkbox was ticked.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ConsoleError> {
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form {
            return Err(ConsoleError::BadForm(
                "The form must be sent as application/x-www-form-urlencoded, as a browser sends it.",
            ));
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| ConsoleError::BadForm("The form is too large."))?;
        Ok(Self(form_urlencoded::parse(&body).into_owned().collect()))
    }
}

/// A form posted by logged-in staff, its CSRF token checked before the
/// handler runs.
#[derive(Debug)]
pub(crate) struct Posted {
    pub(crate) staff: Staff,
    pub(crate) fields: Fields,
}

impl FromRequest<ConsoleState> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = req.into_parts();
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        let fields = Fields::from_request(Request::from_parts(parts, body), state).await?;
        if !csrf_matches(
            &staff.session.csrf,
            fields.0.get(CSRF_FIELD).map(String::as_str),
        ) {
            tracing::warn!(
                user_id = staff.user.id,
                "a console form without its CSRF token was refused"
            );
            return Err(ConsoleError::Csrf);
        }
        Ok(Self { staff, fields })
    }
}
