//! The API's settings: where the token is read from, the identity headers,
//! the refresh cookie, the trusted proxies, the OpenAPI document and the
//! staff console.

use std::time::Duration;

use axum::http::{HeaderName, header};
use portcullis_http::{Cidr, HttpSettings, IdentityHeaders, RefreshCookie};
use portcullis_token::TokenSettings;
use serde::Deserialize;

use super::keys::KeySettings;
use super::values::{List, Seconds};
use super::{ConfigError, Origins};

/// The API's settings, as written.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct HttpSection {
    /// `AUTH_HEADER_NAME`: a header name, or Django's `HTTP_*` META key.
    auth_header_name: String,
    /// `MAX_BODY_BYTES`: larger request bodies get a 413.
    max_body_bytes: usize,
    /// `REFRESH_COOKIE`: obtain and refresh also set the refresh token as an
    /// `HttpOnly` `__Host-` cookie, which refresh, logout and blacklist read
    /// (with a CSRF check) when the body has none.
    refresh_cookie: bool,
    /// `REFRESH_COOKIE_NAME`: the refresh cookie's name; must start with
    /// `__Host-`.
    refresh_cookie_name: String,
    /// `IDENTITY_HEADER_USER_ID`: the header carrying the user's id to an
    /// upstream and in `/auth/verify` answers.
    identity_header_user_id: String,
    /// `IDENTITY_HEADER_USERNAME`.
    identity_header_username: String,
    /// `IDENTITY_HEADER_IS_STAFF`: `true` or `false`.
    identity_header_is_staff: String,
    /// `TRUSTED_PROXIES`: CIDR blocks of the reverse proxies whose
    /// `X-Forwarded-For` names the client; empty: the TCP peer is the client.
    trusted_proxies: List,
    /// `API_SCHEMA`: serve the OpenAPI document at `/api/schema/`.
    api_schema: bool,
    /// `API_DOCS`: serve its docs page at `/api/schema/docs/` (only with
    /// `API_SCHEMA`).
    api_docs: bool,
    /// `ADMIN_CONSOLE`: serve the staff console at `/admin/`.
    admin_console: bool,
    /// `ADMIN_IDLE_TIMEOUT`: a console session unused this long ends.
    admin_idle_timeout: Seconds,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            auth_header_name: "Authorization".to_owned(),
            max_body_bytes: 1024 * 1024,
            refresh_cookie: false,
            refresh_cookie_name: "__Host-refresh".to_owned(),
            identity_header_user_id: "X-Portcullis-User-Id".to_owned(),
            identity_header_username: "X-Portcullis-Username".to_owned(),
            identity_header_is_staff: "X-Portcullis-Is-Staff".to_owned(),
            trusted_proxies: List(Vec::new()),
            api_schema: true,
            api_docs: true,
            admin_console: true,
            admin_idle_timeout: Seconds(1800),
        }
    }
}

impl HttpSection {
    /// The API's settings and, with `ADMIN_CONSOLE` on, the console's idle
    /// timeout; checked.
    pub(super) fn parse(
        self,
        origins: &Origins,
        tokens: &TokenSettings,
        keys: &KeySettings,
    ) -> Result<(HttpSettings, Option<Duration>), ConfigError> {
        let auth_header_name = self.auth_header_name(origins)?;
        let identity = self.identity_headers(origins, &auth_header_name)?;
        let console = if self.admin_console {
            let idle = u64::try_from(self.admin_idle_timeout.0)
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{} must be a positive number of seconds, such as 1800",
                        origins.origin("admin_idle_timeout")
                    ))
                })?;
            Some(Duration::from_secs(idle))
        } else {
            None
        };
        let http = HttpSettings {
            auth_header_name,
            max_body_bytes: self.max_body_bytes,
            issuer: tokens.issuer.clone(),
            // Half the publish delay: a verifier's cached JWKS is refreshed
            // before a newly published key starts signing.
            jwks_max_age: (keys.rotation.publish_delay / 2).min(300),
            identity,
            refresh_cookie: self.refresh_cookie(origins, tokens)?,
            trusted_proxies: self.trusted_proxies(origins)?,
            readiness: Vec::new(),
            api_schema: self.api_schema,
            api_docs: self.api_docs,
        };
        Ok((http, console))
    }

    /// `AUTH_HEADER_NAME`, checked: `Authorization`, or Django's
    /// `HTTP_X_ACCESS_TOKEN` form for `X-Access-Token`.
    fn auth_header_name(&self, origins: &Origins) -> Result<HeaderName, ConfigError> {
        let raw = self.auth_header_name.trim();
        let name = portcullis_token::auth_header_name(raw);
        HeaderName::try_from(name).map_err(|_| {
            ConfigError(format!(
                "{}: {raw:?} is not a valid header name",
                origins.origin("auth_header_name")
            ))
        })
    }

    /// The identity header names, checked: valid, distinct, and not a
    /// header the proxy or the client already means something by.
    fn identity_headers(
        &self,
        origins: &Origins,
        auth_header: &HeaderName,
    ) -> Result<IdentityHeaders, ConfigError> {
        let name = |key: &str, value: &str| {
            HeaderName::try_from(value.trim()).map_err(|_| {
                ConfigError(format!(
                    "{}: {value:?} is not a valid header name; use letters, digits and dashes, such as X-Portcullis-User-Id",
                    origins.origin(key)
                ))
            })
        };
        let identity = IdentityHeaders {
            user_id: name("identity_header_user_id", &self.identity_header_user_id)?,
            username: name("identity_header_username", &self.identity_header_username)?,
            is_staff: name("identity_header_is_staff", &self.identity_header_is_staff)?,
        };
        let names = [&identity.user_id, &identity.username, &identity.is_staff];
        let reserved = [
            header::HOST,
            header::AUTHORIZATION,
            header::COOKIE,
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            auth_header.clone(),
        ];
        for (i, a) in names.iter().enumerate() {
            if reserved.contains(a) || names.iter().skip(i + 1).any(|b| b == a) {
                return Err(ConfigError(format!(
                    "{}, {} and {} must be three distinct headers of their own (not {a}); the defaults are X-Portcullis-User-Id, X-Portcullis-Username and X-Portcullis-Is-Staff",
                    origins.origin("identity_header_user_id"),
                    origins.origin("identity_header_username"),
                    origins.origin("identity_header_is_staff"),
                )));
            }
        }
        Ok(identity)
    }

    /// Cookie mode (`REFRESH_COOKIE`), checked: `None` when off.
    fn refresh_cookie(
        &self,
        origins: &Origins,
        tokens: &TokenSettings,
    ) -> Result<Option<RefreshCookie>, ConfigError> {
        if !self.refresh_cookie {
            return Ok(None);
        }
        let name = self.refresh_cookie_name.trim();
        // RFC 6265 §4.1.1: a cookie name is a token (visible ASCII, no
        // separators); `__Host-` makes browsers insist on Secure, Path=/
        // and no Domain (RFC 6265bis §4.1.3.2).
        let is_token = name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !name.starts_with("__Host-") || name.len() <= "__Host-".len() || !is_token {
            return Err(ConfigError(format!(
                "{}: {name:?} is not a usable cookie name; use __Host- followed by letters, digits or dashes, such as __Host-refresh",
                origins.origin("refresh_cookie_name")
            )));
        }
        if name == portcullis_http::cookie::CSRF_COOKIE {
            return Err(ConfigError(format!(
                "{}: {name:?} is the CSRF cookie's name; choose another, such as __Host-refresh",
                origins.origin("refresh_cookie_name")
            )));
        }
        Ok(Some(RefreshCookie {
            name: name.to_owned(),
            max_age: tokens.refresh_token_lifetime,
        }))
    }

    /// `TRUSTED_PROXIES`, parsed.
    fn trusted_proxies(&self, origins: &Origins) -> Result<Vec<Cidr>, ConfigError> {
        self.trusted_proxies
            .0
            .iter()
            .map(|entry| {
                entry.parse().map_err(|e| {
                    ConfigError(format!(
                        "{}: {e}; list the reverse proxies' addresses or blocks, such as [\"10.0.0.0/8\", \"::1\"]",
                        origins.origin("trusted_proxies")
                    ))
                })
            })
            .collect()
    }
}
