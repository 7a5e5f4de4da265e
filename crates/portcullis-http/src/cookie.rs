//! Cookie mode (`REFRESH_COOKIE`, simplejwt #71, #324, #777): the refresh
//! token also travels in an `HttpOnly` cookie, out of reach of scripts, so
//! an XSS cannot steal it.
//!
//! - Obtain and refresh (with rotation) set `__Host-refresh` (the name is
//!   `REFRESH_COOKIE_NAME`; the `__Host-` prefix makes browsers insist on
//!   `Secure`, `Path=/` and no `Domain`, RFC 6265bis §4.1.3.2) with
//!   `HttpOnly; Secure; SameSite=Strict; Path=/` and `Max-Age` =
//!   `REFRESH_TOKEN_LIFETIME`, plus a script-readable `__Host-csrf` cookie.
//! - Refresh, logout and blacklist read the refresh token from the cookie
//!   when the body has none. Such a cookie-authenticated request must
//!   repeat the `__Host-csrf` value in an `X-CSRF-Token` header (the
//!   double-submit pattern, OWASP CSRF cheat sheet): another site can make
//!   a browser send the cookies but can neither read the CSRF cookie nor
//!   set a custom header. `SameSite=Strict` is a second, independent line.
//!   A refusal is DRF's `SessionAuthentication` one: 403
//!   `{"detail":"CSRF Failed: CSRF token missing."}` (or `… incorrect.`,
//!   `… CSRF cookie not set.`).
//! - Logout, logout-all and blacklist clear both cookies.
//!
//! A refresh token in the body is used as before, with no CSRF check: a
//! body another site cannot read the token for is no CSRF risk. With
//! `REFRESH_COOKIE` off nothing here runs and no cookie is ever set.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::AppendHeaders;

use crate::{ApiError, AppState, DrfData};

/// The script-readable cookie holding the CSRF token.
pub const CSRF_COOKIE: &str = "__Host-csrf";
/// The header that must repeat [`CSRF_COOKIE`].
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `REFRESH_COOKIE` on: how the refresh cookie is written.
#[derive(Debug, Clone)]
pub struct RefreshCookie {
    /// `REFRESH_COOKIE_NAME`; starts with `__Host-` (checked by the config).
    pub name: String,
    /// `Max-Age`, seconds: `REFRESH_TOKEN_LIFETIME`.
    pub max_age: i64,
}

/// The refresh token a request carries in its cookie, and whether its
/// CSRF header matches; empty with cookie mode off.
#[derive(Debug, Default)]
pub struct CookieRefresh {
    token: Option<String>,
    csrf: Option<&'static str>,
    has_csrf_cookie: bool,
}

impl FromRequestParts<AppState> for CookieRefresh {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(settings) = &state.http().refresh_cookie else {
            return Ok(Self::default());
        };
        let token = cookie(parts, &settings.name);
        let csrf_cookie = cookie(parts, CSRF_COOKIE);
        let csrf_header = parts
            .headers
            .get(HeaderName::from_static(CSRF_HEADER))
            .map(HeaderValue::as_bytes);
        // Django's CsrfViewMiddleware reasons, as DRF reports them.
        let csrf = match (&csrf_cookie, csrf_header) {
            (None, _) => Some("CSRF cookie not set."),
            (Some(_), None) => Some("CSRF token missing."),
            (Some(expected), Some(given)) => {
                aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given)
                    .err()
                    .map(|_| "CSRF token incorrect.")
            }
        };
        Ok(Self {
            token,
            csrf,
            has_csrf_cookie: csrf_cookie.is_some(),
        })
    }
}

impl CookieRefresh {
    /// The cookie's refresh token, once its CSRF header checks out.
    fn token(self) -> Result<Option<String>, ApiError> {
        match (self.token, self.csrf) {
            (Some(_), Some(reason)) => Err(ApiError::Csrf(reason)),
            (token, _) => Ok(token),
        }
    }

    /// The required `refresh` field: from the body, else from the cookie,
    /// else DRF's "This field is required.".
    pub(crate) fn required(self, data: &DrfData) -> Result<String, ApiError> {
        match self.optional(data)? {
            Some(token) => Ok(token),
            None => data.strings(["refresh"]).map(|[token]| token),
        }
    }

    /// An optional `refresh` field: from the body, else from the cookie.
    pub(crate) fn optional(self, data: &DrfData) -> Result<Option<String>, ApiError> {
        match data.optional_string("refresh")? {
            Some(token) => Ok(Some(token)),
            None => self.token(),
        }
    }

    /// Whether the request already holds a CSRF cookie (kept as it is, so
    /// another tab's header stays valid).
    pub(crate) fn has_csrf_cookie(&self) -> bool {
        self.has_csrf_cookie
    }
}

/// The `Set-Cookie` headers of a response.
pub(crate) type SetCookies = AppendHeaders<Vec<(HeaderName, HeaderValue)>>;

/// With cookie mode on, set the refresh cookie to `refresh` and, when
/// `new_csrf`, a fresh CSRF cookie; otherwise nothing.
pub(crate) fn set(state: &AppState, refresh: Option<&str>, new_csrf: bool) -> SetCookies {
    let mut headers = Vec::new();
    if let (Some(settings), Some(refresh)) = (&state.http().refresh_cookie, refresh) {
        let age = settings.max_age;
        push(
            &mut headers,
            &format!(
                "{}={refresh}; Max-Age={age}; {ATTRIBUTES}; HttpOnly",
                settings.name
            ),
        );
        if new_csrf {
            if let Some(csrf) = csrf_token() {
                push(
                    &mut headers,
                    &format!("{CSRF_COOKIE}={csrf}; Max-Age={age}; {ATTRIBUTES}"),
                );
            } else {
                tracing::error!("cannot make a CSRF token: the random generator failed");
            }
        }
    }
    AppendHeaders(headers)
}

/// With cookie mode on, expire both cookies (logout); otherwise nothing.
pub(crate) fn clear(state: &AppState) -> SetCookies {
    let mut headers = Vec::new();
    if let Some(settings) = &state.http().refresh_cookie {
        for name in [settings.name.as_str(), CSRF_COOKIE] {
            push(&mut headers, &format!("{name}=; Max-Age=0; {ATTRIBUTES}"));
        }
    }
    AppendHeaders(headers)
}

/// What every cookie of cookie mode carries (`__Host-` demands the first two).
const ATTRIBUTES: &str = "Path=/; Secure; SameSite=Strict";

fn push(headers: &mut Vec<(HeaderName, HeaderValue)>, cookie: &str) {
    // A JWT, a hex token and a checked cookie name are all valid header text.
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.push((header::SET_COOKIE, value));
    }
}

/// 32 random bytes, hex: the double-submit token.
fn csrf_token() -> Option<String> {
    let mut bytes = [0_u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// The value of the named cookie, from every `Cookie` header (RFC 6265 §5.4).
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|value| !value.is_empty())
}
